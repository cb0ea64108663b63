// Command reporter runs runbook's REPORT service against a NATS JetStream
// server: it folds every run's events and publishes each final run's
// report.ready once.
//
// --database-url (env RUNBOOK_DATABASE_URL) keeps the read model in
// PostgreSQL (package pgstore) instead of memory.
package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
)

func main() {
	var dbURL, reportsDir string
	var store *pgstore.Store
	code := svcmain.MainWithFlags("reporter", func(fs *flag.FlagSet) {
		fs.StringVar(&dbURL, "database-url", os.Getenv("RUNBOOK_DATABASE_URL"), "PostgreSQL for the read model and history (env RUNBOOK_DATABASE_URL); empty: in memory, rebuilt from the stream")
		fs.StringVar(&reportsDir, "reports-dir", os.Getenv("RUNBOOK_REPORTS_DIR"), "also write each report as <dir>/<run>-report.json (env RUNBOOK_REPORTS_DIR); empty: no files")
	}, func(d svcmain.Deps) (svcmain.Service, error) {
		o := reporter.Options{ReportsDir: reportsDir}
		if dbURL != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := pgstore.Open(ctx, dbURL)
			if err != nil {
				return nil, err
			}
			store, o.Model = s, s
			d.Log.Info("read model in PostgreSQL")
		}
		return reporter.New(d.Bus, o, d.Log, d.Metrics, d.Registry), nil
	})
	// svcmain returns after the consumers and NATS drained: the pool closes last.
	if store != nil {
		store.Close()
	}
	os.Exit(code)
}
