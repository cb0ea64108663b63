package deployer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/procio"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// A deployer that dies mid-step (kill -9, a crash, a lost node) leaves
// the step's attempt started and never ended. Its command dies with it
// (procio: the parent-death signal), what the command left in its process
// group is killed by the next start's sweep of the pid files (StateDir),
// and whoever handles the run next closes the attempt in the journal: a
// step failed event that says so, its error starting with
// interruptedPrefix, so the run's view tells it from a failure of the
// step itself (it neither uses up a retry nor lets a step that is not
// idempotent run again). No step stays RUNNING.

// interruptedPrefix starts the error of an attempt its deployer never
// finished.
const interruptedPrefix = "attempt interrupted: "

// DefaultStateDir is where the deployer keeps its pid files when
// Options.StateDir is not set: one directory per host, shared safely by
// replicas (the sweep leaves a live deployer's files alone).
func DefaultStateDir() string { return filepath.Join(os.TempDir(), "runbook-deployer") }

// pidDir is where the pid files of running step commands are kept.
func (s *Service) pidDir() string { return filepath.Join(s.o.StateDir, "pids") }

// orphanKey names one attempt of one step of a run.
func orphanKey(run, list string, index, attempt int32) string {
	return fmt.Sprintf("%s/%s/%d/%d", run, list, index, attempt)
}

// pidLabels are what a step command's pid file says it is.
func pidLabels(run, phase, list string, index, attempt int32, name string) map[string]string {
	return map[string]string{"run": run, "phase": phase, "list": list, "index": strconv.Itoa(int(index)),
		"attempt": strconv.Itoa(int(attempt)), "step": name}
}

// sweep kills what step commands of deployers gone from this host left
// running (procio.SweepPidFiles) and keeps what it found, so the journal
// entry of each interrupted attempt can say what became of its process.
func (s *Service) sweep() {
	orphans, err := procio.SweepPidFiles(s.pidDir())
	if err != nil {
		s.log.Error("pid file sweep incomplete", "dir", s.pidDir(), "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range orphans {
		l := o.Labels
		idx, _ := strconv.Atoi(l["index"])
		att, _ := strconv.Atoi(l["attempt"])
		k := orphanKey(l["run"], l["list"], int32(idx), int32(att))
		if prev, ok := s.orphans[k]; !ok || o.Killed && !prev.Killed {
			s.orphans[k] = o
		}
		msg := "an interrupted step's process group had already ended (killed with its deployer)"
		if o.Killed {
			msg = "an interrupted step's process group was still running: killed"
		}
		s.log.Warn(msg, "run_id", l["run"], "list", l["list"], "step", l["step"], "attempt", l["attempt"],
			"pgid", o.Pgid, "deployer_pid", o.Owner)
	}
}

// interruptedError is the error of attempt of step (list, index) of run
// that its deployer never finished: what became of its process, as far as
// this host knows.
func (s *Service) interruptedError(run, list string, index, attempt int32) string {
	msg := interruptedPrefix + "the deployer running it stopped (killed or crashed) before its outcome"
	s.mu.Lock()
	o, ok := s.orphans[orphanKey(run, list, index, attempt)]
	s.mu.Unlock()
	switch {
	case !ok:
		return msg + "; no process of it was left on this host at this deployer's start (its command is killed with its deployer; on another host, its own deployer's start sweeps it)"
	case o.Killed:
		return msg + fmt.Sprintf("; its process group %d was still running and was killed at this deployer's start (pid file swept)", o.Pgid)
	default:
		return msg + fmt.Sprintf("; its process group %d had already ended: killed with its deployer (parent-death signal), pid file swept", o.Pgid)
	}
}

// closeInterrupted records step k's dangling attempt as failed,
// interrupted (see interruptedPrefix), and folds it into v. It returns
// the event.
func (s *Service) closeInterrupted(ctx context.Context, run string, k stepKey, v *runView) (*runbookv1.StepEvent, error) {
	start := v.lastStart[k]
	se := &runbookv1.StepEvent{Index: k.index, List: k.list, Name: start.GetName(), Kind: start.GetKind(), Attempt: v.started[k],
		Manual: start.GetManual(), ExitCode: -1, Error: s.interruptedError(run, k.list, k.index, v.started[k])}
	phase := phaseOf(k.list)
	if _, err := s.bus.Publish(context.WithoutCancel(ctx), stepEvent(run, phase, "failed", se)); err != nil {
		return nil, fmt.Errorf("record the interrupted attempt %d of %s step %q: %w", se.Attempt, k.list, se.Name, err)
	}
	s.steps.WithLabelValues(phase, se.Kind, "interrupted").Inc()
	s.log.Warn("step attempt interrupted: recorded as failed", "run_id", run, "list", k.list, "step", se.Name, "attempt", se.Attempt, "err", se.Error)
	v.stepEnded(se, false)
	return se, nil
}

// endInterrupted ends the journal of a deploy whose deployer stopped
// mid-way and whose run went on without it (its rollback started or
// ended, or the run ended): every deploy step left running is recorded
// as interrupted, then deploy.failed says why (runstate's
// DeployInterruptedReason: "interrupted; rolled back"), before the
// message is acked. ev's handler owns the deploy.
func (s *Service) endInterrupted(ctx context.Context, ev *runbookv1.Event, v *runView) error {
	run := ev.RunId
	var keys []stepKey
	for k := range v.started {
		if phaseOf(k.list) == "deploy" && v.dangling(k) {
			keys = append(keys, k)
		}
	}
	order := map[string]int{"steps": 0, "health": 1, "finally": 2}
	slices.SortFunc(keys, func(a, b stepKey) int {
		if a.list != b.list {
			return order[a.list] - order[b.list]
		}
		return int(a.index - b.index)
	})
	fin := &runbookv1.DeployFinished{Error: v.DeployInterruptedReason()}
	for _, k := range keys {
		se, err := s.closeInterrupted(ctx, run, k, v)
		if err != nil {
			return err
		}
		if fin.FailedStep == "" {
			fin.FailedStep = se.GetName()
		}
	}
	for k, ok := range v.succeeded {
		if ok && phaseOf(k.list) == "deploy" && !v.lastStart[k].GetManual() {
			fin.StepsSucceeded++
		}
	}
	out := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_DeployFailed{DeployFailed: fin}), ev)
	if _, err := s.bus.Publish(ctx, out); err != nil {
		return err
	}
	s.log.Warn("deploy interrupted: its journal ended", "run_id", run, "event", out.Type, "reason", fin.Error, "steps_closed", len(keys))
	return nil
}
