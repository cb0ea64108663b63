// Package memo is a bounded map for results worth computing once: a plan
// parsed by every service that reads it, a signature verified by every
// consumer of one process.
package memo

import "sync"

// Bounded maps keys to values, holding at most max of them: when full, an
// arbitrary half is dropped (a value dropped is computed again on its next
// use). It is safe for concurrent use. Values are shared by every reader:
// treat them as read-only.
type Bounded[K comparable, V any] struct {
	mu  sync.Mutex
	max int
	m   map[K]V
}

// New makes a Bounded holding at most n values (at least 2).
func New[K comparable, V any](n int) *Bounded[K, V] {
	return &Bounded[K, V]{max: max(n, 2), m: map[K]V{}}
}

// Get returns the value stored under k.
func (b *Bounded[K, V]) Get(k K) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[k]
	return v, ok
}

// Put stores v under k.
func (b *Bounded[K, V]) Put(k K, v V) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[k]; !ok && len(b.m) >= b.max {
		n := 0
		for old := range b.m {
			delete(b.m, old)
			if n++; n >= b.max/2 {
				break
			}
		}
	}
	b.m[k] = v
}

// Len is how many values are held.
func (b *Bounded[K, V]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
