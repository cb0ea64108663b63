package deploycheck

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/kis-core/runbook/eventbus/svcmain"
)

// Unit is what a systemd unit of deploy/systemd says about the process it
// runs.
type Unit struct {
	Name string
	// Binary is the base name of ExecStart's program (preflight, ...,
	// runbook).
	Binary    string
	ExecStart string
	// Env are the variables Environment= sets, in order.
	Env []string
	// EnvFiles are the EnvironmentFile= paths (a leading "-", optional,
	// dropped).
	EnvFiles []string
}

// ParseUnit reads the [Service] settings of a unit file that name the
// process and its environment.
func ParseUnit(name string, data []byte) (Unit, error) {
	u := Unit{Name: name}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Service]" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return u, fmt.Errorf("%s:%d: %q is no key=value", name, n, line)
		}
		switch strings.TrimSpace(key) {
		case "ExecStart":
			u.ExecStart = strings.TrimSpace(val)
			if f := strings.Fields(u.ExecStart); len(f) > 0 {
				u.Binary = path.Base(strings.TrimLeft(f[0], "-@:+!"))
			}
		case "Environment":
			for _, kv := range strings.Fields(val) {
				k, _, _ := strings.Cut(strings.Trim(kv, `"`), "=")
				u.Env = append(u.Env, k)
			}
		case "EnvironmentFile":
			u.EnvFiles = append(u.EnvFiles, strings.TrimPrefix(strings.TrimSpace(val), "-"))
		}
	}
	if u.ExecStart == "" {
		return u, fmt.Errorf("%s: no ExecStart in [Service]", name)
	}
	return u, nil
}

// EnvFileNames are the variables an environment file sets (comments and
// blank lines skipped).
func EnvFileNames(data []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		out = append(out, strings.TrimSpace(k))
	}
	return out
}

var execVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// UnreadUnitEnv lists the variables a unit sets (Environment=, and the
// files of envFiles: the unit's EnvironmentFile= paths mapped to their
// examples in deploy/systemd, by file name) that neither its binary reads
// (svcmain.Env) nor its ExecStart line uses ($NAME), one message each; and
// a unit whose binary is no runbook binary.
func UnreadUnitEnv(u Unit, envFiles map[string][]string) []string {
	var out []string
	if !slices.Contains(svcmain.Services, u.Binary) && u.Binary != svcmain.Runbook {
		return []string{fmt.Sprintf("%s: ExecStart runs %q, no runbook binary (want one of %s, %s)", u.Name, u.Binary, strings.Join(svcmain.Services, ", "), svcmain.Runbook)}
	}
	var used []string
	for _, m := range execVar.FindAllStringSubmatch(u.ExecStart, -1) {
		used = append(used, m[1])
	}
	check := func(where, name string) {
		if !svcmain.ReadBy(u.Binary, name) && !slices.Contains(used, name) {
			out = append(out, fmt.Sprintf("%s: %s sets %s, which %s does not read (eventbus/svcmain/env.go) and ExecStart does not use", u.Name, where, name, u.Binary))
		}
	}
	for _, k := range u.Env {
		check("Environment=", k)
	}
	for _, f := range u.EnvFiles {
		for _, k := range envFiles[path.Base(f)] {
			check("EnvironmentFile="+f, k)
		}
	}
	return out
}
