// Package cliconv holds the command-line conventions every runbook binary
// follows (the runbook command, the five services, the demo estimator):
// --version, and usage errors that exit 2. docs/cli.md documents them.
package cliconv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kis-core/runbook/eventbus/buildinfo"
)

// ExitUsage is the exit code of a usage error: an unknown command or flag,
// a flag's bad value, a missing or extra argument, a required flag not given.
const ExitUsage = 2

// UsageError is an error in how a command was called (ExitUsage).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as a usage error; nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	var u *UsageError
	if errors.As(err, &u) {
		return err
	}
	return &UsageError{err}
}

// IsUsage reports whether err is a usage error.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}

// VersionLine is what --version prints for the binary name:
// "runbook v1.2.3 (commit abc1234, go1.26.0)".
func VersionLine(name string) string { return name + " " + buildinfo.Get().String() }

// Conventions gives root (a complete command tree: call it after every
// subcommand is added) the conventions of runbook's binaries:
//
//   - --version prints VersionLine(name);
//   - every usage error is a UsageError: unknown flags and bad flag values,
//     a wrong number of arguments, an unknown subcommand, a required flag
//     not given;
//   - errors and usage are not printed by cobra: the caller prints the
//     error once (Execute, or the runbook command's own).
func Conventions(root *cobra.Command, name string) {
	root.Version = buildinfo.Get().Version
	root.SetVersionTemplate(VersionLine(name) + "\n")
	root.SilenceErrors, root.SilenceUsage = true, true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	// Required flags are checked before cobra's own check, which
	// returns a plain error.
	pre := root.PersistentPreRunE
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := cmd.ValidateRequiredFlags(); err != nil {
			return Usage(err)
		}
		if err := cmd.ValidateFlagGroups(); err != nil {
			return Usage(err)
		}
		if pre != nil {
			return pre(cmd, args)
		}
		return nil
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		switch {
		case c.HasSubCommands() && !c.Runnable():
			// A group (runbook audit, runbook identity): help, or an
			// unknown subcommand.
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return nil
				}
				msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
				if cmd.SuggestionsMinimumDistance <= 0 {
					cmd.SuggestionsMinimumDistance = 2 // cobra's default
				}
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += " (did you mean " + strings.Join(s, " or ") + "?)"
				}
				return Usage(errors.New(msg))
			}
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		case c.Args != nil:
			args := c.Args
			c.Args = func(cmd *cobra.Command, a []string) error { return Usage(args(cmd, a)) }
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// Execute runs a binary's command c (with Conventions) on args and returns
// the exit code: 0, 1 when it failed, ExitUsage for a usage error. The
// error is printed as one line on stderr, "<name>: <error>".
// Long flags written with one dash (-nats-url, as Go's flag package took
// them) still work.
func Execute(ctx context.Context, c *cobra.Command, args []string, stdout, stderr io.Writer) int {
	c.SetArgs(singleDashLongFlags(c.Flags(), args))
	c.SetOut(stdout)
	c.SetErr(stderr)
	err := c.ExecuteContext(ctx)
	switch {
	case err == nil:
		return 0
	case IsUsage(err):
		fmt.Fprintf(stderr, "%s: %v (see %s --help)\n", c.Name(), err, c.Name())
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "%s: %v\n", c.Name(), err)
		return 1
	}
}

// singleDashLongFlags turns -name and -name=value into --name... when name
// is one of fs's long flags: the service binaries took flags the Go flag
// package's way before they took them cobra's.
func singleDashLongFlags(fs *pflag.FlagSet, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) > 1 && fs.Lookup(name) != nil {
			out[i] = "-" + a
		}
	}
	return out
}
