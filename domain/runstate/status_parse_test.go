package runstate

import (
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	for _, in := range []string{"rolled_back", "ROLLED_BACK", " Rolled_Back "} {
		if s, err := ParseStatus(in); err != nil || s != RolledBack {
			t.Errorf("ParseStatus(%q) = %q, %v", in, s, err)
		}
	}
	_, err := ParseStatus("done")
	if err == nil || !strings.Contains(err.Error(), `status "done": want one of SUBMITTED,`) || !strings.Contains(err.Error(), "INVALID") {
		t.Errorf("ParseStatus(done): %v", err)
	}
	for _, s := range Statuses() {
		if s.Phase() == "" {
			t.Errorf("%s has no phase", s)
		}
	}
}
