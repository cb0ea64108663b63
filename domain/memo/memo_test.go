package memo

import (
	"sync"
	"testing"
)

func TestBoundedKeepsAtMostMax(t *testing.T) {
	b := New[int, string](10)
	for i := range 100 {
		b.Put(i, "v")
		if b.Len() > 10 {
			t.Fatalf("holds %d values after %d puts; max 10", b.Len(), i+1)
		}
		if v, ok := b.Get(i); !ok || v != "v" {
			t.Fatalf("the value just put (%d) is gone", i)
		}
	}
	// Replacing a held key drops nothing.
	b = New[int, string](2)
	b.Put(1, "a")
	b.Put(2, "b")
	b.Put(2, "c")
	if v, _ := b.Get(1); v != "a" || b.Len() != 2 {
		t.Fatalf("a replaced key evicted another: len %d, 1=%q", b.Len(), v)
	}
	if v, _ := b.Get(2); v != "c" {
		t.Fatalf("2=%q; want the replacement", v)
	}
}

func TestBoundedConcurrent(t *testing.T) {
	b := New[int, int](64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				b.Put(g*1000+i, i)
				b.Get(i)
			}
		})
	}
	wg.Wait()
	if b.Len() > 64 {
		t.Fatalf("holds %d; max 64", b.Len())
	}
}
