package pgstore

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// ChainNext extends a run's hash chain by one event:
// sha256(prev || stream sequence (8 bytes, big endian) || the event in
// deterministic protobuf). The chain of a run's first event starts from
// an empty prev. Any change to an event, its sequence or the order of a
// run's events changes every link after it.
func ChainNext(prev []byte, seq uint64, ev *runbookv1.Event) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("chain: event %s: %w", ev.GetId(), err)
	}
	h := sha256.New()
	h.Write(prev)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	h.Write(s[:])
	h.Write(b)
	return h.Sum(nil), nil
}
