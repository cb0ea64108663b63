package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/backup"
	"github.com/kis-core/runbook/eventbus/procio"
)

// restore copies r.File from the run's backup directory dir back to r.To,
// without a shell. The copy is checked against the sha256 that
// backup_metadata.json recorded when the backup was made (a backup changed
// since is not restored), written next to the target and renamed over it:
// the target is either what it was or the whole backed-up file, never half
// of it. Like cp, a target that is a directory receives the file under its
// name, and a target that is a symlink is written through.
func restore(ctx context.Context, r *plan.RestoreStep, dir string) Result {
	if dir == "" {
		return Result{Err: fmt.Errorf("restore %s: this run has no backup (no backup.done event): there is nothing to restore from", r.File)}
	}
	name := filepath.ToSlash(filepath.Clean(filepath.FromSlash(r.File)))
	if r.File == "" || filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
		return Result{Err: fmt.Errorf("restore %q: not a name inside the backup directory", r.File)}
	}
	// backup_metadata.json as package backup wrote it (pre-flight's backup
	// and the backup steps'): each file's size and sha256.
	md, err := backup.ReadMetadata(dir)
	if err != nil {
		return Result{Err: fmt.Errorf("restore %s: the backup %s is incomplete, gone or unreadable: %w", name, dir, err)}
	}
	wantSum, wantSize, found := "", int64(0), false
	for _, d := range md.FileDetails {
		if d.Name == name {
			wantSum, wantSize, found = d.SHA256, d.Size, true
			break
		}
	}
	if !found {
		have := "no file"
		if len(md.Files) > 0 {
			have = strings.Join(md.Files, ", ")
		}
		return Result{Err: fmt.Errorf("restore %s: not in the run's backup %s, which holds %s (a listed file that was not found at backup time is not in it)", name, dir, have)}
	}
	src := filepath.Join(dir, filepath.FromSlash(name))
	to, err := target(r.To, name)
	if err != nil {
		return Result{Err: fmt.Errorf("restore %s to %s: %w", name, r.To, err)}
	}
	n, got, err := replaceFile(ctx, src, to, wantSum)
	if err != nil {
		return Result{Err: fmt.Errorf("restore %s to %s: %w", name, to, err)}
	}
	if n != wantSize {
		// replaceFile checked the sha256: equal sums with other sizes cannot happen.
		return Result{Err: fmt.Errorf("restore %s: %d bytes, the backup recorded %d", name, n, wantSize)}
	}
	return Result{OutputTail: fmt.Sprintf("restored %s (%d bytes, sha256 %s, verified) from %s to %s", name, n, got, dir, to)}
}

// target is where the file goes: to itself, to/<name> when to is a
// directory, or what a symlink at to points at.
func target(to, name string) (string, error) {
	if to == "" {
		return "", errors.New("no target path")
	}
	fi, err := os.Stat(to)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return to, nil
	case err != nil:
		return "", err
	case fi.IsDir():
		return filepath.Join(to, filepath.Base(filepath.FromSlash(name))), nil
	}
	return filepath.EvalSymlinks(to)
}

// replaceFile copies src over dst through a temporary file in dst's
// directory, checking the copy's sha256 against want before renaming it in.
func replaceFile(ctx context.Context, src, dst, want string) (int64, string, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, "", err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".runbook-restore-*")
	if err != nil {
		return 0, "", err
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), procio.ContextReader{Ctx: ctx, R: in})
	if err != nil {
		return n, "", err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return n, got, fmt.Errorf("the backed-up file's sha256 is %s, backup_metadata.json recorded %s: the backup was changed after it was made; not restoring it", got, want)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return n, got, err
	}
	if err := tmp.Sync(); err != nil {
		return n, got, err
	}
	if err := tmp.Close(); err != nil {
		return n, got, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return n, got, err
	}
	keep = true
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return n, got, nil
}
