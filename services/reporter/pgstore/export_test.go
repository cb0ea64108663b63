package pgstore

// SetBeforeCommitForTest makes ApplyBatch call fn inside its transaction,
// after its writes, before the commit (nil: no hook).
func (s *Store) SetBeforeCommitForTest(fn func()) {
	s.mu.Lock() // not during a batch
	defer s.mu.Unlock()
	s.beforeCommit = fn
}

// PauseHeartbeatForTest stops (true) or resumes the lease's heartbeat, as
// a frozen process would.
func (s *Store) PauseHeartbeatForTest(paused bool) { s.heartbeatPaused.Store(paused) }
