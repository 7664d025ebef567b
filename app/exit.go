package app

import (
	"io"

	"github.com/ghlsync/ghlsync/internal/cli"
)

// The exit statuses and usage errors of every ghlsync binary live in
// internal/cli, with the rest of the command-line shape; these are their
// names for app's commands and the mains.

// Exit statuses, the same for every ghlsync binary.
const (
	ExitOK      = cli.ExitOK
	ExitFailure = cli.ExitFailure
	ExitUsage   = cli.ExitUsage
)

// UsageError is bad input on the command line: exit status ExitUsage.
type UsageError = cli.UsageError

// Usage marks err as bad input; nil stays nil.
func Usage(err error) error { return cli.Usage(err) }

// Usagef is Usage(fmt.Errorf(format, a...)).
func Usagef(format string, a ...any) error { return cli.Usagef(format, a...) }

// Exit reports err on stderr as "prog: err" and returns ExitStatus(err)
// (see cli.Exit).
func Exit(stderr io.Writer, prog string, err error) int { return cli.Exit(stderr, prog, err) }
