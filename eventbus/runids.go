package eventbus

import (
	"context"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// RunIDs lists the ids of the runs that have a change.requested, newest
// first as run ids sort (DEPLOY-<date>-<time>...). It reads the stream's
// subject counts, not its messages: cheap enough for shell completion.
func (b *Bus) RunIDs(ctx context.Context) ([]string, error) {
	info, err := b.audit.Info(ctx, jetstream.WithSubjectFilter(TypeSubjects("change.requested")))
	if err != nil {
		return nil, fmt.Errorf("list runs of stream %s: %w", AuditStream, err)
	}
	ids := make([]string, 0, len(info.State.Subjects))
	for subject := range info.State.Subjects {
		if run, _, err := ParseSubject(subject); err == nil {
			ids = append(ids, run)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids, nil
}
