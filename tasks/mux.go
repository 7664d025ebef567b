package tasks

import (
	"errors"

	"github.com/hibiken/asynq"
)

// NewMux routes every task type to its handler, once both handlers (and
// what they are built on) have every required part.
func NewMux(tokens *TokenHandlers, syncs *SyncHandlers) (*asynq.ServeMux, error) {
	if err := errors.Join(tokens.Validate(), syncs.Validate()); err != nil {
		return nil, err
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeTokenRefresh, tokens.HandleRefresh)
	mux.HandleFunc(TypeTokenRefreshDue, tokens.HandleRefreshDue)
	mux.HandleFunc(TypePatientsSync, syncs.HandlePatientsSync)
	mux.HandleFunc(TypeAppointmentsSync, syncs.HandleAppointmentsSync)
	return mux, nil
}
