package runstate

import "testing"

// Statuses lists each status once: the seven a run passes through, then
// the eight final ones (readers — the API's ?status=, the reporter's
// runbook_runs_active — take the list from here).
func TestStatusesListsEachOnceInOrder(t *testing.T) {
	seen := map[Status]bool{}
	all := Statuses()
	for i, st := range all {
		if seen[st] {
			t.Errorf("%s listed twice", st)
		}
		seen[st] = true
		if want := i >= 7; st.Final() != want {
			t.Errorf("Statuses()[%d] = %s: Final() = %v, want %v", i, st, st.Final(), want)
		}
	}
	if len(all) != 15 {
		t.Errorf("%d statuses, want 15", len(all))
	}
	all[0] = "CHANGED"
	if Statuses()[0] != Submitted {
		t.Errorf("Statuses() shares its slice with callers")
	}
}
