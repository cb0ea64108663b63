package plan

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"
)

// RevertIDPrefix starts the change id of a revert run: REVERT-<the
// reverted run's change id>.
const RevertIDPrefix = "REVERT-"

// RevertManualStep is the one rollback step of a revert plan: a described
// step. A revert undoes a change by running its rollback steps; when one of
// them fails there is no tested way back (re-running the original deploy
// would need its own pre-flight, backup and approvals), so a failed revert
// ends FAILED with nothing undone and this as the operator's to-do.
const RevertManualStep = "the revert failed part-way: production is between the reverted release and the one before it; " +
	"finish by hand from the two reports: the reverted run's (what its deploy changed) and this run's (which of its rollback steps ran)"

// runIDPattern is a subject-safe run id (eventbus.ValidateRunID's rule).
var runIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// RevertOf is what Revert needs besides the reverted run's plan text.
type RevertOf struct {
	// Run is the reverted run: it ended SUCCESS.
	Run string
	// Reason is why it is reverted (required).
	Reason string
	// Requester names who asks for the revert (the identity that signs
	// it): the revert plan's requester.name, so the plan's rule that the
	// requester cannot approve their own change holds for the revert.
	Requester string
}

// Revert derives the plan of a revert run from the plan text (orig) of a
// run that ended SUCCESS: the one reading of "undo that change". The
// revert plan is a change of its own, submitted and run like any other
// (pre-flight, approvals, deploy, monitor, tests, report):
//
//   - change_request: id REVERT-<id>, title "Revert <run>: <title>",
//     the same type and priority; requester: who asks (of.Requester);
//     description: what is reverted and why (of.Reason);
//   - the same scope, risks_and_mitigations and approval (so the same risk
//     score and the same approvals), monitor and report (notifications);
//     pre-flight's checks (not its backup: nothing new is taken before a
//     restore of the old one);
//   - deploy.steps: the original rollback_plan.rollback_steps, in order
//     and as written (described ones stay described: shown, not run); a
//     backup step among them goes into the revert run's own backup
//     directory, under the original's dir;
//   - test: the smoke suites rollback_plan.verify names (they test the old
//     release), nothing else: the original's smoke and load tests judge
//     the release being removed;
//   - rollback_plan: the original's trigger conditions and one described
//     step (RevertManualStep): a failed revert undoes nothing by itself;
//   - timeline: only estimated_duration (the original's
//     estimated_rollback_time): the original's change window is over, a
//     revert runs once approved;
//   - reverts: {run, change_id, reason}, so restore steps and
//     RUNBOOK_BACKUP_DIR read the reverted run's backup, and the reports
//     link to each other.
//
// The result is valid (Parse); an error says why no revert can be made,
// e.g. the original plan has no executable rollback step.
func Revert(orig []byte, of RevertOf) ([]byte, error) {
	if !runIDPattern.MatchString(of.Run) {
		return nil, fmt.Errorf("revert: run id %q is not a run id: 1-128 characters of [A-Za-z0-9_-]", of.Run)
	}
	if strings.TrimSpace(of.Reason) == "" {
		return nil, errors.New("revert: a reason is required (--reason): it is the revert's business justification and goes into both reports")
	}
	p, issues := Parse(of.Run, orig)
	if p == nil {
		return nil, fmt.Errorf("revert %s: its plan does not parse: %s", of.Run, Errors(issues))
	}
	if p.Reverts != nil {
		return nil, fmt.Errorf("revert %s: it is itself the revert of run %s, and a revert has no executable rollback step: re-apply that change with a plan of its own", of.Run, p.Reverts.Run)
	}
	if !p.RollbackPlan.HasExecutableStep() {
		todo := ""
		if d := p.RollbackPlan.DescribedSteps(); len(d) > 0 {
			todo = fmt.Sprintf(" (its described steps, to do by hand: %s)", strings.Join(d, "; "))
		}
		return nil, fmt.Errorf("revert %s: its plan has no executable rollback step, so runbook has nothing to run to undo it%s", of.Run, todo)
	}
	var src yaml.MapSlice
	if err := yaml.UnmarshalWithOptions(orig, &src, yaml.UseOrderedMap()); err != nil {
		return nil, fmt.Errorf("revert %s: read its plan: %w", of.Run, err)
	}
	get := func(m yaml.MapSlice, key string) (any, bool) {
		for _, it := range m {
			if k, ok := it.Key.(string); ok && k == key {
				return it.Value, true
			}
		}
		return nil, false
	}
	section := func(key string) yaml.MapSlice {
		v, _ := get(src, key)
		m, _ := v.(yaml.MapSlice)
		return m
	}

	cr := p.ChangeRequest
	id := cr.ID
	if id == "" {
		id = of.Run
	}
	title := "Revert " + of.Run
	if cr.Title != "" {
		title += ": " + cr.Title
	}
	out := yaml.MapSlice{{Key: "change_request", Value: yaml.MapSlice{
		{Key: "id", Value: RevertIDPrefix + id},
		{Key: "title", Value: title},
		{Key: "type", Value: cr.Type},
		{Key: "priority", Value: cr.Priority},
	}}}
	if of.Requester != "" {
		out = append(out, yaml.MapItem{Key: "requester", Value: yaml.MapSlice{{Key: "name", Value: of.Requester}}})
	}
	what := "change " + id
	if cr.Title != "" {
		what += " (" + cr.Title + ")"
	}
	out = append(out, yaml.MapItem{Key: "description", Value: yaml.MapSlice{
		{Key: "summary", Value: fmt.Sprintf("Revert of run %s, %s: its rollback steps run as this change's deploy, against its backup", of.Run, what)},
		{Key: "business_justification", Value: of.Reason},
		{Key: "technical_details", Value: fmt.Sprintf("deploy.steps are rollback_plan.rollback_steps of run %s; restore steps and RUNBOOK_BACKUP_DIR read run %s's backup", of.Run, of.Run)},
	}})
	keep := func(key string) {
		if v, ok := get(src, key); ok && v != nil {
			out = append(out, yaml.MapItem{Key: key, Value: v})
		}
	}
	keep("scope")
	if p.RollbackPlan.EstimatedRollbackTime.IsSet() {
		out = append(out, yaml.MapItem{Key: "timeline", Value: yaml.MapSlice{{Key: "estimated_duration", Value: p.RollbackPlan.EstimatedRollbackTime.Raw}}})
	}
	keep("risks_and_mitigations")
	rb := yaml.MapSlice{}
	if v, ok := get(section("rollback_plan"), "trigger_conditions"); ok && v != nil {
		rb = append(rb, yaml.MapItem{Key: "trigger_conditions", Value: v})
	}
	rb = append(rb, yaml.MapItem{Key: "rollback_steps", Value: []any{RevertManualStep}})
	out = append(out, yaml.MapItem{Key: "rollback_plan", Value: rb})
	keep("approval")
	if v, ok := get(section("preflight"), "checks"); ok && v != nil {
		out = append(out, yaml.MapItem{Key: "preflight", Value: yaml.MapSlice{{Key: "checks", Value: v}}})
	}
	steps, err := revertSteps(p, section("rollback_plan"))
	if err != nil {
		return nil, fmt.Errorf("revert %s: %w", of.Run, err)
	}
	out = append(out, yaml.MapItem{Key: "deploy", Value: yaml.MapSlice{{Key: "steps", Value: steps}}})
	keep("monitor")
	if t := revertTests(p, section("test")); t != nil {
		out = append(out, yaml.MapItem{Key: "test", Value: t})
	}
	keep("report")
	changeID := cr.ID
	out = append(out, yaml.MapItem{Key: "reverts", Value: yaml.MapSlice{
		{Key: "run", Value: of.Run}, {Key: "change_id", Value: changeID}, {Key: "reason", Value: of.Reason},
	}})

	data, err := yaml.MarshalWithOptions(out, yaml.Indent(2), yaml.IndentSequence(true), yaml.UseLiteralStyleIfMultiline(true))
	if err != nil {
		return nil, fmt.Errorf("revert %s: write its plan: %w", of.Run, err)
	}
	header := fmt.Sprintf("# The revert of run %s (runbook revert): its rollback steps as a change of their own.\n", of.Run)
	data = append([]byte(header), data...)
	if rp, issues := Parse("revert of "+of.Run, data); rp == nil {
		return nil, fmt.Errorf("revert %s: the revert plan is not valid: %s", of.Run, Errors(issues))
	}
	return data, nil
}

// revertSteps are the revert's deploy steps: the original rollback steps
// as written (rb is its rollback_plan section), or its texts when the seed's
// one numbered text held them. A backup step without a dir takes the
// original's backup dir, so the revert's backups go where its backups went.
func revertSteps(p *Plan, rb yaml.MapSlice) ([]any, error) {
	var raw []any
	for _, it := range rb {
		if k, _ := it.Key.(string); k == "rollback_steps" {
			raw, _ = it.Value.([]any)
		}
	}
	if raw == nil {
		// One numbered text: the parsed plan has its items.
		var out []any
		for _, s := range p.RollbackPlan.RollbackSteps {
			out = append(out, s.Text)
		}
		return out, nil
	}
	if len(raw) != len(p.RollbackPlan.RollbackSteps) {
		return nil, fmt.Errorf("its %d rollback step(s) read as %d", len(raw), len(p.RollbackPlan.RollbackSteps))
	}
	out := make([]any, len(raw))
	for i, v := range raw {
		out[i] = v
		st, ok := v.(yaml.MapSlice)
		if !ok || p.RollbackPlan.RollbackSteps[i].Backup == nil || p.RollbackPlan.RollbackSteps[i].Backup.Dir != "" {
			continue
		}
		next := make(yaml.MapSlice, 0, len(st))
		for _, f := range st {
			if k, _ := f.Key.(string); k == "backup" {
				b, _ := f.Value.(yaml.MapSlice)
				f.Value = append(yaml.MapSlice{{Key: "dir", Value: p.BackupDir()}}, b...)
			}
			next = append(next, f)
		}
		out[i] = next
	}
	return out, nil
}

// revertTests is the revert's test section: the suites the original's
// rollback_plan.verify names, in that order, with its secret_hosts; nil
// when it names none.
func revertTests(p *Plan, test yaml.MapSlice) yaml.MapSlice {
	if len(p.RollbackPlan.Verify) == 0 {
		return nil
	}
	var suites []any
	var hosts any
	for _, it := range test {
		switch k, _ := it.Key.(string); k {
		case "suites":
			suites, _ = it.Value.([]any)
		case "secret_hosts":
			hosts = it.Value
		}
	}
	var picked []any
	for _, name := range p.RollbackPlan.Verify {
		for _, s := range suites {
			m, _ := s.(yaml.MapSlice)
			for _, f := range m {
				if k, _ := f.Key.(string); k == "name" && f.Value == name {
					picked = append(picked, s)
				}
			}
		}
	}
	out := yaml.MapSlice{}
	if hosts != nil {
		out = append(out, yaml.MapItem{Key: "secret_hosts", Value: hosts})
	}
	return append(out, yaml.MapItem{Key: "suites", Value: picked})
}

// revertsOf checks a revert plan's reverts section.
func (c *checker) revertsOf(r *Reverts) {
	if r == nil {
		return
	}
	c.reverts = r.Run
	if c.required("reverts.run", r.Run, "run (the id of the run this plan reverts, e.g. DEPLOY-20250922-143000)") && !runIDPattern.MatchString(r.Run) {
		c.errorf("reverts.run", "%q is not a run id: write the reverted run's id, 1-128 characters of [A-Za-z0-9_-] (e.g. DEPLOY-20250922-143000)", r.Run)
	}
}
