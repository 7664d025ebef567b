package syncer

import (
	"context"
	"time"
)

// Incremental passes. A pass reads only the rows changed since the
// location's last completed pass: those whose updated_at is at or after
// its watermark less Engine.Overlap (store/watermark.go), the content hash
// still deciding whether a changed row is really different. The watermark
// is the database's clock when that pass started to read, so the worker's
// clock plays no part, and the overlap covers a clinic transaction that
// stamped updated_at before the read and committed after it.
//
// A full pass (Request.Full; the first pass of a location, and every pass
// with Force, are full too) reads every row and compares the sync state
// with the table, which is the only way to see a row deleted from it; an
// incremental pass sees deletions by deleted_at, since setting it changes
// updated_at. A change of the location's settings (the allow-list, the
// title template) changes every record's hash, so a pass after one is full.
//
// Only a pass that completed moves the watermark: one that failed, was
// stopped or rate limited, a dry run, a pass limited by Request.Since, and
// one with records GHL did not answer for (tried again by the next pass)
// leave it where it was.

// What a pass reads (Result.Read).
const (
	ReadFull    = "full"
	ReadChanged = "changed"
)

// DefaultOverlap is Engine.Overlap's default.
const DefaultOverlap = 10 * time.Minute

func (e *Engine) overlap() time.Duration {
	if e.Overlap > 0 {
		return e.Overlap
	}
	return DefaultOverlap
}

// planRead decides what the pass of req reads, at its first run, and
// records it in res.
func (e *Engine) planRead(ctx context.Context, req Request, res *Result) error {
	readAt, err := e.State.DatabaseNow(ctx)
	if err != nil {
		return err
	}
	res.ReadAt, res.Read, res.Since = &readAt, ReadFull, nil
	switch {
	case req.Since != nil:
		since := req.Since.UTC()
		res.Read, res.Since = ReadChanged, &since
		return nil
	case req.Full || req.Force:
		return nil
	}
	mark, ok, err := e.State.Watermark(ctx, req.Location, req.Kind)
	if err != nil || !ok {
		return err
	}
	since := mark.Add(-e.overlap())
	ls, err := e.State.Settings(ctx, req.Location)
	if err != nil {
		return err
	}
	if ls.UpdatedAt.After(mark) {
		// Changed after the last completed pass started: that pass may
		// have hashed with the settings before.
		return nil
	}
	res.Read, res.Since = ReadChanged, &since
	return nil
}

// advanceWatermark moves the location's watermark to the start of the
// pass res, which completed, unless the pass may not move it (see the top
// of the file). A failed write only makes the next pass read more.
func (e *Engine) advanceWatermark(ctx context.Context, req Request, res Result) {
	if req.DryRun || req.Since != nil || res.ReadAt == nil || res.Unanswered > 0 {
		return
	}
	if err := e.State.AdvanceWatermark(context.WithoutCancel(ctx), req.Location, req.Kind, *res.ReadAt); err != nil {
		e.log().Warn("could not record the sync's watermark; the next pass reads from the older one",
			"location", req.Location, "kind", req.Kind, "err", err)
	}
}
