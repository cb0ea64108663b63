package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestLinkTimeValuesWin(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "v9.9.9", "0123456789abcdef"
	in := Get()
	if in.Version != "v9.9.9" || in.Commit != "0123456789ab" || in.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v", in)
	}
	if s := in.String(); !strings.HasPrefix(s, "v9.9.9 (commit 0123456789ab") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("String() = %q", s)
	}
}

func TestDefaultsAreNamed(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "", ""
	in := Get()
	if in.Version == "" || in.Commit == "" {
		t.Fatalf("empty field in %+v", in)
	}
}
