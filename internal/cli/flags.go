// Package cli is the one command-line shape of every ghlsync binary: -h
// prints what the command (or subcommand) takes, its own flags only, with
// their defaults and environment variables, and exits 0; a bad flag, value
// or argument is one line on stderr that names it and points to -h, exit
// status ExitUsage; flags may come anywhere among the arguments. It is a
// leaf, so that a small binary (healthcheck) stays small.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// NewFlagSet returns the flag set of the command line name, as typed
// ("enqueue result"). It prints nothing itself: ParseArgs turns what is
// wrong into one line, and Help prints -h.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// ParseArgs parses args into fs, taking flags anywhere among the
// positional arguments (`scheduler set token-refresh --every 30s`; the
// flag package alone stops at the first positional one; after "--" all
// are positional), and returns the positional ones. It returns
// flag.ErrHelp for -h or --help, and for a bad flag or value a
// *UsageError of one line that names it and points to -h.
func ParseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, UsageHelp(fs.Name(), "%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// UsageHelp is a *UsageError about the command line of prog, with a
// pointer to prog's -h.
func UsageHelp(prog, format string, a ...any) error {
	return Usagef("%s (see %s -h)", fmt.Sprintf(format, a...), prog)
}

// WithHelp points a *UsageError about the command line of prog to prog's
// -h, unless it does already; other errors it returns as they are.
func WithHelp(prog string, err error) error {
	var ue *UsageError
	if errors.As(err, &ue) && !strings.HasSuffix(err.Error(), " -h)") {
		return UsageHelp(prog, "%v", err)
	}
	return err
}

// WantArgs checks that the command line of fs got exactly the positional
// arguments named in names ("TASK_ID"), as a *UsageError pointing to -h.
func WantArgs(fs *flag.FlagSet, pos []string, names ...string) error {
	switch {
	case len(pos) < len(names):
		return UsageHelp(fs.Name(), "needs %s", strings.Join(names[len(pos):], " "))
	case len(pos) > len(names):
		return UsageHelp(fs.Name(), "unexpected argument %q", pos[len(names)])
	}
	return nil
}

// SplitCommand finds the subcommand in args: the first positional
// argument, skipping flags and the values of those that take one (a flag
// of any of sets, which together hold every flag of the binary). It
// returns "" when there is none, and args without it; also when a flag no
// set has comes first, since what follows it cannot be told apart from
// its value: the binary's own flag set then reports the flag.
func SplitCommand(args []string, sets ...*flag.FlagSet) (cmd string, rest []string) {
	lookup := func(name string) (known, takesValue bool) {
		for _, fs := range sets {
			if f := fs.Lookup(name); f != nil {
				b, ok := f.Value.(interface{ IsBoolFlag() bool })
				return true, !ok || !b.IsBoolFlag()
			}
		}
		return name == "h" || name == "help", false
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return args[i+1], append(append([]string{}, args[:i+1]...), args[i+2:]...)
			}
			return "", args
		case len(a) > 1 && a[0] == '-':
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			known, takesValue := lookup(name)
			if !known {
				return "", args
			}
			if !hasValue && takesValue {
				i++
			}
		default:
			return a, append(append([]string{}, args[:i]...), args[i+1:]...)
		}
	}
	return "", args
}

// Help writes -h of a command: synopsis (its usage lines and what it
// does), then its flags with their defaults and environment variables,
// then secrets, the environment variables with credentials it reads, which
// have no flag.
func Help(w io.Writer, synopsis string, fs *flag.FlagSet, secrets []string) {
	fmt.Fprintln(w, strings.TrimRight(synopsis, "\n"))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
	}
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + kind
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n        %s\n", line, usage)
	})
	if len(secrets) > 0 {
		fmt.Fprintf(w, "\nsecrets, from the environment only (or NAME_FILE, a file holding the value):\n  %s\n", strings.Join(secrets, ", "))
	}
}
