package tasks

import (
	"errors"

	"github.com/hibiken/asynq"
)

// NewMux routes every task type (see Types) to its handler, once both
// handlers (and what they are built on) have every required part.
func NewMux(tokens *TokenHandlers, syncs *SyncHandlers) (*asynq.ServeMux, error) {
	if err := errors.Join(tokens.Validate(), syncs.Validate()); err != nil {
		return nil, err
	}
	mux := asynq.NewServeMux()
	for _, t := range types {
		mux.HandleFunc(t.Type, t.handler(tokens, syncs))
	}
	return mux, nil
}
