package tasks

import (
	"errors"

	"github.com/hibiken/asynq"
)

// NewMux routes every task type (see Types) to its handler, once the
// handlers (and what they are built on) have every required part. inbound,
// when given, runs the inbound tasks (webhook processing, reconciliation);
// without it those tasks fail, not retried.
func NewMux(tokens *TokenHandlers, syncs *SyncHandlers, alerts *AlertHandlers, inbound ...*InboundHandlers) (*asynq.ServeMux, error) {
	errs := []error{tokens.Validate(), syncs.Validate(), alerts.Validate()}
	h := handlerSets{tokens: tokens, syncs: syncs, alerts: alerts}
	if len(inbound) > 0 {
		h.inbound = inbound[0]
		errs = append(errs, h.inbound.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	mux := asynq.NewServeMux()
	for _, t := range types {
		mux.HandleFunc(t.Type, t.handler(h))
	}
	return mux, nil
}
