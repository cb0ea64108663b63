package reporter_test

import (
	"testing"

	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/readmodeltest"
)

func TestMemoryModel(t *testing.T) {
	t.Parallel()
	readmodeltest.Run(t, func(*testing.T) reporter.ReadModel { return reporter.NewMemory() })
}
