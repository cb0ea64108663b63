//go:build linux

package procio

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killGroup SIGKILLs process group pgid (already gone: no error).
func killGroup(pgid int) error {
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// procStat is what /proc/<pid>/stat says of a live process (a zombie is
// no process: os.ErrNotExist).
func procStat(pid int) (pgrp int, start uint64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	// Fields after the command name, which may hold spaces and ')':
	// state is field 3, pgrp 5, starttime 22.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return 0, 0, os.ErrInvalid
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, 0, os.ErrNotExist
	}
	if pgrp, err = strconv.Atoi(f[2]); err != nil {
		return 0, 0, err
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return pgrp, start, err
}

func procStart(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// groupMembers are the live processes of process group pgid that belong
// to the group recorded with leader start time leaderStart: none when the
// leader's pid now runs with another start time (a new group).
func groupMembers(pgid int, leaderStart uint64) ([]int, error) {
	if _, start, err := procStat(pgid); err == nil && start != leaderStart {
		return nil, nil
	}
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range dir {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pg, start, err := procStat(pid)
		if err != nil || pg != pgid || start < leaderStart {
			continue
		}
		out = append(out, pid)
	}
	return out, nil
}
