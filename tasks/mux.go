package tasks

import "github.com/hibiken/asynq"

// NewMux routes every task type to its handler.
func NewMux(tokens *TokenHandlers, syncs *SyncHandlers) *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeTokenRefresh, tokens.HandleRefresh)
	mux.HandleFunc(TypeTokenRefreshDue, tokens.HandleRefreshDue)
	mux.HandleFunc(TypePatientsSync, syncs.HandlePatientsSync)
	mux.HandleFunc(TypeAppointmentsSync, syncs.HandleAppointmentsSync)
	return mux
}
