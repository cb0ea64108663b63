package estimator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The release switch. The running release is whatever
// <state-dir>/current-release.json says; the server re-reads it whenever its
// modification time or size changes, so a deploy step that copies one of
// <state-dir>/releases/*.json over it really switches the running release:
//
//	cp .demo/estimator/releases/v2.4.1-bad.json .demo/estimator/current-release.json
const (
	// CurrentFile is the file, inside the state dir, that names the running release.
	CurrentFile = "current-release.json"
	// ReleasesDir is the folder, inside the state dir, of the releases one can deploy.
	ReleasesDir = "releases"

	// GoodVersion answers in about 5 ms and never fails.
	GoodVersion = "v2.4.0"
	// BadVersion answers in about 400 ms and fails 30 % of its API requests
	// with 500 — while /api/v1/health keeps answering 200, so it passes a
	// deploy's health gate and must be caught by the monitor or the tests.
	BadVersion = "v2.4.1-bad"
)

// Release is the behaviour of one release of the estimator.
type Release struct {
	Version string `json:"version"`
	// LatencyMS is added to every API request (health included, /metrics not).
	LatencyMS int `json:"latency_ms"`
	// ErrorRate is the fraction of API requests (not /api/v1/health, not
	// /metrics) answered with 500. Failures are spread evenly, not drawn at
	// random: with 0.3, exactly 3 of every 10 requests fail.
	ErrorRate float64 `json:"error_rate"`
	// FailPaths, when set, limits the failures to these request paths
	// (e.g. ["/api/v1/estimates"]: one broken endpoint); the others answer.
	FailPaths []string `json:"fail_paths,omitempty"`
}

// Releases are the releases written to <state-dir>/releases at start when
// missing, by version.
func Releases() map[string]Release {
	return map[string]Release{
		GoodVersion: {Version: GoodVersion, LatencyMS: 5, ErrorRate: 0},
		BadVersion:  {Version: BadVersion, LatencyMS: 400, ErrorRate: 0.3},
	}
}

func (r Release) validate() error {
	if r.Version == "" {
		return errors.New("version is empty")
	}
	if r.LatencyMS < 0 || r.LatencyMS > 60_000 {
		return fmt.Errorf("latency_ms %d is outside 0..60000", r.LatencyMS)
	}
	if r.ErrorRate < 0 || r.ErrorRate > 1 {
		return fmt.Errorf("error_rate %g is outside 0..1", r.ErrorRate)
	}
	return nil
}

// ReleasePath is the file of one release inside the state dir.
func ReleasePath(stateDir, version string) string {
	return filepath.Join(stateDir, ReleasesDir, version+".json")
}

// EnsureState creates the state dir, writes every missing release file and,
// when current-release.json is missing, makes the good release current.
// Existing files are left alone.
func EnsureState(stateDir string) error {
	if err := os.MkdirAll(filepath.Join(stateDir, ReleasesDir), 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	for v, r := range Releases() {
		if err := writeIfMissing(ReleasePath(stateDir, v), r); err != nil {
			return err
		}
	}
	return writeIfMissing(filepath.Join(stateDir, CurrentFile), Releases()[GoodVersion])
}

// WriteRelease adds (or replaces) a release one can deploy: it writes
// <state-dir>/releases/<version>.json.
func WriteRelease(stateDir string, r Release) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("release %q: %w", r.Version, err)
	}
	return writeRelease(ReleasePath(stateDir, r.Version), r)
}

func writeIfMissing(path string, r Release) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	return writeRelease(path, r)
}

// writeRelease writes atomically (temp file + rename) so that the server
// never reads half a file written by this package.
func writeRelease(path string, r Release) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode release: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".release-*.json")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// CurrentRelease reads the release the state dir names as current.
func CurrentRelease(stateDir string) (Release, error) {
	return readRelease(filepath.Join(stateDir, CurrentFile))
}

// Deploy makes the release file releases/<version>.json current, as the
// plans' deploy step does with cp (but atomically).
func Deploy(stateDir, version string) error {
	r, err := readRelease(ReleasePath(stateDir, version))
	if err != nil {
		return err
	}
	return writeRelease(filepath.Join(stateDir, CurrentFile), r)
}

func readRelease(path string) (Release, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Release{}, fmt.Errorf("read release: %w", err)
	}
	var r Release
	if err := json.Unmarshal(b, &r); err != nil {
		return Release{}, fmt.Errorf("read release %s: %w", path, err)
	}
	if err := r.validate(); err != nil {
		return Release{}, fmt.Errorf("read release %s: %w", path, err)
	}
	return r, nil
}

// stamp identifies one version of a file cheaply.
type stamp struct {
	mod  time.Time
	size int64
}
