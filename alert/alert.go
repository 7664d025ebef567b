// Package alert tells a person when ghlsync needs one. Evaluate reads the
// alert conditions from the database (a location that needs reconnecting
// or shows another problem, a token about to expire that no refresh
// renewed, a sync failing run after run, a schedule that stopped running),
// records each episode once however many workers evaluate at once, and
// delivers it, and its recovery, to generic JSON webhooks and to
// Slack-compatible incoming webhooks, retrying until each receiver takes
// it. It knows nothing of asynq: the tasks package runs Evaluate as the
// periodic ghl:alerts:evaluate task.
package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/store"
)

// Kinds of alert condition. They name alerts in the table, the payload and
// the metrics: never rename one.
const (
	// KindLocationProblem: a location (or agency) is in a status with a
	// problem (store.Status.Problem): needs_reauth, uninstalled, inactive
	// and any status added later. Subject LOCATION/STATUS: a change from
	// one problem to another resolves the first and fires the second.
	KindLocationProblem = "location_problem"
	// KindTokenExpiring: an active location's token expires within
	// Evaluator.ExpiresWithin, or half its lifetime when that is shorter
	// (expired included): no refresh renewed it.
	KindTokenExpiring = "token_expiring"
	// KindSyncFailing: a location's latest Evaluator.SyncFailures sync
	// runs of one kind all failed. Subject LOCATION/KIND.
	KindSyncFailing = "sync_failing"
	// KindScheduleLate: an enabled schedule has not run for twice its
	// interval (and at least MinScheduleLate). Subject the schedule.
	KindScheduleLate = "schedule_late"
)

// Kinds lists every kind of alert.
var Kinds = []string{KindLocationProblem, KindTokenExpiring, KindSyncFailing, KindScheduleLate}

// Defaults of the Evaluator.
const (
	DefaultSyncFailures  = 3
	DefaultExpiresWithin = time.Hour
	// MinScheduleLate keeps a schedule of seconds from alerting on a
	// scheduler's ordinary delay.
	MinScheduleLate = 2 * time.Minute
	// DeliveryTimeout bounds one attempt to deliver to one receiver.
	DeliveryTimeout = 10 * time.Second
	// deliveryLease is how long an attempt holds its delivery: past it, the
	// sender is taken for dead and another worker may try again.
	deliveryLease = 3 * DeliveryTimeout
	// GiveUpAfter: a delivery no receiver took within it is given up.
	GiveUpAfter = 24 * time.Hour
	// Retries back off from RetryBase, doubling, to RetryMax. An attempt
	// happens at an evaluation, so while the backoff is shorter than the
	// schedule's interval (a minute by default) every evaluation retries.
	RetryBase = time.Second
	RetryMax  = 10 * time.Minute
	// maxDeliveries bounds the deliveries one evaluation attempts.
	maxDeliveries = 100
)

// Condition is an alert condition that holds now.
type Condition struct {
	Kind, Subject string
	// Labels say what it is about: location_id, status, sync_kind,
	// schedule, task.
	Labels  map[string]string
	Summary string
	Detail  string
}

// Evaluator evaluates the alert conditions and delivers the alerts. It is
// safe for concurrent use, also from several processes on one database:
// each episode is opened, resolved and delivered once among them.
type Evaluator struct {
	Store *store.Store
	// Receivers get every new alert; none: alerts are only recorded (the
	// web's /alerts page shows them). Every worker should have the same:
	// an alert goes to the receivers of the worker that opened it.
	Receivers []Receiver
	// SyncFailures: this many failed sync runs in a row make an alert;
	// DefaultSyncFailures when 0.
	SyncFailures int
	// ExpiresWithin: an active location's token that expires within it
	// makes an alert; DefaultExpiresWithin when 0. Keep it below the
	// refresh window, or every token alerts before its refresh is due.
	ExpiresWithin time.Duration
	// PublicURL is the web process's origin, for the link in an alert.
	PublicURL string
	// HTTP sends the deliveries; nil: a client that follows no redirect
	// (a receiver's answer is its answer), each attempt bounded by
	// DeliveryTimeout.
	HTTP  *http.Client
	Clock clock.Clock
	Log   *slog.Logger
	// Observe, when set, counts evaluations by outcome (ok, error);
	// ObserveDelivery delivery attempts by receiver type and outcome
	// (sent, error, gave_up).
	Observe         func(outcome string)
	ObserveDelivery func(receiverType, outcome string)
}

// Validate reports a required field that is not set. Call it at start.
func (e *Evaluator) Validate() error {
	if e.Store == nil {
		return errors.New("alert.Evaluator: Store is required")
	}
	return nil
}

// Result says what one evaluation did.
type Result struct {
	// Holding counts the conditions that hold.
	Holding int `json:"holding"`
	// Fired and Resolved name ("KIND SUBJECT") the episodes this
	// evaluation opened and closed; another worker's are not listed.
	Fired    []string `json:"fired,omitempty"`
	Resolved []string `json:"resolved,omitempty"`
	// Sent and Failed count this evaluation's delivery attempts; GaveUp
	// the deliveries it gave up.
	Sent   int `json:"sent"`
	Failed int `json:"failed"`
	GaveUp int `json:"gave_up,omitempty"`
}

type key struct{ kind, subject string }

// Evaluate evaluates every condition, opens an episode for each that
// started holding and resolves each that stopped, then delivers what is
// due. An error leaves nothing half done: what was recorded is delivered
// by the next evaluation.
func (e *Evaluator) Evaluate(ctx context.Context) (Result, error) {
	res, err := e.evaluate(ctx)
	if e.Observe != nil {
		if err != nil {
			e.Observe("error")
		} else {
			e.Observe("ok")
		}
	}
	return res, err
}

func (e *Evaluator) evaluate(ctx context.Context) (Result, error) {
	var res Result
	// The episodes are read before the conditions, so that an episode is
	// opened only on conditions at least as new as what was read of it.
	latest, err := e.Store.LatestAlerts(ctx)
	if err != nil {
		return res, fmt.Errorf("alert.Evaluate: %w", err)
	}
	now := e.now()
	facts, err := ReadFacts(ctx, e.Store, e.syncFailures(), now)
	if err != nil {
		return res, fmt.Errorf("alert.Evaluate: %w", err)
	}
	conds := e.Conditions(facts, now)
	res.Holding = len(conds)

	open := map[key]store.Alert{}
	last := map[key]int64{}
	for _, a := range latest {
		k := key{a.Kind, a.Subject}
		last[k] = a.Episode
		if a.State == store.AlertFiring {
			open[k] = a
		}
	}
	receivers := make([]store.AlertReceiver, len(e.Receivers))
	for i, r := range e.Receivers {
		receivers[i] = store.AlertReceiver{Key: r.Key(), Name: r.Name()}
	}
	holding := map[key]bool{}
	for _, c := range conds {
		k := key{c.Kind, c.Subject}
		holding[k] = true
		if _, ok := open[k]; ok {
			continue
		}
		labels, err := json.Marshal(c.Labels)
		if err != nil {
			return res, fmt.Errorf("alert.Evaluate: labels of %s %s: %w", c.Kind, c.Subject, err)
		}
		a := &store.Alert{Kind: c.Kind, Subject: c.Subject, Episode: last[k] + 1, Labels: string(labels),
			Summary: c.Summary, Detail: c.Detail, StartedAt: now}
		fired, err := e.Store.FireAlert(ctx, a, receivers)
		if err != nil {
			return res, fmt.Errorf("alert.Evaluate: %w", err)
		}
		if fired {
			e.log().Warn("alert firing", "kind", c.Kind, "subject", c.Subject, "episode", a.Episode, "summary", c.Summary)
			res.Fired = append(res.Fired, c.Kind+" "+c.Subject)
		}
	}
	for k, a := range open {
		if holding[k] {
			continue
		}
		resolved, err := e.Store.ResolveAlert(ctx, a.ID, now)
		if err != nil {
			return res, fmt.Errorf("alert.Evaluate: %w", err)
		}
		if resolved {
			e.log().Info("alert resolved", "kind", a.Kind, "subject", a.Subject, "episode", a.Episode, "after", now.Sub(a.StartedAt).Round(time.Second))
			res.Resolved = append(res.Resolved, a.Kind+" "+a.Subject)
		}
	}
	slices.Sort(res.Resolved)
	if err := e.deliver(ctx, &res); err != nil {
		return res, fmt.Errorf("alert.Evaluate: %w", err)
	}
	return res, nil
}

// deliver gives up what waited too long, then attempts every delivery due
// to a receiver this evaluator has, each under a lease so that one attempt
// runs at a time whoever else evaluates.
func (e *Evaluator) deliver(ctx context.Context, res *Result) error {
	now := e.now()
	expired, err := e.Store.ExpiredAlertDeliveries(ctx, now.Add(-GiveUpAfter), now, maxDeliveries)
	if err != nil {
		return err
	}
	for _, d := range expired {
		gaveUp, err := e.Store.GiveUpAlertDelivery(ctx, d.ID, now)
		if err != nil {
			return err
		}
		if gaveUp {
			res.GaveUp++
			e.observeDelivery(receiverType(d.Receiver), "gave_up")
			e.log().Error("alert delivery given up", "receiver", d.ReceiverName, "event", d.Event,
				"alert", d.AlertID, "attempts", d.Attempts, "after", GiveUpAfter, "last_error", d.LastError)
		}
	}
	byKey := make(map[string]Receiver, len(e.Receivers))
	keys := make([]string, 0, len(e.Receivers))
	for _, r := range e.Receivers {
		byKey[r.Key()] = r
		keys = append(keys, r.Key())
	}
	due, err := e.Store.DueAlertDeliveries(ctx, now, keys, maxDeliveries)
	if err != nil || len(due) == 0 {
		return err
	}
	ids := make([]int64, len(due))
	for i, d := range due {
		ids[i] = d.AlertID
	}
	alerts, err := e.Store.AlertsByID(ctx, ids)
	if err != nil {
		return err
	}
	// A receiver that refused once in this evaluation is not tried again
	// before the next: one that is down must not hold the evaluation for
	// DeliveryTimeout per alert.
	refused := map[string]bool{}
	for _, d := range due {
		if refused[d.Receiver] {
			continue
		}
		now := e.now()
		claimed, err := e.Store.ClaimAlertDelivery(ctx, d.ID, now, now.Add(deliveryLease))
		if err != nil {
			return err
		}
		if !claimed {
			continue
		}
		r, a := byKey[d.Receiver], alerts[d.AlertID]
		sctx, cancel := context.WithTimeout(ctx, DeliveryTimeout)
		sendErr := r.send(sctx, e.client(), a, d.Event, e.PublicURL)
		cancel()
		attempt := d.Attempts + 1
		// What the receiver answered is recorded even when ctx ended
		// meanwhile: a delivery taken but not recorded as sent would be
		// sent again.
		wctx := context.WithoutCancel(ctx)
		if sendErr == nil {
			if err := e.Store.AlertDeliverySent(wctx, d.ID, e.now()); err != nil {
				return err
			}
			res.Sent++
			e.observeDelivery(r.Type, "sent")
			e.log().Info("alert delivered", "receiver", r, "event", d.Event, "kind", a.Kind, "subject", a.Subject, "attempt", attempt)
			continue
		}
		next := e.now().Add(backoff(attempt))
		if err := e.Store.AlertDeliveryFailed(wctx, d.ID, sendErr.Error(), next); err != nil {
			return err
		}
		refused[d.Receiver] = true
		res.Failed++
		e.observeDelivery(r.Type, "error")
		e.log().Warn("alert delivery failed", "receiver", r, "event", d.Event, "kind", a.Kind, "subject", a.Subject,
			"attempt", attempt, "retry_at", next.UTC().Format(time.RFC3339), "err", sendErr)
	}
	return nil
}

// backoff is the wait after the attempt-th failed attempt: from RetryBase,
// doubling, capped at RetryMax, with jitter so that receivers coming back
// are not all retried at once.
func backoff(attempt int) time.Duration {
	d := min(RetryBase<<min(attempt-1, 20), RetryMax)
	return d/2 + rand.N(d/2+1)
}

func (e *Evaluator) syncFailures() int {
	if e.SyncFailures > 0 {
		return e.SyncFailures
	}
	return DefaultSyncFailures
}

func (e *Evaluator) expiresWithin() time.Duration {
	if e.ExpiresWithin > 0 {
		return e.ExpiresWithin
	}
	return DefaultExpiresWithin
}

func (e *Evaluator) now() time.Time { return clock.Or(e.Clock).Now() }

func (e *Evaluator) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

func (e *Evaluator) observeDelivery(receiverType, outcome string) {
	if e.ObserveDelivery != nil {
		e.ObserveDelivery(receiverType, outcome)
	}
}

func (e *Evaluator) client() *http.Client {
	if e.HTTP != nil {
		return e.HTTP
	}
	return defaultClient
}

var defaultClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
