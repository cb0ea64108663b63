//go:build !linux

package procio

import "errors"

var errNoProc = errors.New("process start times need Linux's /proc")

func procStart(int) (uint64, error) { return 0, errNoProc }

// groupMembers cannot tell a group's processes apart without /proc: the
// sweep leaves their pid files.
func groupMembers(int, uint64) ([]int, error) { return nil, errNoProc }

func killGroup(int) error { return errNoProc }
