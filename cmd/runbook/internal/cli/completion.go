package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus/decision"
)

// Dynamic shell completion (runbook completion bash|zsh|fish|powershell):
// run ids from the stream, a run's approval roles, statuses, formats.
// Completion fails soft: when NATS cannot be reached, or answers slowly,
// there are simply no suggestions.

// completionTimeout bounds what one completion may wait for NATS.
const completionTimeout = 3 * time.Second

func completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// completeRunID completes a command's RUN argument with the stream's run
// ids, newest first (as --nats-url and --creds given so far reach it).
func (g *globals) completeRunID(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := completionContext(cmd)
	defer cancel()
	bus, closeFn, err := g.connect(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer closeFn()
	ids, err := bus.RunIDs(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return ids, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// completeRunRole completes approve's and reject's --role with the roles
// the run (the RUN argument) requires.
func (g *globals) completeRunRole(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := completionContext(cmd)
	defer cancel()
	bus, closeFn, err := g.connect(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer closeFn()
	f, err := decision.Load(ctx, bus, args[0], nil)
	if err != nil || f.Gate == nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return f.Gate.Required, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// completeStatus completes runs --status.
func completeStatus(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return runstate.StatusNames(), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}

// completeIdentityRole completes identity create --role: the roles people
// are given.
func completeIdentityRole(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	roles := make([]string, len(trust.PeopleRoles))
	for i, r := range trust.PeopleRoles {
		roles[i] = string(r)
	}
	return roles, cobra.ShellCompDirectiveNoFileComp
}
