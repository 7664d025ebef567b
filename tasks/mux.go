package tasks

import (
	"errors"

	"github.com/hibiken/asynq"
)

// NewMux routes every task type (see Types) to its handler, once the
// handlers (and what they are built on) have every required part.
func NewMux(tokens *TokenHandlers, syncs *SyncHandlers, alerts *AlertHandlers) (*asynq.ServeMux, error) {
	if err := errors.Join(tokens.Validate(), syncs.Validate(), alerts.Validate()); err != nil {
		return nil, err
	}
	mux := asynq.NewServeMux()
	h := handlerSets{tokens, syncs, alerts}
	for _, t := range types {
		mux.HandleFunc(t.Type, t.handler(h))
	}
	return mux, nil
}
