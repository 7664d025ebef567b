package web

import (
	"context"

	"github.com/ghlsync/ghlsync/store"
)

// InboundSource is what the location page shows of the inbound direction
// (the inbox, conflicts, the last reconciliation); a StatusSource that is
// also one (*store.Store) gets it shown.
type InboundSource interface {
	InboundStatus(ctx context.Context, loc string) (store.InboundStatus, error)
}

// inboundStatus returns loc's inbound status, nil when the source has
// none.
func (p *pages) inboundStatus(ctx context.Context, loc string) (*store.InboundStatus, error) {
	src, ok := p.Source.(InboundSource)
	if !ok {
		return nil, nil
	}
	st, err := src.InboundStatus(ctx, loc)
	if err != nil {
		return nil, err
	}
	return &st, nil
}
