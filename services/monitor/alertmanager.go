package monitor

import (
	"net/http"

	"github.com/prometheus/common/model"

	"github.com/kis-core/runbook/services/monitor/source"
)

// AlertmanagerPath is where the monitor's Alertmanager webhook receiver
// listens (POST, webhook payload version 4). Point a webhook_configs url at
// http://<monitor or runbook serve HTTP address>/api/v1/alertmanager.
const AlertmanagerPath = "/api/v1/alertmanager"

// maxWebhookBody bounds a webhook request (Alertmanager's max_alerts
// default is 0, unlimited: a group of thousands of alerts still fits).
const maxWebhookBody = 8 << 20

// Handler serves the Alertmanager webhook receiver at AlertmanagerPath (and
// nothing else): the alerts it receives are what the plans' alertmanager
// sources read. svcmain mounts it on the monitor's --metrics-listen server;
// runbook serve mounts it next to the read API.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+AlertmanagerPath, s.receiveAlerts)
	return mux
}

func (s *Service) receiveAlerts(w http.ResponseWriter, r *http.Request) {
	msg, err := source.ReadWebhook(r.Body, maxWebhookBody)
	if err != nil {
		s.log.Warn("alertmanager webhook refused", "err", err, "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n := s.o.Sources.Alerts.Receive(msg)
	firing := 0
	for _, a := range msg.Alerts {
		if a.Status == string(model.AlertFiring) {
			firing++
		}
	}
	s.log.Info("alertmanager webhook", "receiver", msg.Receiver, "group", msg.GroupKey, "alerts", n, "firing", firing)
	w.WriteHeader(http.StatusOK)
}
