package procio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestTailBuffer(t *testing.T) {
	b := NewTailBuffer(5)
	_, _ = b.Write([]byte("ab"))
	if b.String() != "ab" {
		t.Fatalf("%q", b.String())
	}
	_, _ = b.Write([]byte("cdefg"))
	if b.String() != "…cdefg" {
		t.Fatalf("%q", b.String())
	}
}

func TestContextReaderStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := io.Copy(io.Discard, ContextReader{ctx, strings.NewReader("data")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("%v", err)
	}
}
