//go:build unix

package procio

import (
	"os/exec"
	"syscall"
	"time"
)

// inGroup starts cmd in its own process group and makes cancel (the command's
// context ending) signal the whole group: SIGTERM, then SIGKILL after grace,
// so what a script started (sleep 600 in `sh -c`) dies with it.
func inGroup(cmd *exec.Cmd, grace time.Duration) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		pgid := cmd.Process.Pid
		err := syscall.Kill(-pgid, syscall.SIGTERM)
		time.AfterFunc(grace, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
		return err
	}
}
