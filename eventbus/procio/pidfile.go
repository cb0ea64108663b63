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

// Recording each running command (a pid journal) lets a service that was
// killed find, at its next start, what its commands left running: Linux's parent-death
// signal (dieWithParent) kills each command itself when the service dies,
// but not what the command started in its process group (`sleep` in
// `sh -c 'work; sleep 60'`), and not at all on other systems.

type trackKey struct{}

type tracker struct {
	dir    string
	labels map[string]string
}

// TrackPids makes Run record, for each command run with the returned
// context, its process group in this process's pid journal in dir while
// the command runs, with labels (what the command is for: the run, the
// step, the attempt), so SweepPidFiles can name it. Recording is best
// effort: a command runs without it.
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

// The pid files of one service process are one journal in dir,
// <owner pid>-<owner start>.pids, opened once and appended to: a line when
// a command starts (its PidRecord) and one when it ends. Creating,
// renaming and removing a file per command cost more than the command's
// own start on a busy host's file system; two appends to an open file do
// not. A journal is compacted (rewritten with the commands still running)
// when it outgrows journalCompactAt.

// journalCompactAt is the size past which a journal is rewritten.
var journalCompactAt int64 = 1 << 20

// journalLine is one line of a journal: a command started (the record) or
// ended (Ended, its group, with the group leader's Start: a pid reused
// between the wait and this line is not taken for the one that ended).
type journalLine struct {
	PidRecord
	Ended int `json:"ended,omitempty"`
}

// journal is this process's journal in one dir.
type journal struct {
	mu   sync.Mutex
	dir  string
	path string
	f    *os.File
	size int64
	live map[int]PidRecord
}

// journals are this process's journals by dir.
var journals sync.Map // string → *journal

func journalFor(dir string) *journal {
	if j, ok := journals.Load(dir); ok {
		return j.(*journal)
	}
	j, _ := journals.LoadOrStore(dir, &journal{
		dir:  dir,
		path: filepath.Join(dir, fmt.Sprintf("%d-%d.pids", os.Getpid(), selfStart())),
		live: map[int]PidRecord{},
	})
	return j.(*journal)
}

// append writes one line (opening the journal on first use).
func (j *journal) append(l journalLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if j.f == nil {
		if err := os.MkdirAll(j.dir, 0o700); err != nil {
			return err
		}
		if j.f, err = os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			return err
		}
		st, err := j.f.Stat()
		if err != nil {
			return err
		}
		j.size = st.Size()
	}
	n, err := j.f.Write(b)
	j.size += int64(n)
	return err
}

// compact rewrites the journal with the commands still running.
func (j *journal) compact() error {
	var buf []byte
	for _, rec := range j.live {
		b, err := json.Marshal(journalLine{PidRecord: rec})
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	tmp := j.path + ".tmp"
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, j.path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	_ = j.f.Close()
	j.f = nil // reopened by the next append
	return nil
}

// trackPid records the command whose group is pgid when ctx asks for it
// (TrackPids); the returned func records its end.
func trackPid(ctx context.Context, pgid int, command string) (ended func()) {
	tr, ok := ctx.Value(trackKey{}).(tracker)
	if !ok {
		return func() {}
	}
	start, _ := procStart(pgid)
	rec := PidRecord{Pgid: pgid, Start: start, Owner: os.Getpid(), OwnerStart: selfStart(), Command: command, Labels: tr.labels}
	j := journalFor(tr.dir)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.append(journalLine{PidRecord: rec}) != nil {
		return func() {} // best effort: the command runs without it
	}
	j.live[pgid] = rec
	return func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.live[pgid].Start == start {
			delete(j.live, pgid)
		}
		if j.append(journalLine{Ended: pgid, PidRecord: PidRecord{Start: start}}) == nil && j.size > journalCompactAt {
			_ = j.compact()
		}
	}
}

// SweepPidFiles goes through the pid files in dir left by service
// processes that are gone (a live one's — another replica's on this host —
// are left alone): the process group of each command still recorded as
// running is killed with SIGKILL if anything of it still runs — its leader
// with the start time recorded, or, the leader gone, members started after
// it — and the file is removed. It returns what it found, killed or
// already ended. A missing dir is no error.
func SweepPidFiles(dir string) ([]Orphan, error) {
	files, err := readPidDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sweep pid files: %w", err)
	}
	var out []Orphan
	var errs []error
	for _, pf := range files {
		if pf.owned && alive(pf.owner, pf.ownerStart) {
			continue // its service still runs
		}
		if pf.err != nil {
			errs = append(errs, fmt.Errorf("sweep pid files: %w", pf.err))
			continue
		}
		failed := false
		for _, rec := range pf.recs {
			members, err := groupMembers(rec.Pgid, rec.Start)
			if err != nil {
				errs = append(errs, fmt.Errorf("process group %d: %w", rec.Pgid, err))
				failed = true // cannot tell whose it is: keep the file
				continue
			}
			o := Orphan{PidRecord: rec}
			if len(members) > 0 {
				if err := killGroup(rec.Pgid); err != nil {
					errs = append(errs, fmt.Errorf("kill process group %d: %w", rec.Pgid, err))
					failed = true
					continue
				}
				o.Killed = true
			}
			out = append(out, o)
		}
		if !failed {
			_ = os.Remove(pf.path)
		}
	}
	return out, errors.Join(errs...)
}

// Recorded are the commands the pid files in dir record as running, of
// live services and gone ones alike.
func Recorded(dir string) ([]PidRecord, error) {
	files, err := readPidDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read pid files: %w", err)
	}
	var out []PidRecord
	for _, pf := range files {
		if pf.err != nil {
			return nil, pf.err
		}
		out = append(out, pf.recs...)
	}
	return out, nil
}

// pidFile is one file of a pid directory: a service process's journal, or
// one command's file as deployers before the journals kept them.
type pidFile struct {
	path string
	// owned: the file names its service process (owner, ownerStart);
	// a file that does not (not ours to act on) records nothing.
	owned      bool
	owner      int
	ownerStart uint64
	recs       []PidRecord // the commands recorded as running
	err        error       // the file could not be read
}

// readPidDir reads the pid files of dir (none when it does not exist).
func readPidDir(dir string) ([]pidFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []pidFile
	for _, e := range entries {
		pf := pidFile{path: filepath.Join(dir, e.Name())}
		switch {
		case e.IsDir():
			continue
		case strings.HasSuffix(e.Name(), ".pids"):
			if _, err := fmt.Sscanf(e.Name(), "%d-%d.pids", &pf.owner, &pf.ownerStart); err != nil {
				continue // not ours
			}
			pf.owned = true
			pf.recs, pf.err = readJournal(pf.path)
		case strings.HasSuffix(e.Name(), ".json"):
			var rec PidRecord
			rec, pf.owned, pf.err = readPidFile(pf.path)
			if pf.owned {
				pf.owner, pf.ownerStart, pf.recs = rec.Owner, rec.OwnerStart, []PidRecord{rec}
			}
		default:
			continue
		}
		out = append(out, pf)
	}
	return out, nil
}

// readJournal returns the commands a journal records as started and not
// ended, in the order they started. A line cut short by its service's
// death is skipped.
func readJournal(path string) ([]PidRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var order []int
	live := map[int]PidRecord{}
	for line := range strings.SplitSeq(string(b), "\n") {
		var l journalLine
		if strings.TrimSpace(line) == "" || json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch {
		case l.Ended > 0:
			if live[l.Ended].Start == l.Start {
				delete(live, l.Ended)
			}
		case l.Pgid > 1:
			if _, ok := live[l.Pgid]; !ok {
				order = append(order, l.Pgid)
			}
			live[l.Pgid] = l.PidRecord
		}
	}
	var out []PidRecord
	for _, pgid := range order {
		if rec, ok := live[pgid]; ok {
			out = append(out, rec)
			delete(live, pgid)
		}
	}
	return out, nil
}

// readPidFile reads one command's pid file (the format before journals);
// ok is false for one that is not ours to act on (removed by the caller).
func readPidFile(path string) (PidRecord, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PidRecord{}, false, err
	}
	var rec PidRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Pgid <= 1 {
		return PidRecord{}, false, nil
	}
	return rec, true, nil
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
