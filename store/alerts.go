package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Alerts, and their delivery to the configured receivers.
//
// An alert is one episode of a condition (a location needing reconnecting,
// a sync failing run after run, …): the row is inserted when the condition
// starts holding and resolved when it stops. Its key, (kind, subject,
// episode), is unique, and an evaluator inserts the episode after the last
// one it saw with an insert that does nothing on conflict: however many
// workers evaluate at once, one of them opens the episode, and only that
// one creates its deliveries, in the same transaction. A delivery is one
// notification (firing, or resolved) to one receiver, retried until the
// receiver takes it.

// AlertsPath is where the web process lists the alerts; an alert links
// to it.
const AlertsPath = "/alerts"

// States of an alert.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// States of an alert delivery.
const (
	// DeliveryPending: not yet taken by the receiver; retried.
	DeliveryPending = "pending"
	// DeliverySent: the receiver answered 2xx.
	DeliverySent = "sent"
	// DeliveryFailed: given up (GiveUpAlertDelivery).
	DeliveryFailed = "failed"
)

// Alert is one episode of an alert condition.
type Alert struct {
	ID int64 `gorm:"primaryKey;autoIncrement"`
	// Kind names the condition (alert.KindLocationProblem, …); Subject what
	// it is about (a location and status, a location and sync kind, a
	// schedule); Episode counts the times it started holding, from 1.
	Kind    string `gorm:"size:32;not null;uniqueIndex:alerts_episode,priority:1"`
	Subject string `gorm:"size:320;not null;uniqueIndex:alerts_episode,priority:2"`
	Episode int64  `gorm:"not null;uniqueIndex:alerts_episode,priority:3"`
	// State is AlertFiring until the condition clears.
	State string `gorm:"size:16;not null;default:firing;index"`
	// Labels is a JSON object of what the alert is about (location_id,
	// status, sync_kind, schedule), as the webhook payload carries it.
	Labels     string    `gorm:"type:text;not null;default:''"`
	Summary    string    `gorm:"type:text;not null;default:''"`
	Detail     string    `gorm:"type:text;not null;default:''"`
	StartedAt  time.Time `gorm:"not null;index"`
	ResolvedAt *time.Time
}

// TableName pins the table name.
func (Alert) TableName() string { return "alerts" }

// AlertDelivery is one notification of an alert (Event firing or
// resolved) to one receiver.
type AlertDelivery struct {
	ID      int64  `gorm:"primaryKey;autoIncrement"`
	AlertID int64  `gorm:"not null;uniqueIndex:alert_deliveries_once,priority:1"`
	Event   string `gorm:"size:16;not null;uniqueIndex:alert_deliveries_once,priority:2"`
	// Receiver is the receiver's key (its type and a hash of its URL);
	// ReceiverName what may be shown of it. The URL itself, a credential,
	// is never stored.
	Receiver     string `gorm:"size:64;not null;uniqueIndex:alert_deliveries_once,priority:3"`
	ReceiverName string `gorm:"size:320;not null;default:''"`
	State        string `gorm:"size:16;not null;default:pending;index:alert_deliveries_due,priority:1"`
	Attempts     int    `gorm:"not null;default:0"`
	// LastError is why the last failed attempt failed; it stays after a
	// later success, as the history of the delivery.
	LastError     string    `gorm:"type:text;not null;default:''"`
	NextAttemptAt time.Time `gorm:"not null;index:alert_deliveries_due,priority:2"`
	// LeasedUntil: an attempt is in flight until then; another worker may
	// take the delivery over after it (the sender died).
	LeasedUntil *time.Time
	CreatedAt   time.Time `gorm:"not null"`
	SentAt      *time.Time
}

// TableName pins the table name.
func (AlertDelivery) TableName() string { return "alert_deliveries" }

// AlertReceiver names a receiver a new alert is delivered to.
type AlertReceiver struct {
	Key, Name string
}

// LatestAlerts returns the latest episode of every (kind, subject) that
// ever had one.
func (s *Store) LatestAlerts(ctx context.Context) ([]Alert, error) {
	var out []Alert
	latest := s.db.Model(&Alert{}).Select("MAX(id)").Group("kind, subject")
	if err := s.db.WithContext(ctx).Where("id IN (?)", latest).Order("id").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("store.LatestAlerts: %w", err)
	}
	return out, nil
}

// FireAlert inserts the episode a, firing, with a delivery of it to each
// receiver, unless that episode exists: it reports whether this call
// inserted it (and set a.ID). A caller passes the episode after the latest
// one it read, so of several callers that saw the same one, exactly one
// opens the next.
func (s *Store) FireAlert(ctx context.Context, a *Alert, receivers []AlertReceiver) (bool, error) {
	a.State = AlertFiring
	a.StartedAt = a.StartedAt.UTC()
	a.ResolvedAt = nil
	inserted := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(a)
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		inserted = true
		return createDeliveries(tx, a.ID, AlertFiring, receivers, a.StartedAt)
	})
	if err != nil {
		return false, fmt.Errorf("store.FireAlert %s %s: %w", a.Kind, a.Subject, err)
	}
	return inserted, nil
}

func createDeliveries(tx *gorm.DB, alertID int64, event string, receivers []AlertReceiver, at time.Time) error {
	if len(receivers) == 0 {
		return nil
	}
	rows := make([]AlertDelivery, len(receivers))
	for i, r := range receivers {
		rows[i] = AlertDelivery{AlertID: alertID, Event: event, Receiver: r.Key, ReceiverName: r.Name,
			State: DeliveryPending, NextAttemptAt: at, CreatedAt: at}
	}
	return tx.Create(&rows).Error
}

// ResolveAlert marks the alert id resolved at at, if it is still firing,
// and reports whether this call did; that call also creates the deliveries
// of the recovery, to the receivers the alert was fired to.
func (s *Store) ResolveAlert(ctx context.Context, id int64, at time.Time) (bool, error) {
	at = at.UTC()
	resolved := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&Alert{}).Where("id = ? AND state = ?", id, AlertFiring).
			Updates(map[string]any{"state": AlertResolved, "resolved_at": at})
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		resolved = true
		var fired []AlertDelivery
		if err := tx.Where("alert_id = ? AND event = ?", id, AlertFiring).Order("id").Find(&fired).Error; err != nil {
			return err
		}
		receivers := make([]AlertReceiver, len(fired))
		for i, d := range fired {
			receivers[i] = AlertReceiver{Key: d.Receiver, Name: d.ReceiverName}
		}
		return createDeliveries(tx, id, AlertResolved, receivers, at)
	})
	if err != nil {
		return false, fmt.Errorf("store.ResolveAlert %d: %w", id, err)
	}
	return resolved, nil
}

// deliveryDue selects the pending deliveries whose attempt is due at ? and
// not leased at ? (both now), leaving a recovery until its alert's firing
// notification to the same receiver is no longer pending, so a receiver
// never hears "resolved" before "firing".
const deliveryDue = `state = 'pending' AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until < ?)
	AND (event = 'firing' OR NOT EXISTS (SELECT 1 FROM alert_deliveries f
		WHERE f.alert_id = alert_deliveries.alert_id AND f.receiver = alert_deliveries.receiver
		AND f.event = 'firing' AND f.state = 'pending'))`

// DueAlertDeliveries returns up to limit deliveries to the given receivers
// whose attempt is due at now, oldest first.
func (s *Store) DueAlertDeliveries(ctx context.Context, now time.Time, receivers []string, limit int) ([]AlertDelivery, error) {
	if len(receivers) == 0 {
		return nil, nil
	}
	now = now.UTC()
	var out []AlertDelivery
	err := s.db.WithContext(ctx).Where(deliveryDue, now, now).Where("receiver IN ?", receivers).
		Order("id").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("store.DueAlertDeliveries: %w", err)
	}
	return out, nil
}

// ClaimAlertDelivery takes the delivery id for one attempt, leased until
// until, if it is still due at now and nobody holds it: it reports whether
// this call took it, and counts the attempt.
func (s *Store) ClaimAlertDelivery(ctx context.Context, id int64, now, until time.Time) (bool, error) {
	now = now.UTC()
	res := s.db.WithContext(ctx).Model(&AlertDelivery{}).Where("id = ?", id).Where(deliveryDue, now, now).
		Updates(map[string]any{"attempts": gorm.Expr("attempts + 1"), "leased_until": until.UTC()})
	if res.Error != nil {
		return false, fmt.Errorf("store.ClaimAlertDelivery %d: %w", id, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// AlertDeliverySent records that the receiver took the delivery id at at.
func (s *Store) AlertDeliverySent(ctx context.Context, id int64, at time.Time) error {
	err := s.db.WithContext(ctx).Model(&AlertDelivery{}).Where("id = ?", id).
		Updates(map[string]any{"state": DeliverySent, "sent_at": at.UTC(), "leased_until": nil}).Error
	if err != nil {
		return fmt.Errorf("store.AlertDeliverySent %d: %w", id, err)
	}
	return nil
}

// AlertDeliveryFailed records a failed attempt of the delivery id and when
// to try again.
func (s *Store) AlertDeliveryFailed(ctx context.Context, id int64, lastError string, next time.Time) error {
	err := s.db.WithContext(ctx).Model(&AlertDelivery{}).Where("id = ? AND state = ?", id, DeliveryPending).
		Updates(map[string]any{"last_error": lastError, "next_attempt_at": next.UTC(), "leased_until": nil}).Error
	if err != nil {
		return fmt.Errorf("store.AlertDeliveryFailed %d: %w", id, err)
	}
	return nil
}

// ExpiredAlertDeliveries returns up to limit pending deliveries created
// before before that no attempt holds at now: those to give up.
func (s *Store) ExpiredAlertDeliveries(ctx context.Context, before, now time.Time, limit int) ([]AlertDelivery, error) {
	var out []AlertDelivery
	err := s.db.WithContext(ctx).
		Where("state = ? AND created_at < ? AND (leased_until IS NULL OR leased_until < ?)", DeliveryPending, before.UTC(), now.UTC()).
		Order("id").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("store.ExpiredAlertDeliveries: %w", err)
	}
	return out, nil
}

// GiveUpAlertDelivery marks the delivery id failed if it is still pending
// and no attempt holds it at now, and reports whether this call did.
func (s *Store) GiveUpAlertDelivery(ctx context.Context, id int64, now time.Time) (bool, error) {
	res := s.db.WithContext(ctx).Model(&AlertDelivery{}).
		Where("id = ? AND state = ? AND (leased_until IS NULL OR leased_until < ?)", id, DeliveryPending, now.UTC()).
		Updates(map[string]any{"state": DeliveryFailed, "leased_until": nil})
	if res.Error != nil {
		return false, fmt.Errorf("store.GiveUpAlertDelivery %d: %w", id, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// AlertsByID returns the alerts of the given ids.
func (s *Store) AlertsByID(ctx context.Context, ids []int64) (map[int64]Alert, error) {
	out := make(map[int64]Alert, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var rows []Alert
	if err := s.db.WithContext(ctx).Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store.AlertsByID: %w", err)
	}
	for _, a := range rows {
		out[a.ID] = a
	}
	return out, nil
}

// RecentAlerts returns the limit latest alerts, newest first.
func (s *Store) RecentAlerts(ctx context.Context, limit int) ([]Alert, error) {
	var out []Alert
	if err := s.db.WithContext(ctx).Order("id DESC").Limit(limit).Find(&out).Error; err != nil {
		return nil, fmt.Errorf("store.RecentAlerts: %w", err)
	}
	return out, nil
}

// AlertDeliveries returns the deliveries of the given alerts, by alert,
// in the order they were created.
func (s *Store) AlertDeliveries(ctx context.Context, alertIDs []int64) (map[int64][]AlertDelivery, error) {
	out := make(map[int64][]AlertDelivery, len(alertIDs))
	if len(alertIDs) == 0 {
		return out, nil
	}
	var rows []AlertDelivery
	if err := s.db.WithContext(ctx).Where("alert_id IN ?", alertIDs).Order("id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("store.AlertDeliveries: %w", err)
	}
	for _, d := range rows {
		out[d.AlertID] = append(out[d.AlertID], d)
	}
	return out, nil
}

// FiringAlerts counts the firing alerts by kind.
func (s *Store) FiringAlerts(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		Kind  string
		Count int
	}
	err := s.db.WithContext(ctx).Model(&Alert{}).Select("kind, COUNT(*) AS count").
		Where("state = ?", AlertFiring).Group("kind").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("store.FiringAlerts: %w", err)
	}
	out := make(map[string]int, len(rows))
	for _, r := range rows {
		out[r.Kind] = r.Count
	}
	return out, nil
}

// FinishedSyncRuns returns the n latest runs of loc and kind that ended
// (any outcome but SyncRunning), newest first.
func (s *Store) FinishedSyncRuns(ctx context.Context, loc, kind string, n int) ([]SyncRun, error) {
	var runs []SyncRun
	err := s.db.WithContext(ctx).Where("location_id = ? AND kind = ? AND outcome <> ?", loc, kind, SyncRunning).
		Order("started_at DESC, id DESC").Limit(n).Find(&runs).Error
	if err != nil {
		return nil, fmt.Errorf("store.FinishedSyncRuns %s %s: %w", loc, kind, err)
	}
	return runs, nil
}
