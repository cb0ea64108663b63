package cli

import (
	"fmt"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
)

func identityCmd(g *globals) *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "identity",
		Short: "Make, list and revoke the identities the bus and the services trust",
		Long: `Every connection to runbook's NATS is authenticated with an Ed25519 nkey, and
the server lets each identity do only what its role may (docs/security.md):

  requester  submit changes, cancel them, ask for a rollback
  approver   approve or reject runs (signed, bound to the exact plan)
  viewer     read runs, reports, the live alerts and the read API
  admin      everything, including the streams and consumers: keep it offline
  preflight, deployer, monitor, tester, reporter: the services' own

runbook serve makes admin and the five services' identities in
<data-dir>/identities on first start. The keyring (keyring.json) holds the
public keys; a running serve reloads it within a second, so a new identity
may connect at once and a revoked one is shut out.`,
	}
	c.PersistentFlags().StringVar(&dir, "identity-dir", filepath.Join(".runbook", "data", "identities"), "the identity directory of runbook serve (<data-dir>/identities)")

	var role, out string
	create := &cobra.Command{
		Use:   "create NAME --role requester|approver|viewer|admin",
		Short: "Make an identity: a key for the person, its public key into the keyring",
		Long: `create makes a new Ed25519 key for NAME, writes its seed (the secret) to
--out (default <identity-dir>/NAME.nk, mode 0600; never overwritten) and
adds the public key to the keyring with ROLE. Hand the seed file to the
person: it is their --creds (env RUNBOOK_CREDS), and the nats CLI takes it
as --nkey. A plan names approvers by NAME (approval.<role>.approver).

It also prints a bearer token for the read API and dashboard, once (the
keyring keeps only its sha256).`,
		Example: `  runbook identity create lead-architect --role approver --out ~/lead-architect.nk
  runbook identity create oncall --role requester`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := trust.ParseRole(role)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			made, err := auth.Store{Dir: dir}.Create(args[0], r, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "identity %s (%s)\n  public key  %s\n  seed        %s (secret: its owner's --creds)\n  http token  %s (shown once)\n  nats CLI    nats --nkey %s --inbox-prefix %s ...\n",
				made.Identity.Name, made.Identity.Role, made.Identity.PublicKey, made.SeedPath, made.Token, made.SeedPath, auth.InboxPrefix(made.Identity.PublicKey))
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "requester, approver, viewer or admin (or a service's role)")
	create.Flags().StringVar(&out, "out", "", "where to write the seed (default <identity-dir>/NAME.nk)")
	_ = create.MarkFlagRequired("role")
	_ = create.RegisterFlagCompletionFunc("role", completeIdentityRole)

	list := &cobra.Command{
		Use:   "list",
		Short: "List the keyring's identities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kr, err := auth.Store{Dir: dir}.Keyring()
			if err != nil {
				return err
			}
			var t table
			t.row("NAME", "ROLE", "PUBLIC KEY", "CREATED", "REVOKED")
			for _, id := range kr.Identities {
				t.row(id.Name, string(id.Role), id.PublicKey, g.clock(id.Created, isoSeconds), g.clock(id.Revoked, isoSeconds))
			}
			return t.write(g.out)
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an identity: it can no longer connect, its later signatures are refused",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := (auth.Store{Dir: dir}).Revoke(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "identity %s revoked: a running serve closes its connections within a second; for an external nats-server, regenerate its config (runbook identity nats-config) and reload it, and restart services that read a copy of the keyring\n", args[0])
			return nil
		},
	}
	c.AddCommand(create, list, revoke, natsConfigCmd(g, &dir))
	return c
}

func provisionCmd(g *globals) *cobra.Command {
	var replicas int
	c := &cobra.Command{
		Use:   "provision --creds admin.nk [--replicas 3]",
		Short: "Create or update the streams (admin only): for services run as separate processes",
		Long: `provision creates the RUNBOOK audit stream and RUNBOOK_METRICS, or updates
them to runbook's settings, as the admin identity. runbook serve does this
itself; with the services as separate processes on a NATS cluster, an
admin runs it once (the services may not create streams).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, err := g.dial()
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			if err := eventbus.EnsureStreams(cmd.Context(), js, eventbus.StreamOptions{Replicas: replicas}); err != nil {
				return fmt.Errorf("%w (only the admin identity may create or change streams)", err)
			}
			fmt.Fprintf(g.out, "streams %s and %s provisioned (replicas %d)\n", eventbus.AuditStream, eventbus.MetricsStream, max(replicas, 1))
			return nil
		},
	}
	c.Flags().IntVar(&replicas, "replicas", 1, "stream replicas (3 in a cluster)")
	return c
}
