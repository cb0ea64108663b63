package steps

import "github.com/kis-core/runbook/eventbus/procio"

// MinSecretLen is the shortest value that is redacted (procio.MinSecretLen).
const MinSecretLen = procio.MinSecretLen

// SecretName reports whether the variable name (with its value) holds a
// secret (procio.SecretName).
func SecretName(name, value string) bool { return procio.SecretName(name, value) }

// Redactor is the redactor every plan command shares (procio.Redactor),
// with the fields of a step's Result.
type Redactor struct{ r *procio.Redactor }

// NewRedactor redacts the values of secrets (name → value), as
// procio.NewRedactor.
func NewRedactor(secrets map[string]string) *Redactor {
	return &Redactor{procio.NewRedactor(secrets)}
}

// Procio is the shared redactor, for procio.Command.
func (r *Redactor) Procio() *procio.Redactor {
	if r == nil {
		return nil
	}
	return r.r
}

// Redact returns s with every secret form replaced.
func (r *Redactor) Redact(s string) string { return r.Procio().Redact(s) }

// Empty reports a redactor with nothing to redact.
func (r *Redactor) Empty() bool { return r.Procio().Empty() }

// RedactResult redacts a step result's output tail and error.
func (r *Redactor) RedactResult(res Result) Result {
	if r.Empty() {
		return res
	}
	res.OutputTail = r.Redact(res.OutputTail)
	res.Err = r.Procio().RedactError(res.Err)
	return res
}
