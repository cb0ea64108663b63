//go:build linux

package procio

import (
	"os/exec"
	"runtime"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL the command when the thread that
// starts it ends (PR_SET_PDEATHSIG): a deployer killed with SIGKILL takes
// its running step with it. The "parent" is the forking thread, not the
// process (prctl(2); golang/go#27505), and Go ends a thread when a
// goroutine exits while locked to it, so the caller must hold its
// goroutine on its thread from Start to Wait: lock does that, and returns
// the unlock. The signal reaches the command itself only, not what it
// started in its group: those are killed by the pid-file sweep
// (SweepPidFiles) at the service's next start.
func dieWithParent(cmd *exec.Cmd) (unlock func()) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
