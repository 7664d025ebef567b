package syncer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ghlsync/ghlsync/ghl"
	"github.com/ghlsync/ghlsync/internal/clock"
	"github.com/ghlsync/ghlsync/internal/ratelimit"
	"github.com/ghlsync/ghlsync/refresh"
	"github.com/ghlsync/ghlsync/store"
)

// item is one record of a page, with what the run does with it.
type item struct {
	key string
	// unchanged: GHL holds this content already; nothing to do.
	unchanged bool
	// known is why the record is failed without a call: GHL refused this
	// very content before (or it cannot be sent), as recorded then.
	known string
	// invalid is why the record cannot be sent at all (unreadable data),
	// found now; refuse records it.
	invalid string
	// push sends the record to GHL.
	push func(ctx context.Context) (outcome, error)
	// creates: GHL holds no record of it yet, so push would create one;
	// what a dry run counts.
	creates bool
	// check, when set, is what push would refuse without a call (a phone
	// or country that cannot be read): what a dry run reports.
	check func() error
	// refuse records that GHL refused the content, or that it cannot be
	// sent, so that it is not sent again until it changes.
	refuse func(ctx context.Context, reason string) error
}

type outcome int

const (
	created outcome = iota + 1
	updated
)

// pageFunc reads the page of records after a cursor.
type pageFunc func(ctx context.Context, after string, limit int) ([]item, error)

// Errors of a record, as opposed to errors that stop the run.
type (
	// refusal: GHL refused the record, or it cannot be sent: it is
	// reported and not sent again until it changes.
	// retry: its cause is outside the row (a custom field the location
	// lacks), so the record is read and tried again by every pass, not
	// only when its row changes.
	refusal struct {
		reason string
		retry  bool
	}
	// unanswered: a GHL call got no answer (timeout, reset) or one that
	// could not be read; the record is tried again, like after a 5xx.
	unanswered struct{ err error }
)

func (e *refusal) Error() string    { return e.reason }
func (e *unanswered) Error() string { return "GHL did not answer: " + e.err.Error() }
func (e *unanswered) Unwrap() error { return e.err }

func refusedf(format string, args ...any) error {
	return &refusal{reason: fmt.Sprintf(format, args...)}
}

// retryRefusedf is refusedf for a cause outside the record's row, which
// a pass may find fixed (refusal.retry).
func retryRefusedf(format string, args ...any) error {
	return &refusal{reason: fmt.Sprintf(format, args...), retry: true}
}

// refusedOutside reports whether err is a refusal whose cause is outside
// the record's row.
func refusedOutside(err error) bool {
	var rf *refusal
	return errors.As(err, &rf) && rf.retry
}

// classify sorts an error of a record: a refusal, a temporary failure
// (retried), or neither, which stops the run (rate limit, the location's
// token, the database, Redis, a lost lock, the task's deadline).
func classify(ctx context.Context, err error) (refused, temporary bool) {
	if ctx.Err() != nil {
		return false, false
	}
	var rf *refusal
	var un *unanswered
	var lf *locationFault
	switch {
	case errors.As(err, &lf):
		// The location's setup, not the record.
		return false, false
	case errors.As(err, &rf), errors.Is(err, store.ErrDuplicateEvent):
		return true, false
	case ghl.IsUserMissing(err):
		// GHL's 401 for a user the record names that does not exist: the
		// record's problem, not the location's token.
		return true, false
	case ghl.IsRateLimited(err), ghl.IsAccessDenied(err), errors.Is(err, ghl.ErrLocationInactive):
		// The location, not the record: GHL's limit, a token refreshed and
		// retried once already or lacking access, or a location GHL says is
		// not active.
		return false, false
	case ghl.IsAPIError(err):
		return !ghl.Temporary(err), ghl.Temporary(err)
	}
	return false, errors.As(err, &un)
}

// reason words a record's error for the result and the state table.
func reason(err error) string {
	var er *ghl.ErrorResponse
	if errors.As(err, &er) {
		return "GHL refused it: " + er.Error()
	}
	return err.Error()
}

// Retries of a record whose GHL call went unanswered, within a run, and
// how many records in a row may fail so before the run gives up on GHL.
const (
	recordAttempts   = 3
	recordBackoff    = time.Second
	maxUnansweredRow = 5
)

// run is one run of a location's sync task: at most one batch.
type run struct {
	e    *Engine
	kind kind
	loc  string
	ghl  *session
	// contacts serialises the contact creation of one patient among the
	// appointments of a run, and remembers the result.
	contacts contactCache
	// claims serialises the upserts of patients GHL would match to one
	// contact (patients.go).
	claims keyLocks
	// setup is the location's phone region and patient id custom field,
	// looked up once (contactsetup.go).
	setup contactSetup
	// force sends every record whatever its hash (Request.Force).
	force bool
	// since, when set, limits the run's read to the rows changed at or
	// after it (incremental.go).
	since *time.Time
	// dryRun decides as a run does and counts what it would do, making no
	// GHL call and writing no state (Request.DryRun).
	dryRun bool

	start time.Time

	mu         sync.Mutex // guards n, unanswered, stopErr, abandoned, resume
	n          tally
	unanswered int
	stopErr    error
	stopped    chan struct{}
	// abandoned is the index, in the page being sent, of the first record
	// left unsent at shutdown; -1 when none.
	abandoned int
	// resume is when the limiter expects to grant the location's next
	// call, once a record's call was handed back to it; zero when none.
	resume time.Time
}

// tally counts what a run did with its records.
type tally struct {
	scanned, created, updated, unchanged, contactsCreated, deleted int
	// unanswered counts the failed records GHL did not answer for.
	unanswered int
	// failed lists up to MaxFailedListed of the failedCount failures.
	failed      []FailedRecord
	failedCount int
}

func newRun(e *Engine, k kind, loc string) *run {
	return &run{
		e: e, kind: k, loc: loc,
		ghl:       newSession(e, loc),
		contacts:  contactCache{ids: map[string]string{}},
		start:     e.now(),
		stopped:   make(chan struct{}),
		abandoned: -1,
	}
}

// stop ends the run with err: nothing new is sent, calls in flight finish.
func (r *run) stop(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopErr == nil {
		r.stopErr = err
		close(r.stopped)
	}
}

func (r *run) stopping() bool {
	select {
	case <-r.stopped:
		return true
	default:
		return false
	}
}

func (r *run) stopCause() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopErr
}

// walk runs the batch: it reads pages after after, and sends the records
// that changed, Concurrency at a time, until BatchSize were sent, Budget
// has passed, the table ends (done) or the run stops. It returns the
// external id of the last record covered: every record up to it was
// looked at and, if sent, answered.
func (r *run) walk(ctx context.Context, after string, page pageFunc) (cursor string, done bool) {
	if !r.dryRun {
		if err := r.ghl.load(ctx); err != nil {
			r.stop(err)
			return after, false
		}
	}
	batch := orInt(r.e.BatchSize, 500)
	pageSize := orInt(r.e.PageSize, 1000)
	budget := r.e.Budget
	if budget <= 0 {
		budget = 3 * time.Minute
	}
	slots := make(chan struct{}, orInt(r.e.Concurrency, 8))
	sendCtx := ctx
	if d := r.e.handBackAfter(); d > 0 && !r.dryRun {
		sendCtx = ratelimit.WithHandBack(ctx, d)
	}
	cursor, sent := after, 0
	for {
		items, err := page(ctx, cursor, pageSize)
		if err != nil {
			r.stop(err)
			return cursor, false
		}
		var wg sync.WaitGroup
		handOver := false
		pageStart := cursor
		for i, it := range items {
			if it.push != nil && !r.dryRun && (sent >= batch || sent > 0 && r.e.now().Sub(r.start) > budget || r.stopping() || r.e.shuttingDown() || r.handingBack()) {
				handOver = true
				break
			}
			cursor = it.key
			r.mu.Lock()
			r.n.scanned++
			switch {
			case it.unchanged:
				r.n.unchanged++
			case it.known != "":
				r.failLocked(it.key, it.known)
			}
			r.mu.Unlock()
			switch {
			case r.dryRun && it.invalid != "":
				r.mu.Lock()
				r.failLocked(it.key, it.invalid)
				r.mu.Unlock()
			case r.dryRun && it.push != nil:
				r.mu.Lock()
				if it.check != nil {
					if err := it.check(); err != nil {
						r.failLocked(it.key, reason(err))
						r.mu.Unlock()
						continue
					}
				}
				if it.creates {
					r.n.created++
				} else {
					r.n.updated++
				}
				r.mu.Unlock()
			case it.invalid != "":
				r.refuse(ctx, it, it.invalid)
			case it.push != nil:
				sent++
				slots <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-slots; wg.Done() }()
					r.send(sendCtx, i, it)
				}()
			}
		}
		wg.Wait()
		if first := r.firstAbandoned(); first >= 0 {
			// The follow-up starts at the first record left unsent; those
			// after it that were sent are unchanged to it.
			cursor = pageStart
			if first > 0 {
				cursor = items[first-1].key
			}
			return cursor, false
		}
		switch {
		case handOver || r.stopping() || r.e.shuttingDown() || r.handingBack():
			return cursor, false
		case len(items) < pageSize:
			return cursor, true
		}
	}
}

// send pushes the record at index i of its page, trying again a record
// whose call went unanswered.
func (r *run) send(ctx context.Context, i int, it item) {
	if r.stopping() {
		// The run stopped while the record waited for a slot: nothing new
		// is sent (a scope 401 would only come again).
		r.abandon(i)
		return
	}
	var err error
	for attempt := 1; ; attempt++ {
		var out outcome
		out, err = it.push(ctx)
		if errors.Is(err, errShuttingDown) {
			var hb *handBackError
			if errors.As(err, &hb) {
				r.handBack(hb.pe.RetryAfter)
			}
			r.abandon(i)
			return
		}
		if err == nil {
			r.mu.Lock()
			r.unanswered = 0
			if out == created {
				r.n.created++
			} else {
				r.n.updated++
			}
			r.mu.Unlock()
			return
		}
		refused, temporary := classify(ctx, err)
		switch {
		case refused:
			r.refuse(ctx, it, reason(err))
			return
		case !temporary:
			r.stop(err)
			return
		case attempt == recordAttempts || r.stopping():
			r.failUnanswered(it.key, err)
			return
		case r.e.shuttingDown() || r.handingBack():
			r.abandon(i)
			return
		}
		select {
		case <-ctx.Done():
			r.stop(context.Cause(ctx))
			return
		case <-r.e.ShuttingDown:
			// Not worth holding the shutdown for: the follow-up sends it.
			r.abandon(i)
			return
		case <-clock.Or(r.e.Clock).After(recordBackoff << (attempt - 1)):
		}
	}
}

// errShuttingDown: a record's call was not made because the process is
// shutting down; the record is left to the follow-up.
var errShuttingDown = errors.New("syncer: shutting down")

// handBackError: a record's call was not made because the location's
// limiter would have held it longer than Engine.HandBackAfter. It is
// errShuttingDown to the code that makes the record's calls (the record
// is left to the follow-up, as at shutdown), and a *ratelimit.PausedError
// to errors.As: should it stop a run, the task is retried after the wait,
// as for a pause, and not counted as failed.
type handBackError struct{ pe *ratelimit.PausedError }

func (e *handBackError) Error() string        { return e.pe.Error() }
func (e *handBackError) Unwrap() error        { return e.pe }
func (e *handBackError) Is(target error) bool { return target == errShuttingDown }

// notSent reports whether err says that GHL never saw the call: the
// limiter handed it back (handBackError). The intent written before such
// a call is put back as it was, so that the follow-up does not look for
// a create that was never made.
func notSent(err error) bool {
	var hb *handBackError
	return errors.As(err, &hb)
}

// handBack notes that a record's call was handed back to the limiter,
// which expects to grant the next in d: the run takes no new record, and
// its follow-up waits for the soonest such grant.
func (r *run) handBack(d time.Duration) {
	at := r.e.now().Add(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resume.IsZero() || at.Before(r.resume) {
		r.resume = at
	}
}

func (r *run) handingBack() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.resume.IsZero()
}

// resumeIn is how long the follow-up of a run that handed back waits
// (Engine.HandBackAfter); 0 for one that did not.
func (r *run) resumeIn() time.Duration {
	r.mu.Lock()
	at := r.resume
	r.mu.Unlock()
	if at.IsZero() {
		return 0
	}
	return max(at.Sub(r.e.now())-r.e.handBackAfter()/2, time.Millisecond)
}

// abandon leaves the record at index i of the page to the follow-up: it
// is not counted, and the run's cursor stops before it.
func (r *run) abandon(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n.scanned--
	if r.abandoned < 0 || i < r.abandoned {
		r.abandoned = i
	}
}

func (r *run) firstAbandoned() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.abandoned
}

// refuse records a refused record; only a database failure stops the run.
func (r *run) refuse(ctx context.Context, it item, why string) {
	if err := it.refuse(ctx, why); err != nil {
		r.stop(err)
		return
	}
	r.mu.Lock()
	r.failLocked(it.key, why)
	r.mu.Unlock()
}

// failUnanswered reports a record GHL did not answer for; it is tried again
// on the next pass. Enough of them in a row stop the run: GHL is down.
func (r *run) failUnanswered(key string, err error) {
	r.mu.Lock()
	r.failLocked(key, err.Error()+" (tried again on the next sync)")
	r.n.unanswered++
	r.unanswered++
	giveUp := r.unanswered >= maxUnansweredRow
	r.mu.Unlock()
	if giveUp {
		r.stop(fmt.Errorf("GHL failed %d records in a row, the last one: %w", maxUnansweredRow, err))
	}
}

func (r *run) failLocked(key, why string) {
	r.n.failedCount++
	if len(r.n.failed) < MaxFailedListed {
		r.n.failed = append(r.n.failed, FailedRecord{ExternalID: key, Reason: why})
	}
}

// contactCreated counts a contact an appointment sync made for its patient.
func (r *run) contactCreated() {
	r.mu.Lock()
	r.n.contactsCreated++
	r.mu.Unlock()
	if r.e.Observe != nil {
		r.e.Observe(patientsKind.record, "created", 1)
	}
}

// tally returns the run's counts once its records are done, and reports
// them to metrics.
func (r *run) tally() tally {
	r.mu.Lock()
	n := r.n
	r.mu.Unlock()
	if r.e.Observe != nil {
		for outcome, c := range map[string]int{"created": n.created, "updated": n.updated,
			"unchanged": n.unchanged, "failed": n.failedCount} {
			if c > 0 {
				r.e.Observe(r.kind.record, outcome, c)
			}
		}
	}
	return n
}

// persist writes the state that records what GHL did. GHL has acted, so
// the write is retried for a while, past the task's own cancellation: a
// lost GHL id would make the next run look the record up, or for a
// contact without email or phone, create it again.
func (r *run) persist(ctx context.Context, write func(context.Context) error) error {
	return store.Persist(ctx, r.e.Clock, time.Minute, func(err error) bool { return errors.Is(err, store.ErrDuplicateEvent) }, write)
}

// session makes a run's GHL calls for its location: each waits for the
// location's rate limiter and tells it GHL's rate headers; a 401 for an
// invalid or expired token renews the token once, through the location's
// token source, and retries. A 401 for a missing scope spends no refresh
// token: no refresh adds a scope (see missingScope).
type session struct {
	e      *Engine
	loc    string
	tokens *refresh.Source
	// turn lets one call of the run at a time wait for the location's
	// limiter (see wait).
	turn chan struct{}
}

func newSession(e *Engine, loc string) *session {
	return &session{e: e, loc: loc, tokens: &refresh.Source{Location: loc, Store: e.Credentials,
		Renewer: e.Refresher, Check: checkSyncable, Clock: e.Clock}, turn: make(chan struct{}, 1)}
}

// wait waits for the location's limiter, one call of the run at a time.
// The run's calls wait on one window; were they all to ask Redis, each
// grant that frees would wake every one of them for a script each, of
// which one is granted: at GHL's limit, up to Concurrency scripts per
// call. Waiting here instead costs nothing but the caller's goroutine.
func (s *session) wait(ctx context.Context) (ratelimit.Grant, error) {
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return ratelimit.Grant{}, fmt.Errorf("ratelimit %s: %w", s.loc, context.Cause(ctx))
	}
	defer func() { <-s.turn }()
	return s.e.Limiter.Wait(ctx, s.loc)
}

// load reads the location's current access token.
func (s *session) load(ctx context.Context) error {
	_, err := s.tokens.Token(ctx)
	return err
}

// call makes one GHL call with the current token. fn returns GHL's
// response, if any, and the call's error.
func (s *session) call(ctx context.Context, fn func(ctx context.Context, token string) (*ghl.Response, error)) error {
	for retried := false; ; retried = true {
		token, err := s.tokens.Token(ctx)
		if err != nil {
			return err
		}
		// Waiting for GHL's quota ends at shutdown; a call already made
		// is answered.
		if s.e.shuttingDown() {
			return errShuttingDown
		}
		waitCtx, done := s.e.untilShutdown(ctx)
		waitStart := s.e.now()
		grant, err := s.wait(waitCtx)
		shutdown := errors.Is(context.Cause(waitCtx), errShuttingDown)
		done()
		var pe *ratelimit.PausedError
		switch {
		case err != nil && shutdown && ctx.Err() == nil:
			return errShuttingDown
		case errors.As(err, &pe) && pe.HandBack:
			return &handBackError{pe}
		case err != nil:
			return err
		}
		// The call's span records the wait.
		resp, err := fn(ghl.WithRateLimitWait(ctx, s.e.now().Sub(waitStart)), token)
		// The limiter counts the grant as in flight until it hears of the
		// answer, or that none came.
		var rate ghl.Rate
		if resp != nil {
			rate = resp.Rate
		}
		if err := s.e.Limiter.Observe(context.WithoutCancel(ctx), s.loc, grant, rateOf(rate)); err != nil {
			s.e.log().Warn("rate limiter: could not record GHL's answer", "location", s.loc, "err", err)
		}
		switch {
		case err == nil:
			return nil
		case ghl.IsRateLimited(err):
			return s.paused(ctx, err)
		case ghl.IsTokenRejected(err) && !retried:
			if err := s.tokens.Rejected(ctx, token); err != nil {
				return err
			}
			continue
		case ghl.IsAPIError(err), ctx.Err() != nil:
			return err
		}
		return &unanswered{err}
	}
}

// rateOf hands GHL's rate headers, the daily quota's included, to the
// limiter.
func rateOf(r ghl.Rate) ratelimit.Rate {
	return ratelimit.Rate{Max: r.Max, Remaining: r.Remaining, Interval: r.Interval,
		DailyLimit: r.DailyLimit, DailyRemaining: r.DailyRemaining}
}

// paused pauses the location for what a 429 asks and returns the 429 with
// the pause in force. A spent daily quota (X-RateLimit-Daily-Remaining 0)
// was already paused for by Observe, until the limiter's next probe of
// GHL: GHL does not say when its day ends, and it is not UTC midnight.
func (s *session) paused(ctx context.Context, err error) error {
	var rl *ghl.RateLimitError
	errors.As(err, &rl)
	d := rl.RetryAfter
	left, err := s.e.Limiter.Pause(context.WithoutCancel(ctx), s.loc, d)
	if err != nil {
		s.e.log().Warn("rate limiter: could not pause the location", "location", s.loc, "err", err)
		left = d
	}
	s.e.log().Warn("GHL answered 429; the location is paused", "location", s.loc, "for", left)
	out := *rl
	out.RetryAfter = max(left, d)
	return &out
}

// contactCache gives the appointments of a run one contact per patient: a
// patient's first appointment creates the contact while the others wait.
type contactCache struct {
	mu    sync.Mutex
	ids   map[string]string // patient external id -> contact id
	locks keyLocks          // by patient external id: its creation
}

// get returns the patient's contact, calling create (under the patient's
// lock) when the run has none yet.
func (c *contactCache) get(patient string, create func() (string, error)) (string, error) {
	c.mu.Lock()
	id, ok := c.ids[patient]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	defer c.locks.lock([]string{patient})()
	c.mu.Lock()
	id, ok = c.ids[patient]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := create()
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.ids[patient] = id
	c.mu.Unlock()
	return id, nil
}

// keyLocks serialises the work of a run on equal keys.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// lock takes the locks of keys, in order so that two callers cannot
// deadlock, and returns their release.
func (k *keyLocks) lock(keys []string) (unlock func()) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	held := make([]*sync.Mutex, 0, len(keys))
	for _, key := range slices.Compact(keys) {
		k.mu.Lock()
		if k.locks == nil {
			k.locks = map[string]*sync.Mutex{}
		}
		l := k.locks[key]
		if l == nil {
			l = &sync.Mutex{}
			k.locks[key] = l
		}
		k.mu.Unlock()
		l.Lock()
		held = append(held, l)
	}
	return func() {
		for _, l := range held {
			l.Unlock()
		}
	}
}
