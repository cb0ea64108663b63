package eventbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names. Never renamed: the audit stream is kept for years.
const (
	AuditStream   = "RUNBOOK"
	MetricsStream = "RUNBOOK_METRICS"
)

// StreamOptions sizes the two streams. Zero values take the defaults of
// DESIGN.md.
type StreamOptions struct {
	// Replicas: 1 on the embedded server, 3 in a cluster.
	Replicas int
	// AuditMaxAge is how long the audit stream keeps events (default 400 days).
	AuditMaxAge time.Duration
	// MetricsMaxAge is how long metric samples are kept (default 7 days).
	MetricsMaxAge time.Duration
	// DuplicateWindow is JetStream's Nats-Msg-Id window (default and minimum 2 minutes).
	DuplicateWindow time.Duration
}

func (o *StreamOptions) setDefaults() {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.AuditMaxAge == 0 {
		o.AuditMaxAge = 400 * 24 * time.Hour
	}
	if o.MetricsMaxAge == 0 {
		o.MetricsMaxAge = 7 * 24 * time.Hour
	}
	if o.DuplicateWindow < 2*time.Minute {
		o.DuplicateWindow = 2 * time.Minute
	}
}

// AuditStreamConfig is the RUNBOOK stream: the audit log. File storage, no
// deletes, no purges, retention by age only.
func AuditStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o.setDefaults()
	return jetstream.StreamConfig{
		Name:        AuditStream,
		Description: "runbook audit log: every event of every run",
		Subjects:    []string{SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      o.AuditMaxAge,
		Duplicates:  o.DuplicateWindow,
		DenyDelete:  true,
		DenyPurge:   true,
		Discard:     jetstream.DiscardOld,
	}
}

// MetricsStreamConfig is RUNBOOK_METRICS: high-volume samples, short retention.
func MetricsStreamConfig(o StreamOptions) jetstream.StreamConfig {
	o.setDefaults()
	return jetstream.StreamConfig{
		Name:        MetricsStream,
		Description: "runbook metric samples taken by the monitor",
		Subjects:    []string{MetricsPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      o.MetricsMaxAge,
		Duplicates:  o.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	}
}

// EnsureStreams creates the two streams, or updates them when their
// settings differ from these. It is safe to call from every service at
// start-up: a stream already as configured is left alone (no update request,
// so five services starting together do not rewrite the stream's config).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range []jetstream.StreamConfig{AuditStreamConfig(o), MetricsStreamConfig(o)} {
		if err := ensureStream(ctx, js, cfg); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // another service created it first
		}
		return err
	}
	if err != nil {
		return err
	}
	if sameSettings(st.CachedInfo().Config, cfg) {
		return nil
	}
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// sameSettings compares the settings runbook sets.
func sameSettings(a, b jetstream.StreamConfig) bool {
	return slices.Equal(a.Subjects, b.Subjects) && a.Retention == b.Retention && a.Storage == b.Storage &&
		a.Replicas == b.Replicas && a.MaxAge == b.MaxAge && a.Duplicates == b.Duplicates &&
		a.DenyDelete == b.DenyDelete && a.DenyPurge == b.DenyPurge && a.Discard == b.Discard &&
		a.Description == b.Description
}

// IsNotFound reports whether err says a stream, consumer or message is missing.
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrMsgNotFound) ||
		errors.Is(err, jetstream.ErrConsumerNotFound)
}
