package store

import "gorm.io/gorm"

// DBOf gives the store's own tests its GORM handle.
func DBOf(s *Store) *gorm.DB { return s.db }

// QueuedPatientWrites and QueuedSentWrites are the number of
// SavePatientSync and RecordSent calls waiting for the write under way.
func QueuedPatientWrites(s *Store) int {
	s.patientWrites.mu.Lock()
	defer s.patientWrites.mu.Unlock()
	return len(s.patientWrites.queue)
}

func QueuedSentWrites(s *Store) int {
	s.sentWrites.mu.Lock()
	defer s.sentWrites.mu.Unlock()
	return len(s.sentWrites.queue)
}

// QueuedRefreshWrites is the number of SaveRefreshedLogged calls waiting
// for the write under way (PostgreSQL).
func QueuedRefreshWrites(s *Store) int {
	s.refreshWrites.mu.Lock()
	defer s.refreshWrites.mu.Unlock()
	return len(s.refreshWrites.queue)
}
