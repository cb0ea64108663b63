// Package deploycheck checks the deployment files in deploy/compose
// against the binaries they run: every environment variable a compose file
// sets for a runbook container is one its binary reads (svcmain.Env, the
// one list of the variables the binaries read, or a variable an example
// plan names), and the cluster file is the documented shape (three NATS
// nodes, R3 streams, two replicas of every service). Its tests also run
// the backup and restore that docs/operations.md gives.
//
// Third-party containers (nats, postgres, prometheus) are not checked:
// their variables are their images' business.
package deploycheck

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/examples/plans"
)

// File is one compose file: its name (for messages) and its bytes.
type File struct {
	Name string
	Data []byte
}

// Service is a compose service as the files, merged in order, define it.
type Service struct {
	Name string
	// Binary is the runbook binary the container runs (deploy/Dockerfile's
	// SERVICE build argument, or the runbook/<binary> image); "" for a
	// third-party image.
	Binary   string
	Image    string
	Command  []string
	Env      map[string]string // variable -> the file that set it
	EnvFiles []string
	Replicas int
	Volumes  []string // "source:target"
}

type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Dockerfile string            `yaml:"dockerfile"`
			Args       map[string]string `yaml:"args"`
		} `yaml:"build"`
		Command     any `yaml:"command"`
		Environment any `yaml:"environment"`
		EnvFile     any `yaml:"env_file"`
		Deploy      *struct {
			Replicas *int `yaml:"replicas"`
		} `yaml:"deploy"`
		Volumes []any `yaml:"volumes"`
	} `yaml:"services"`
}

// Dockerfile is the one image recipe of runbook's binaries.
const Dockerfile = "deploy/Dockerfile"

// Merge reads the files in order (the first is the base, the others
// override it, as `docker-compose -f a -f b` does) into their services.
// Environments merge by variable; command, image, replicas and volumes are
// replaced by an override that sets them (compose merges volumes by
// target; no override here sets a service's volumes twice).
func Merge(files ...File) (map[string]*Service, error) {
	out := map[string]*Service{}
	for _, f := range files {
		var cf composeFile
		if err := yaml.UnmarshalWithOptions(f.Data, &cf, yaml.AllowDuplicateMapKey()); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		for name, def := range cf.Services {
			s := out[name]
			if s == nil {
				s = &Service{Name: name, Env: map[string]string{}, Replicas: 1}
				out[name] = s
			}
			if def.Image != "" {
				s.Image = def.Image
			}
			if b := def.Build; b != nil && b.Dockerfile == Dockerfile {
				s.Binary = b.Args["SERVICE"]
			}
			if s.Binary == "" {
				if rest, ok := strings.CutPrefix(s.Image, "runbook/"); ok {
					s.Binary, _, _ = strings.Cut(rest, ":")
				}
			}
			if def.Command != nil {
				cmd, err := stringList(def.Command)
				if err != nil {
					return nil, fmt.Errorf("%s: service %s: command: %w", f.Name, name, err)
				}
				s.Command = cmd
			}
			env, err := envNames(def.Environment)
			if err != nil {
				return nil, fmt.Errorf("%s: service %s: environment: %w", f.Name, name, err)
			}
			for _, k := range env {
				s.Env[k] = f.Name
			}
			if def.EnvFile != nil {
				ef, err := stringList(def.EnvFile)
				if err != nil {
					return nil, fmt.Errorf("%s: service %s: env_file: %w", f.Name, name, err)
				}
				s.EnvFiles = append(s.EnvFiles, ef...)
			}
			if def.Deploy != nil && def.Deploy.Replicas != nil {
				s.Replicas = *def.Deploy.Replicas
			}
			if def.Volumes != nil {
				s.Volumes = nil
				for _, v := range def.Volumes {
					s.Volumes = append(s.Volumes, volumeTarget(v))
				}
			}
		}
	}
	return out, nil
}

// UnreadEnv lists, one message per variable, the environment variables
// the services set that their binary does not read: not in svcmain.Env for
// that binary, not named by an example plan (the services read those by
// the plan's name: ${env:SMOKE_PASSWORD} in a smoke test, a *_env field),
// and not named by one of the reporter's --notify-*-env flags in the
// container's command. An env_file is refused: its variables could not be
// checked.
func UnreadEnv(services map[string]*Service) ([]string, error) {
	planEnv, err := examplePlanEnv()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range sortedKeys(services) {
		s := services[name]
		if s.Binary == "" {
			continue
		}
		for _, ef := range s.EnvFiles {
			out = append(out, fmt.Sprintf("service %s (binary %s): env_file %s cannot be checked: set its variables under environment", name, s.Binary, ef))
		}
		named := envNamedByFlags(s.Command)
		for _, k := range sortedKeys(s.Env) {
			switch {
			case svcmain.ReadBy(s.Binary, k):
			case slices.Contains(svcmain.Services, s.Binary) && slices.Contains(planEnv, k):
			case slices.Contains(named, k):
			default:
				out = append(out, fmt.Sprintf("%s: service %s sets %s, which the %s binary does not read (it reads %s; an example plan names %s)",
					s.Env[k], name, k, s.Binary, strings.Join(readBy(s.Binary), ", "), strings.Join(planEnv, ", ")))
			}
		}
	}
	return out, nil
}

// ReadFiles reads compose files by path.
func ReadFiles(paths ...string) ([]File, error) {
	var out []File
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Name: p, Data: b})
	}
	return out, nil
}

// examplePlanEnv is every variable the example plans name (plan.SecretEnv).
func examplePlanEnv() ([]string, error) {
	var out []string
	for _, n := range plans.Names() {
		src, err := plans.Source(n)
		if err != nil {
			return nil, err
		}
		p, issues := plan.Parse(n, src)
		if p == nil {
			return nil, fmt.Errorf("example plan %s: %v", n, issues)
		}
		for _, e := range p.SecretEnv() {
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// envNamedByFlags: the reporter's flags whose value is the NAME of a
// variable it then reads.
func envNamedByFlags(cmd []string) []string {
	var out []string
	for i, a := range cmd {
		for _, f := range []string{"--notify-slack-env", "--notify-smtp-env"} {
			if v, ok := strings.CutPrefix(a, f+"="); ok {
				out = append(out, v)
			} else if a == f && i+1 < len(cmd) {
				out = append(out, cmd[i+1])
			}
		}
	}
	return out
}

func readBy(binary string) []string {
	var out []string
	for _, v := range svcmain.Env() {
		if slices.Contains(v.Binaries, binary) {
			out = append(out, v.Name)
		}
	}
	if len(out) == 0 {
		return []string{"no variable"}
	}
	return out
}

// envNames: the variables of an environment in map form (KEY: value) or
// list form (- KEY=value, - KEY).
func envNames(v any) ([]string, error) {
	switch e := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return sortedKeys(e), nil
	case []any:
		var out []string
		for _, item := range e {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("list item %v is not KEY=value", item)
			}
			k, _, _ := strings.Cut(s, "=")
			out = append(out, k)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%T is neither a map nor a list", v)
	}
}

// stringList: a string (one element: compose splits a command string as
// a shell would, which the checks here need not) or a list of strings.
func stringList(v any) ([]string, error) {
	switch c := v.(type) {
	case string:
		return strings.Fields(c), nil
	case []any:
		out := make([]string, len(c))
		for i, x := range c {
			out[i] = fmt.Sprint(x)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%T is neither a string nor a list", v)
	}
}

// volumeTarget: a volume's target, short ("src:target[:mode]") or long
// ({type, source, target}) syntax.
func volumeTarget(v any) string {
	switch x := v.(type) {
	case string:
		parts := strings.Split(x, ":")
		if len(parts) >= 2 {
			return parts[0] + ":" + parts[1]
		}
		return x
	case map[string]any:
		return fmt.Sprint(x["source"]) + ":" + fmt.Sprint(x["target"])
	default:
		return fmt.Sprint(v)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
