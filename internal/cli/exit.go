package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/ghlsync/ghlsync/internal/config"
)

// Exit statuses, the same for every ghlsync binary.
const (
	// ExitOK: the command did what it was asked.
	ExitOK = 0
	// ExitFailure: the command failed; what it did so far stays done.
	ExitFailure = 1
	// ExitUsage: bad input or configuration; nothing was changed.
	ExitUsage = 2
)

// UsageError is bad input on the command line (a wrong argument, flag or
// name), found before anything changed: exit status ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as bad input; nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{Err: err}
}

// Usagef is Usage(fmt.Errorf(format, a...)).
func Usagef(format string, a ...any) error {
	return &UsageError{Err: fmt.Errorf(format, a...)}
}

// ExitStatus is the exit status a command that ended with err ends with:
// ExitOK for nil and for a request for help (flag.ErrHelp: -h printed
// what was asked for); ExitUsage for bad configuration (*config.Error) and
// bad input (*UsageError); ExitFailure for anything else.
func ExitStatus(err error) int {
	var ce *config.Error
	var ue *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ce), errors.As(err, &ue):
		return ExitUsage
	default:
		return ExitFailure
	}
}

// Exit reports err on stderr as "prog: err" and returns ExitStatus(err),
// for a main to end with. prog names the command, with its subcommand if
// it has any ("scheduler set"). An error joined of several (errors.Join)
// gets a line each. A configuration error points to prog's -h, which
// lists the variables. flag.ErrHelp prints nothing: Help has printed the
// usage.
func Exit(stderr io.Writer, prog string, err error) int {
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			// Errors from drivers and clients may quote a configured
			// URL; none leaves with its credentials.
			msg := config.RedactText(e.Error())
			if ce := (*config.Error)(nil); errors.As(e, &ce) {
				msg += " (see " + prog + " -h)"
			}
			fmt.Fprintf(stderr, "%s: %s\n", prog, msg)
		}
	}
	return ExitStatus(err)
}
