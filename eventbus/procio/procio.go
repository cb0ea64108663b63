// Package procio holds the small I/O pieces the services share when they
// run plan commands and copy files: the tail of a command's output kept for
// its event, and a copy that stops when its context ends.
package procio

import (
	"context"
	"io"
	"strings"
	"sync"
)

// TailBuffer keeps the last Max bytes written to it (a command's output
// tail for its step event). Safe for concurrent writers (stdout and stderr).
type TailBuffer struct {
	Max int

	mu   sync.Mutex
	buf  []byte
	lost bool
}

// NewTailBuffer keeps the last max bytes.
func NewTailBuffer(max int) *TailBuffer { return &TailBuffer{Max: max} }

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.Max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.Max:]...)
		t.lost = true
	}
	return len(p), nil
}

// String is the kept tail, trimmed, starting with "…" when earlier output
// was dropped.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if t.lost {
		return "…" + s
	}
	return s
}

// ContextReader reads from R until Ctx ends, so a long copy can be stopped.
type ContextReader struct {
	Ctx context.Context
	R   io.Reader
}

func (c ContextReader) Read(p []byte) (int, error) {
	if err := c.Ctx.Err(); err != nil {
		return 0, err
	}
	return c.R.Read(p)
}
