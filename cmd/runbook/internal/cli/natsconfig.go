package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus/auth"
)

// natsConfigCmd is `runbook identity nats-config`; dir is the identity
// command's --identity-dir.
func natsConfigCmd(g *globals, dir *string) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "nats-config [--identity-dir DIR] [--out FILE]",
		Short: "Print the nats-server authorization block for the keyring (for a NATS server or cluster of your own)",
		Long: `nats-config prints a nats-server configuration fragment: an authorization
block with one nkey user per active (not revoked) identity of the keyring,
each with the permissions its role has on runbook serve's embedded server
(eventbus/auth.Permissions). Anonymous clients are refused.

Include it from the server's configuration (include ./auth.conf) on every
node, and after runbook identity create or revoke generate it again and
reload the servers (nats-server --signal reload, or SIGHUP).

--out writes the file atomically (a failed run never leaves an empty file,
which nats-server would read as "no authorization").`,
		Example: `  runbook identity nats-config --identity-dir deploy/compose/identities --out deploy/compose/auth.conf
  runbook identity nats-config --identity-dir /etc/runbook/identities > /etc/nats/auth.conf.new`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store := auth.Store{Dir: *dir}
			kr, err := auth.LoadKeyring(store.KeyringPath())
			if errors.Is(err, os.ErrNotExist) {
				return &exitError{exitUsage, fmt.Errorf("no keyring at %s: make the identities first (runbook identity create NAME --role ROLE --identity-dir %s), or give --identity-dir", store.KeyringPath(), *dir)}
			}
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := auth.NATSConfig(&b, kr, store.KeyringPath()); err != nil {
				return fmt.Errorf("%s: %w", store.KeyringPath(), err)
			}
			if out == "" {
				_, err := g.out.Write(b.Bytes())
				return err
			}
			if err := writeNATSConfFile(out, b.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "wrote %s: %d identities; reload the NATS servers that include it (nats-server --signal reload, or SIGHUP)\n", out, len(auth.Users(kr)))
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "write the fragment to FILE (atomically) instead of stdout")
	return c
}

// writeNATSConfFile replaces path with data: a temporary file in the same
// directory, synced, then renamed over it.
func writeNATSConfFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
