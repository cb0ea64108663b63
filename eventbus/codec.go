package eventbus

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Content types accepted on the wire. Go services publish protobuf; scripts
// and the nats CLI may publish protojson.
const (
	ContentTypeProto  = "application/protobuf"
	ContentTypeJSON   = "application/json"
	HeaderContentType = "Content-Type"
)

// ErrDecode marks a message that can never be decoded: retrying will not help,
// so the consume loop dead-letters it at once.
var ErrDecode = errors.New("undecodable event")

// typeExceptions lists payload fields whose event type is not the field name
// with every underscore turned into a dot.
var typeExceptions = map[protoreflect.Name]string{
	"event_dead_lettered": "event.dead_lettered",
}

var (
	typeOnce    sync.Once
	fieldToType map[protoreflect.Name]string
	typeToField map[string]protoreflect.FieldDescriptor
)

func buildTypeTables() {
	fieldToType = map[protoreflect.Name]string{}
	typeToField = map[string]protoreflect.FieldDescriptor{}
	oneof := (&runbookv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	fields := oneof.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		typ, ok := typeExceptions[f.Name()]
		if !ok {
			typ = strings.ReplaceAll(string(f.Name()), "_", ".")
		}
		fieldToType[f.Name()] = typ
		typeToField[typ] = f
	}
}

// TypeOf returns the event type named by the payload that is set, e.g.
// "deploy.step.started", or "" when no payload is set.
func TypeOf(ev *runbookv1.Event) string {
	typeOnce.Do(buildTypeTables)
	oneof := ev.ProtoReflect().Descriptor().Oneofs().ByName("payload")
	f := ev.ProtoReflect().WhichOneof(oneof)
	if f == nil {
		return ""
	}
	return fieldToType[f.Name()]
}

// KnownType reports whether typ is an event type of the schema.
func KnownType(typ string) bool {
	typeOnce.Do(buildTypeTables)
	_, ok := typeToField[typ]
	return ok
}

// Types lists every event type of the schema.
func Types() []string {
	typeOnce.Do(buildTypeTables)
	out := make([]string, 0, len(typeToField))
	for t := range typeToField {
		out = append(out, t)
	}
	return out
}

// Payload returns the message set in ev's payload oneof, or nil.
func Payload(ev *runbookv1.Event) proto.Message {
	m := ev.ProtoReflect()
	f := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload"))
	if f == nil {
		return nil
	}
	return m.Get(f).Message().Interface()
}

// Encode marshals ev as protobuf and returns the data with its content type.
func Encode(ev *runbookv1.Event) ([]byte, error) {
	data, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode %s event %s: %w", ev.GetType(), ev.GetId(), err)
	}
	return data, nil
}

// Decode reads an event in the encoding its Content-Type header names
// (protobuf when absent) and checks that it agrees with its subject: a
// payload of the subject's type, the subject's run, no other type named in
// the envelope, and an event type of the schema. Any error wraps
// ErrDecode: the message is poison. stored is when the stream stored the
// message (its JetStream timestamp): an event published without a time
// takes it, so every reader sees the same time (zero: left unset). Every
// reader of the stream decodes through here (DecodeMsg, DecodeRaw).
func Decode(subject string, header nats.Header, data []byte, stored time.Time) (*runbookv1.Event, error) {
	ev := &runbookv1.Event{}
	ct := ""
	if header != nil {
		ct = header.Get(HeaderContentType)
	}
	switch mediaType(ct) {
	case ContentTypeJSON, "text/json":
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, ev); err != nil {
			return nil, fmt.Errorf("%w: %s is not a protojson runbook.v1.Event: %v", ErrDecode, subject, err)
		}
	case ContentTypeProto, "application/x-protobuf", "":
		if err := proto.Unmarshal(data, ev); err != nil {
			return nil, fmt.Errorf("%w: %s is not a protobuf runbook.v1.Event: %v", ErrDecode, subject, err)
		}
	default:
		return nil, fmt.Errorf("%w: %s has Content-Type %q; want %s or %s", ErrDecode, subject, ct, ContentTypeProto, ContentTypeJSON)
	}
	if subject != "" {
		runID, typ, err := ParseSubject(subject)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDecode, err)
		}
		if !KnownType(typ) {
			return nil, fmt.Errorf("%w: %s: %q is not an event type of runbook.v1", ErrDecode, subject, typ)
		}
		payloadType := TypeOf(ev)
		if payloadType == "" {
			return nil, fmt.Errorf("%w: %s carries no payload (want a %s payload)", ErrDecode, subject, typ)
		}
		if payloadType != typ {
			return nil, fmt.Errorf("%w: %s carries a %s payload", ErrDecode, subject, payloadType)
		}
		if ev.RunId == "" {
			ev.RunId = runID
		} else if ev.RunId != runID {
			return nil, fmt.Errorf("%w: %s has run_id %q", ErrDecode, subject, ev.RunId)
		}
		if ev.Type == "" {
			ev.Type = typ
		} else if ev.Type != typ {
			return nil, fmt.Errorf("%w: %s names its type %q", ErrDecode, subject, ev.Type)
		}
		if ev.Id == "" {
			if header != nil && header.Get(nats.MsgIdHdr) != "" {
				ev.Id = header.Get(nats.MsgIdHdr)
			} else {
				return nil, fmt.Errorf("%w: %s has no id", ErrDecode, subject)
			}
		}
	}
	if ev.Time == nil && !stored.IsZero() {
		ev.Time = timestamppb.New(stored)
	}
	return ev, nil
}

// DecodeMsg decodes a message a consumer delivered (Decode with the
// message's stream timestamp), with its metadata.
func DecodeMsg(msg jetstream.Msg) (*runbookv1.Event, *jetstream.MsgMetadata, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: message metadata: %w", msg.Subject(), err)
	}
	ev, err := Decode(msg.Subject(), msg.Headers(), msg.Data(), meta.Timestamp)
	return ev, meta, err
}

// DecodeRaw decodes a message read from the stream by sequence or subject
// (Decode with its stream timestamp).
func DecodeRaw(raw *jetstream.RawStreamMsg) (*runbookv1.Event, error) {
	return Decode(raw.Subject, raw.Header, raw.Data, raw.Time)
}

func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// ID builds a deterministic event id from the run, the type and the parts
// that make this occurrence unique (step index, attempt ...). A re-emitted
// event gets the same id, so JetStream's duplicate window drops it.
func ID(runID, typ string, parts ...any) string {
	var b strings.Builder
	b.WriteString(runID)
	b.WriteByte('/')
	b.WriteString(typ)
	for _, p := range parts {
		b.WriteByte('/')
		fmt.Fprint(&b, p)
	}
	return b.String()
}

// New builds an event of run runID around payload, which must be one of the
// Event_* oneof wrappers (e.g. &runbookv1.Event_DeployDone{...}). The id is
// ID(runID, type, idParts...).
func New(runID string, payload any, idParts ...any) *runbookv1.Event {
	ev := &runbookv1.Event{RunId: runID}
	setPayload(ev, payload)
	ev.Type = TypeOf(ev)
	ev.Id = ID(runID, ev.Type, idParts...)
	return ev
}

// CausedBy sets the causation id and returns ev, for chaining.
func CausedBy(ev *runbookv1.Event, cause *runbookv1.Event) *runbookv1.Event {
	if cause != nil {
		ev.CausationId = cause.GetId()
	}
	return ev
}

func setPayload(ev *runbookv1.Event, payload any) {
	field := reflect.ValueOf(ev).Elem().FieldByName("Payload")
	v := reflect.ValueOf(payload)
	if !v.IsValid() || !v.Type().AssignableTo(field.Type()) {
		panic(fmt.Sprintf("eventbus.New: %T is not an Event payload wrapper such as *runbookv1.Event_DeployDone", payload))
	}
	field.Set(v)
}

func stamp(ev *runbookv1.Event, source string, now time.Time) {
	if ev.Time == nil {
		ev.Time = timestamppb.New(now)
	}
	if ev.Source == "" {
		ev.Source = source
	}
	if ev.Type == "" {
		ev.Type = TypeOf(ev)
	}
}
