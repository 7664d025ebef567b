package tasks

import "github.com/hibiken/asynq"

// NewMux routes every task type to its handler.
func NewMux(tokens *TokenHandlers) *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeTokenRefresh, tokens.HandleRefresh)
	mux.HandleFunc(TypeTokenRefreshDue, tokens.HandleRefreshDue)
	return mux
}
