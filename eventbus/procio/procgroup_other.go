//go:build !unix

package procio

import (
	"os/exec"
	"time"
)

// inGroup: without process groups, cancel kills the command itself (the
// exec.CommandContext default).
func inGroup(*exec.Cmd, time.Duration) {}
