package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/domain/plan/planschema"
	"github.com/kis-core/runbook/examples/plans"
)

func initCmd(g *globals) *cobra.Command {
	var name, url, health, file string
	var force bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Write a commented change plan for a plain HTTP service, to start from",
		Long: `init writes a commented plan (examples/plans/minimal.yaml) for a plain HTTP
service: a pre-flight health check, one deploy step, the health gate, a
rollback step, a watch window probing the service and a smoke test. It
validates as written; replace the deploy and rollback commands with yours.
Every field is in docs/plan-reference.md. An existing file is kept unless
--force; -f - writes to standard output.`,
		Example: `  runbook init --name estimator --url http://127.0.0.1:18080 --health /api/v1/health
  runbook validate plan.yaml && runbook submit --watch plan.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := plans.Init(name, url, health)
			if err != nil {
				return &exitError{2, err}
			}
			if file == "-" {
				_, err := g.out.Write(data)
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(file, flags, 0o644)
			if errors.Is(err, fs.ErrExist) {
				return &exitError{2, fmt.Errorf("%s exists: keep it, or overwrite it with --force (or write elsewhere with -f FILE)", file)}
			}
			if err != nil {
				return fmt.Errorf("write the plan: %w", err)
			}
			if _, err := f.Write(data); err != nil {
				f.Close()
				return fmt.Errorf("write %s: %w", file, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			fmt.Fprintf(g.out, "wrote %s: a plan for %s at %s%s\nnext: put your deploy and rollback commands in it, then\n  runbook validate %s\n  runbook submit --watch %s\n", file, name, url, health, file, file)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", plans.InitName, "the service's name (letters, digits, . _ -)")
	f.StringVar(&url, "url", plans.InitURL, "the service's base URL")
	f.StringVar(&health, "health", plans.InitHealth, "the path of its health check")
	f.StringVarP(&file, "file", "f", "plan.yaml", "where to write the plan (- for standard output)")
	f.BoolVar(&force, "force", false, "overwrite FILE if it exists")
	return c
}

func schemaCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the change plan's JSON Schema (for editors and tools)",
		Long: `schema prints the JSON Schema (draft-07) of a change plan: the same as
docs/plan.schema.json. Editors with a YAML language server check a plan
against it as you type when its first line is

  # yaml-language-server: $schema=plan.schema.json

The schema checks the plan's shape (a misspelt field fails it); runbook
validate checks everything.`,
		Example: `  runbook schema > plan.schema.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := planschema.JSON()
			if err != nil {
				return err
			}
			_, err = g.out.Write(data)
			return err
		},
	}
}
