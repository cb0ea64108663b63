package procio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// A pid file per running command lets a service that was killed find, at
// its next start, what its commands left running: Linux's parent-death
// signal (dieWithParent) kills each command itself when the service dies,
// but not what the command started in its process group (`sleep` in
// `sh -c 'work; sleep 60'`), and not at all on other systems.

type trackKey struct{}

type tracker struct {
	dir    string
	labels map[string]string
}

// TrackPids makes Run keep, for each command run with the returned
// context, a pid file in dir while the command runs, with labels (what the
// command is for: the run, the step, the attempt), so SweepPidFiles can
// name it. Writing the file is best effort: a command runs without it.
func TrackPids(ctx context.Context, dir string, labels map[string]string) context.Context {
	if dir == "" {
		return ctx
	}
	return context.WithValue(ctx, trackKey{}, tracker{dir: dir, labels: labels})
}

// PidRecord is one pid file: a command's process group and the service
// process that started it, each with its start time (clock ticks after
// boot, /proc/<pid>/stat) so a reused pid is never taken for them.
type PidRecord struct {
	Pgid       int               `json:"pgid"`
	Start      uint64            `json:"start"`
	Owner      int               `json:"owner_pid"`
	OwnerStart uint64            `json:"owner_start"`
	Command    string            `json:"command"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// Orphan is a pid file whose service process is gone.
type Orphan struct {
	PidRecord
	// Killed: the command's process group was still running and was
	// killed (SIGKILL) by the sweep; false: it had already ended.
	Killed bool
}

var self struct {
	once  sync.Once
	start uint64
}

func selfStart() uint64 {
	self.once.Do(func() { self.start, _ = procStart(os.Getpid()) })
	return self.start
}

// writePidFile records the command whose group is pgid when ctx asks for
// it (TrackPids); it returns the file's path ("" when none).
func writePidFile(ctx context.Context, pgid int, command string) string {
	tr, ok := ctx.Value(trackKey{}).(tracker)
	if !ok {
		return ""
	}
	start, _ := procStart(pgid)
	rec := PidRecord{Pgid: pgid, Start: start, Owner: os.Getpid(), OwnerStart: selfStart(), Command: command, Labels: tr.labels}
	b, err := json.Marshal(rec)
	if err != nil {
		return ""
	}
	if err := os.MkdirAll(tr.dir, 0o700); err != nil {
		return ""
	}
	path := filepath.Join(tr.dir, fmt.Sprintf("%d-%d.json", rec.Owner, pgid))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return ""
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return ""
	}
	return path
}

func removePidFile(path string) {
	if path != "" {
		_ = os.Remove(path)
	}
}

// SweepPidFiles goes through the pid files in dir left by service
// processes that are gone (a live one's — another replica's on this host —
// are left alone): the process group each names is killed with SIGKILL if
// anything of it still runs — its leader with the start time recorded, or,
// the leader gone, members started after it — and the file is removed.
// It returns what it found, killed or already ended. A missing dir is no
// error.
func SweepPidFiles(dir string) ([]Orphan, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep pid files: %w", err)
	}
	var out []Orphan
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var rec PidRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Pgid <= 1 {
			_ = os.Remove(path) // not ours to act on
			continue
		}
		if alive(rec.Owner, rec.OwnerStart) {
			continue // its service still runs
		}
		members, err := groupMembers(rec.Pgid, rec.Start)
		if err != nil {
			errs = append(errs, fmt.Errorf("process group %d: %w", rec.Pgid, err))
			continue // cannot tell whose it is: leave the file
		}
		o := Orphan{PidRecord: rec}
		if len(members) > 0 {
			if err := killGroup(rec.Pgid); err != nil {
				errs = append(errs, fmt.Errorf("kill process group %d: %w", rec.Pgid, err))
				continue
			}
			o.Killed = true
		}
		_ = os.Remove(path)
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// alive reports whether pid runs with the start time recorded (unknown,
// 0: whether pid runs at all, so an owner that cannot be told apart is
// taken as alive).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := procStart(pid)
	if err != nil {
		return false
	}
	return start == 0 || st == start
}
