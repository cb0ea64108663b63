package reporter

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is ApplyBatch's refusal, on a shared read model (Leaser),
// of a batch from a reporter whose write lease another reporter has taken
// since: that reporter projects now, from the stored position, and this
// one stores nothing more. Also the cause a lease ends with when it is lost.
var ErrLeaseLost = errors.New("write lease lost to another reporter")

// Leaser is a read model that several reporter processes share (pgstore's:
// every replica on one database). Only the holder of its write lease
// projects into it and publishes reports; the others stand by in
// AcquireLease and take over, from the stored position, when the holder
// stops, dies or is cut off. The in-memory model is each process's own and
// is no Leaser.
type Leaser interface {
	// AcquireLease waits until this model holds the write lease for
	// holder (a name for logs and for the database) or ctx ends. While
	// another reporter holds it, standby (if not nil) is called with that
	// reporter's name, each time it changes. timeout bounds how long a
	// holder that stops answering (frozen, cut off from the database)
	// keeps the lease. From the moment it returns, ApplyBatch of any other
	// holder before it is refused (ErrLeaseLost), and this model's is
	// refused once another takes the lease. A model holds one lease at a
	// time.
	AcquireLease(ctx context.Context, holder string, timeout time.Duration, standby func(current string)) (Lease, error)
}

// Lease is a held write lease.
type Lease interface {
	// Token is the lease's fencing token: it grows with every takeover.
	Token() int64
	// Done is closed when the lease ended: lost (its connection to the
	// database ended, or the holder could not renew it in time) or
	// released. Err then says why.
	Done() <-chan struct{}
	// Err is nil while the lease is held, an error wrapping ErrLeaseLost
	// once it was lost, and context.Canceled once it was released.
	Err() error
	// Release gives the lease up at once, so a standby takes over without
	// waiting for the timeout.
	Release(ctx context.Context)
}
