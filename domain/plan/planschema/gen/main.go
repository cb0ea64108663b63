// Command gen writes the plan's generated documentation: the JSON Schema
// (docs/plan.schema.json) and the reference (docs/plan-reference.md), from
// the plan's Go types. Run it from anywhere in the repository:
//
//	go run ./domain/plan/planschema/gen
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kis-core/runbook/domain/plan/planschema"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	schema, err := planschema.JSON()
	if err != nil {
		return err
	}
	ref, err := planschema.Reference()
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{planschema.SchemaFile: schema, planschema.ReferenceFile: []byte(ref)} {
		path := filepath.Join(root, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		fmt.Println("wrote", name)
	}
	return nil
}

// repoRoot is the directory holding go.work, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found above the working directory: run it inside the repository")
		}
		dir = parent
	}
}
