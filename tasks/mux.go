package tasks

import (
	"errors"

	"github.com/hibiken/asynq"
)

// NewMux routes every task type to its handler, once the handlers (and
// what they are built on) have every required part.
func NewMux(tokens *TokenHandlers, syncs *SyncHandlers, alerts *AlertHandlers) (*asynq.ServeMux, error) {
	if err := errors.Join(tokens.Validate(), syncs.Validate(), alerts.Validate()); err != nil {
		return nil, err
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeTokenRefresh, tokens.HandleRefresh)
	mux.HandleFunc(TypeTokenRefreshDue, tokens.HandleRefreshDue)
	mux.HandleFunc(TypePatientsSync, syncs.HandlePatientsSync)
	mux.HandleFunc(TypeAppointmentsSync, syncs.HandleAppointmentsSync)
	mux.HandleFunc(TypeAlertsEvaluate, alerts.HandleEvaluate)
	return mux, nil
}
