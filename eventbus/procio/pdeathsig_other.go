//go:build !linux

package procio

import "os/exec"

// dieWithParent: only Linux has a parent-death signal; elsewhere a killed
// service's commands are killed by the pid-file sweep at its next start.
func dieWithParent(*exec.Cmd) (unlock func()) { return func() {} }
