package plan

import (
	"crypto/sha256"
	"encoding/hex"
)

// Hash is the identity of a plan text: the hex sha256 of its bytes as
// submitted. Approvals bind to it; a changed plan is a new run.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
