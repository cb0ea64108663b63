// Package buildinfo is the one home of a binary's version: every runbook
// binary prints it for --version / `runbook version` and exports it as the
// runbook_build_info metric.
//
// Version and Commit are set at link time:
//
//	go build -ldflags "-X github.com/kis-core/runbook/eventbus/buildinfo.Version=v1.2.3 \
//	  -X github.com/kis-core/runbook/eventbus/buildinfo.Commit=abc1234"
//
// (the Makefile does this from `git describe`). Without them the commit comes
// from the VCS stamp the go command embeds (vcs.revision), and the version is
// "dev".
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X at build time.
var (
	Version = ""
	Commit  = ""
)

// Info is what a binary says about its own build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	// Modified is true when the VCS stamp says the tree had local changes.
	Modified bool `json:"modified,omitempty"`
}

// Get returns this binary's build information.
func Get() Info {
	in := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
	}
	if in.Version == "" {
		in.Version = "dev"
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	if len(in.Commit) > 12 {
		in.Commit = in.Commit[:12]
	}
	return in
}

// String is the one-line form `--version` prints:
// "<name> v1.2.3 (commit abc1234, go1.26.0)".
func (i Info) String() string {
	c := i.Commit
	if i.Modified {
		c += "+dirty"
	}
	return fmt.Sprintf("%s (commit %s, %s)", i.Version, c, i.GoVersion)
}
