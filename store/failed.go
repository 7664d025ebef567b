package store

import "time"

// Failed records. A record whose last sync attempt failed has failed_at
// set in its sync state (sync_patients, sync_appointments) until GHL
// accepts it. Its cause may lie outside its row: an appointment whose
// patient had no contact yet, one whose practitioner had no GHL user or
// whose calendar wanted an owner it had not, a patient whose contact
// another patient's write overwrote. Such a row does not change when the
// cause is cured, so a read of the changed rows alone would leave it to
// the next full pass; an incremental read (PatientPageSince,
// AppointmentPageSince with a since) reads the failed records beside the
// changed rows. The partial indexes sync_patients_failed and
// sync_appointments_failed, on (location_id, external_id) WHERE failed_at
// IS NOT NULL, hold only the failed records, so that read costs what
// failed, not the table: nothing at all when nothing failed.
//
// Whether a failed record is sent again is the sync's to decide, as for
// any record it reads: one refused for its own content, unchanged, is
// failed again without a GHL call.

// changedOrFailed returns what an incremental read of the source table
// table (aliased alias in the caller's query, with its sync state table
// syncTable) selects from, with its arguments, and the condition to add to
// the caller's WHERE: the keys of the first limit rows after after changed
// at or after since, and of the first limit failed records after after,
// both of loc and not deleted, joined to the table. The first limit of
// their union in key order are the first limit of all the changed and
// failed rows; the database orders both, so its collation is the one the
// keyset walk follows.
//
// The keys come first in the join (CROSS JOIN, which SQLite keeps in that
// order), so that each key is one lookup of the table's unique index and
// neither database walks the location's rows.
func (s *Store) changedOrFailed(alias, table, syncTable, loc, after string, since time.Time, limit int) (from, cond string, args []any) {
	changed, arg, hint := s.changedSince("c", table, since)
	failedHint := ""
	if !s.Postgres() {
		failedHint = " INDEXED BY " + syncTable + "_failed"
	}
	from = `(SELECT external_id FROM (SELECT c.external_id FROM ` + table + ` c` + hint + `
				WHERE c.location_id = ? AND c.external_id > ? AND c.deleted_at IS NULL AND ` + changed + `
				ORDER BY c.external_id LIMIT ?) changed
			UNION
			SELECT external_id FROM (SELECT f.external_id FROM ` + syncTable + ` f` + failedHint + ` CROSS JOIN ` + table + ` r
				WHERE f.location_id = ? AND f.failed_at IS NOT NULL AND f.external_id > ?
					AND r.location_id = f.location_id AND r.external_id = f.external_id AND r.deleted_at IS NULL
				ORDER BY f.external_id LIMIT ?) failed) k
		CROSS JOIN ` + table + ` ` + alias
	return from, " AND " + alias + ".external_id = k.external_id", []any{loc, after, arg, limit, loc, after, limit}
}
