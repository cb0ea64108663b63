// Package estimator is a small HTTP service standing in for KIS_CORE_V3's
// estimator in runbook's demos and end-to-end tests. It serves the endpoints
// the seed runbook's smoke and load tests call, exposes Prometheus metrics,
// and behaves like whichever release its state dir names as current (see
// CurrentFile): the good release is fast and never fails, the bad one is slow
// and answers 500 to 30 % of its API requests while its health check stays
// green.
package estimator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names, for the plans' prometheus_scrape source.
const (
	MetricLatency  = "estimator_http_request_duration_seconds"
	MetricRequests = "estimator_http_requests_total"
	MetricErrors   = "estimator_http_errors_total"
)

// Buckets of the latency histogram: Prometheus' defaults plus a few around
// the seed's p95 threshold (2.1 s) and its 150 % rollback line (3.15 s).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, .75, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10}

// routes are the paths of the API, as the metrics label them.
var routes = []string{"/api/v1/health", "/api/v1/estimates", "/api/v1/estimate", "/api/v1/templates", "/api/v1/auth/login", "/api/v1/auth/me"}

const (
	maxEstimates = 1000 // kept in memory; the oldest go first
	listLimit    = 100  // GET /api/v1/estimates returns the newest ones
	maxBody      = 1 << 20
)

// Server is the estimator. It is an http.Handler.
type Server struct {
	dir     string
	log     *slog.Logger
	handler http.Handler
	reg     *prometheus.Registry

	latency  *prometheus.HistogramVec
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	info     *prometheus.GaugeVec

	mu        sync.Mutex
	rel       Release
	seen      stamp // of current-release.json when rel was read
	missing   bool  // current-release.json vanished (warned once)
	failAcc   int   // error spreading accumulator, in 1/1000
	seq       int
	estimates []Estimate
	tokens    tokens // issued by POST /api/v1/auth/login (auth.go)
}

// New returns the estimator serving the release named in stateDir (see
// EnsureState: missing files are created, the good release by default).
func New(stateDir string, log *slog.Logger) (http.Handler, error) {
	return NewServer(stateDir, log)
}

// NewServer is New returning the concrete server.
func NewServer(stateDir string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := EnsureState(stateDir); err != nil {
		return nil, err
	}
	s := &Server{dir: stateDir, log: log, reg: prometheus.NewRegistry()}
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricLatency,
		Help:    "Time to answer an HTTP request, by route.",
		Buckets: latencyBuckets,
	}, []string{"path"})
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRequests,
		Help: "HTTP requests answered, by route and status code (/metrics excluded).",
	}, []string{"path", "code"})
	s.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricErrors,
		Help: "HTTP requests answered with a 5xx status, by route.",
	}, []string{"path"})
	s.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "estimator_release_info",
		Help: "The running release (value 1).",
	}, []string{"version"})
	s.reg.MustRegister(s.latency, s.requests, s.errors, s.info)
	// Every route's series exist from the start (at zero), so that a scrape
	// before the first request, or before the first error, finds them.
	for _, p := range routes {
		s.latency.WithLabelValues(p)
		s.requests.WithLabelValues(p, "200")
		s.errors.WithLabelValues(p)
	}

	if _, err := s.refresh(); err != nil {
		return nil, err
	}
	s.seedEstimates()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/health", s.health)
	mux.Handle("GET /api/v1/estimates", s.api(s.listEstimates))
	mux.Handle("POST /api/v1/estimate", s.api(s.createEstimate))
	mux.Handle("GET /api/v1/templates", s.api(s.listTemplates))
	mux.Handle("POST /api/v1/auth/login", s.api(s.login))
	mux.Handle("GET /api/v1/auth/me", s.api(s.me))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found: " + r.URL.Path})
	})
	metrics := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			metrics.ServeHTTP(w, r)
			return
		}
		s.instrument(mux, w, r)
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Registry is the server's own metrics registry (served on /metrics).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Release is the release the server currently runs, after re-reading the
// state dir if current-release.json changed.
func (s *Server) Release() Release {
	r, _ := s.refresh()
	return r
}

// refresh re-reads current-release.json when its mtime or size changed. A
// file that cannot be read or parsed (e.g. caught half-written by cp) leaves
// the running release in place and is tried again on the next request. The
// error is returned only when there is no release at all yet.
func (s *Server) refresh() (Release, error) {
	path := filepath.Join(s.dir, CurrentFile)
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(path)
	if err != nil {
		if s.rel.Version == "" {
			return Release{}, fmt.Errorf("estimator: %w", err)
		}
		if !s.missing && errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("release file vanished; keeping the running release", "path", path, "release", s.rel.Version)
			s.missing = true
		}
		return s.rel, nil
	}
	st := stamp{mod: fi.ModTime(), size: fi.Size()}
	if s.rel.Version != "" && st == s.seen {
		return s.rel, nil
	}
	r, err := readRelease(path)
	if err != nil {
		if s.rel.Version == "" {
			return Release{}, fmt.Errorf("estimator: %w", err)
		}
		return s.rel, nil // retried on the next request
	}
	s.missing = false
	s.seen = st
	if !reflect.DeepEqual(r, s.rel) {
		if s.rel.Version != "" {
			s.log.Info("release switched", "from", s.rel.Version, "to", r.Version, "latency_ms", r.LatencyMS, "error_rate", r.ErrorRate)
			s.info.DeleteLabelValues(s.rel.Version)
		} else {
			s.log.Info("release loaded", "release", r.Version, "latency_ms", r.LatencyMS, "error_rate", r.ErrorRate)
		}
		s.rel = r
		s.info.WithLabelValues(r.Version).Set(1)
	}
	return s.rel, nil
}

// instrument serves r through mux and records the request's metrics under
// the route's pattern (so that unknown paths share one label).
func (s *Server) instrument(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	mux.ServeHTTP(rec, r)
	path := "other"
	if _, p, ok := strings.Cut(r.Pattern, " "); ok && p != "/" {
		path = p
	}
	s.latency.WithLabelValues(path).Observe(time.Since(start).Seconds())
	s.requests.WithLabelValues(path, fmt.Sprint(rec.code)).Inc()
	if rec.code >= 500 {
		s.errors.WithLabelValues(path).Inc()
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusRecorder) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// delay waits the release's latency (±10 %), or until the client goes away.
func delay(ctx context.Context, r Release) {
	if r.LatencyMS <= 0 {
		return
	}
	d := time.Duration(float64(r.LatencyMS) * float64(time.Millisecond) * (0.9 + 0.2*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// shouldFail spreads the release's failures evenly over the requests to
// the paths it fails (all of them unless FailPaths names some).
func (s *Server) shouldFail(r Release, path string) bool {
	perMille := int(r.ErrorRate*1000 + 0.5)
	if perMille <= 0 || (len(r.FailPaths) > 0 && !slices.Contains(r.FailPaths, path)) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAcc += perMille
	if s.failAcc >= 1000 {
		s.failAcc -= 1000
		return true
	}
	return false
}

// api wraps an API endpoint with the release's latency and failures.
func (s *Server) api(h func(http.ResponseWriter, *http.Request, Release)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rel, _ := s.refresh()
		delay(r.Context(), rel)
		if s.shouldFail(rel, r.URL.Path) {
			writeJSON(w, http.StatusInternalServerError, map[string]string{
				"error":   "internal error (injected by release " + rel.Version + ")",
				"release": rel.Version,
			})
			return
		}
		h(w, r, rel)
	})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	rel, _ := s.refresh()
	delay(r.Context(), rel)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "release": rel.Version})
}

// EstimateItem is one line of an estimate request.
type EstimateItem struct {
	Category  string  `json:"category"`
	ItemCode  string  `json:"itemCode"`
	Quantity  float64 `json:"quantity"`
	UnitPrice float64 `json:"unitPrice"`
	Amount    float64 `json:"amount"`
}

// Estimate is one created estimate.
type Estimate struct {
	EstimateID    string         `json:"estimateId"`
	CustomerID    string         `json:"customerId"`
	ProjectName   string         `json:"projectName"`
	EstimateItems []EstimateItem `json:"estimateItems"`
	Total         float64        `json:"total"`
	Currency      string         `json:"currency"`
	CreatedAt     time.Time      `json:"createdAt"`
	Release       string         `json:"release"`
	// CreatedBy is the user of the bearer token the estimate was created
	// with (none without a token).
	CreatedBy string `json:"createdBy,omitempty"`
}

// EstimateRequest is the body of POST /api/v1/estimate (the seed's smoke test).
type EstimateRequest struct {
	CustomerID    string `json:"customerId"`
	ProjectName   string `json:"projectName"`
	EstimateItems []struct {
		Category string  `json:"category"`
		ItemCode string  `json:"itemCode"`
		Quantity float64 `json:"quantity"`
	} `json:"estimateItems"`
}

var unitPrices = map[string]float64{"HARDWARE": 1200, "SOFTWARE": 450, "SERVICE": 90, "LICENSE": 300}

const defaultUnitPrice = 100

func (s *Server) createEstimate(w http.ResponseWriter, r *http.Request, rel Release) {
	// A token is optional (the load test posts without one); a bad one is refused.
	createdBy, withToken, known := s.user(r)
	if withToken && !known {
		unauthorized(w)
		return
	}
	var req EstimateRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON body: " + err.Error()})
		return
	}
	var problems []string
	if strings.TrimSpace(req.CustomerID) == "" {
		problems = append(problems, "customerId is required")
	}
	if len(req.EstimateItems) == 0 {
		problems = append(problems, "estimateItems needs at least one item")
	}
	est := Estimate{CustomerID: req.CustomerID, ProjectName: req.ProjectName, Currency: "KRW", Release: rel.Version, CreatedBy: createdBy}
	for i, it := range req.EstimateItems {
		if it.Quantity <= 0 {
			problems = append(problems, fmt.Sprintf("estimateItems[%d].quantity must be > 0", i))
		}
		price, ok := unitPrices[strings.ToUpper(it.Category)]
		if !ok {
			price = defaultUnitPrice
		}
		line := EstimateItem{Category: it.Category, ItemCode: it.ItemCode, Quantity: it.Quantity, UnitPrice: price, Amount: price * it.Quantity}
		est.EstimateItems = append(est.EstimateItems, line)
		est.Total += line.Amount
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid estimate", "problems": problems})
		return
	}
	s.mu.Lock()
	s.seq++
	est.CreatedAt = time.Now().UTC()
	est.EstimateID = fmt.Sprintf("EST-%s-%04d", est.CreatedAt.Format("20060102"), s.seq)
	s.estimates = append(s.estimates, est)
	if len(s.estimates) > maxEstimates {
		s.estimates = append([]Estimate(nil), s.estimates[len(s.estimates)-maxEstimates:]...)
	}
	s.mu.Unlock()
	w.Header().Set("Location", "/api/v1/estimates/"+est.EstimateID)
	writeJSON(w, http.StatusCreated, est)
}

func (s *Server) listEstimates(w http.ResponseWriter, _ *http.Request, _ Release) {
	s.mu.Lock()
	n := min(len(s.estimates), listLimit)
	out := make([]Estimate, n)
	for i := range n { // newest first
		out[i] = s.estimates[len(s.estimates)-1-i]
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// Template is one estimate template.
type Template struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Category string   `json:"category"`
	Items    []string `json:"items"`
}

func (s *Server) listTemplates(w http.ResponseWriter, _ *http.Request, _ Release) {
	writeJSON(w, http.StatusOK, []Template{
		{ID: "TPL-HW-001", Name: "Server hardware", Category: "HARDWARE", Items: []string{"SRV-1U", "SSD-2T", "NIC-25G"}},
		{ID: "TPL-SW-001", Name: "ERP licences", Category: "SOFTWARE", Items: []string{"ERP-CORE", "ERP-AI"}},
		{ID: "TPL-SV-001", Name: "Installation service", Category: "SERVICE", Items: []string{"INSTALL", "TRAINING"}},
	})
}

func (s *Server) seedEstimates() {
	now := time.Now().UTC()
	for _, c := range []struct{ customer, project, cat, code string }{
		{"C-1001", "Warehouse ERP rollout", "SOFTWARE", "ERP-CORE"},
		{"C-1002", "Branch office servers", "HARDWARE", "SRV-1U"},
	} {
		s.seq++
		price := unitPrices[c.cat]
		s.estimates = append(s.estimates, Estimate{
			EstimateID:    fmt.Sprintf("EST-%s-%04d", now.Format("20060102"), s.seq),
			CustomerID:    c.customer,
			ProjectName:   c.project,
			EstimateItems: []EstimateItem{{Category: c.cat, ItemCode: c.code, Quantity: 2, UnitPrice: price, Amount: 2 * price}},
			Total:         2 * price,
			Currency:      "KRW",
			CreatedAt:     now,
			Release:       s.rel.Version,
		})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
