package api

import (
	"testing"
)

// A client that does not keep up is dropped; the others get every message.
func TestSlowClientIsDroppedOthersKeepUp(t *testing.T) {
	o := Options{ClientBuffer: 2}
	o.setDefaults()
	h := newHub(o)
	slow := h.add()
	fast := h.add()
	for i := range 5 {
		h.broadcast("alert", uint64(i+1), map[string]int{"n": i})
		<-fast.ch // the fast client reads as it goes
	}
	n := 0
	for range slow.ch { // closed once dropped
		n++
	}
	if n != 2 {
		t.Errorf("slow client got %d messages before it was dropped, want its buffer's 2", n)
	}
	h.mu.Lock()
	_, slowIn := h.clients[slow]
	_, fastIn := h.clients[fast]
	h.mu.Unlock()
	if slowIn || !fastIn {
		t.Errorf("slow client registered %t, fast %t; want false, true", slowIn, fastIn)
	}
	h.shutdown()
	if _, ok := <-fast.ch; ok {
		t.Error("shutdown left a client's stream open")
	}
	if h.add() != nil {
		t.Error("a client joined after shutdown")
	}
}
