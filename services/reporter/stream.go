package reporter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/eventbus"
)

// ErrStreamBehind is what CheckStream finds when the audit stream does not
// hold what the read model has projected: it ends before the model's
// position, it begins after it (events left it before they were projected),
// or it holds another event at that position (it was recreated and has
// grown past it). Reading on would store the new stream's events after the
// old one's, or wait past its end for ever (new runs missing from the read
// API, with no word why): the reporter stops instead. The error is a
// *StreamBehindError.
var ErrStreamBehind = errors.New("audit stream behind the read model")

// StreamBehindError says how the audit stream and the read model disagree.
type StreamBehindError struct {
	// Stream is the audit stream's name (RUNBOOK).
	Stream string
	// Position is the last sequence the read model has projected, and
	// ModelEvent the id of the event it stored there.
	Position   uint64
	ModelEvent string
	// FirstSeq and LastSeq are the stream's first and last sequences.
	FirstSeq, LastSeq uint64
	// StreamEvent is the id of the stream's message at Position when that
	// is another event than ModelEvent ("" when it cannot be decoded).
	StreamEvent string
	// Created is when the stream was created, and ReadCreated when the
	// one this reporter began reading was, when they differ: the stream
	// was recreated under the live reporter (whose projection may then
	// hold events of both).
	Created, ReadCreated time.Time
	// Remedy is what the operator does about it.
	Remedy string
}

func (e *StreamBehindError) Error() string {
	switch {
	case !e.ReadCreated.IsZero():
		return fmt.Sprintf("audit stream %s was recreated at %s while the reporter read it (it began reading the one created at %s); the read model has projected up to %d, the stream ends at %d: the model may hold events of both; %s",
			e.Stream, e.Created.UTC().Format(time.RFC3339Nano), e.ReadCreated.UTC().Format(time.RFC3339Nano), e.Position, e.LastSeq, e.Remedy)
	case e.LastSeq < e.Position:
		return fmt.Sprintf("audit stream %s ends at sequence %d but the read model has projected up to %d: the stream was recreated or truncated; %s",
			e.Stream, e.LastSeq, e.Position, e.Remedy)
	case e.FirstSeq > e.Position+1:
		return fmt.Sprintf("audit stream %s begins at sequence %d but the read model has projected only up to %d: events %d to %d left the stream before they were projected (truncated, or expired by age); %s",
			e.Stream, e.FirstSeq, e.Position, e.Position+1, e.FirstSeq-1, e.Remedy)
	}
	found := "an undecodable message"
	if e.StreamEvent != "" {
		found = "event " + e.StreamEvent
	}
	return fmt.Sprintf("audit stream %s holds %s at sequence %d but the read model projected event %s there (it has projected up to %d; the stream ends at %d): the stream was recreated; %s",
		e.Stream, found, e.Position, e.ModelEvent, e.Position, e.LastSeq, e.Remedy)
}

// Is makes errors.Is(err, ErrStreamBehind) hold.
func (e *StreamBehindError) Is(target error) bool { return target == ErrStreamBehind }

// remedy is the operator's way out: re-project the read model from the
// stream as it now is, once they know why it changed.
func remedy(model ReadModel) string {
	if _, ok := model.(*Memory); ok {
		return "investigate, then restart the reporter: its in-memory read model re-projects the stream from the start"
	}
	return "investigate, then run 'runbook replay --rebuild' to re-project from the stream"
}

// CheckStream compares the audit stream with what model has projected: it
// returns a *StreamBehindError (errors.Is ErrStreamBehind) when the stream
// ends before the model's position, begins after it, or holds another
// event there (see ErrStreamBehind), another error when it cannot look,
// and nil when the stream goes on from where the model stands. last is the
// stream's last sequence (when it could be read).
func CheckStream(ctx context.Context, bus *eventbus.Bus, model ReadModel) (last uint64, err error) {
	seen, err := checkStream(ctx, bus, model)
	return seen.LastSeq, err
}

// checkStream is CheckStream; it returns what it saw: the stream's state
// and creation time, and the model's position.
func checkStream(ctx context.Context, bus *eventbus.Bus, model ReadModel) (StreamBehindError, error) {
	pos, id, err := model.Head(ctx)
	if err != nil {
		return StreamBehindError{}, fmt.Errorf("read the projection's position: %w", err)
	}
	str, err := bus.JetStream().Stream(ctx, eventbus.AuditStream)
	if err != nil {
		return StreamBehindError{}, fmt.Errorf("look up stream %s: %w", eventbus.AuditStream, err)
	}
	info := str.CachedInfo()
	st := info.State
	e := StreamBehindError{Stream: eventbus.AuditStream, Position: pos, ModelEvent: id,
		FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Created: info.Created, Remedy: remedy(model)}
	if pos == 0 {
		return e, nil // nothing projected: any stream will do
	}
	if st.LastSeq < pos || st.FirstSeq > pos+1 {
		return e, &e
	}
	if id == "" || st.FirstSeq > pos {
		return e, nil // no event to compare (the model's row is gone, or the stream's aged out)
	}
	raw, err := str.GetMsg(ctx, pos)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return e, nil // removed since (retention): nothing to compare
	}
	if err != nil {
		return e, fmt.Errorf("read stream %s at sequence %d: %w", eventbus.AuditStream, pos, err)
	}
	ev, derr := eventbus.DecodeRaw(raw)
	if derr == nil && ev.GetId() == id {
		return e, nil
	}
	if derr == nil {
		e.StreamEvent = ev.GetId()
	}
	return e, &e
}
