// Package metricstest scrapes a /metrics endpoint in tests, over real
// HTTP, and reads the samples as a Prometheus server would see them.
package metricstest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Samples are one scrape's samples, keyed by the series as the text format
// writes it: name{label="value",...} with the labels in name order (as
// client_golang writes them), or the bare name without labels.
type Samples map[string]float64

// Scrape GETs url (a /metrics endpoint) and parses the text exposition.
func Scrape(t testing.TB, url string) Samples {
	t.Helper()
	s, err := Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Get is Scrape returning its error (for polling while a server starts).
func Get(url string) (Samples, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("scrape %s: HTTP %d: %s", url, resp.StatusCode, b)
	}
	return Parse(resp.Body)
}

// Parse reads the text exposition format (comments skipped).
func Parse(r io.Reader) (Samples, error) {
	out := Samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("line %d: %q is no sample (want: series value)", n, line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value of %q: %w", n, line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the exposition: %w", err)
	}
	return out, nil
}

// Series is the key of name with labels given as name, value pairs.
func Series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	if len(labels)%2 != 0 {
		panic("metricstest.Series: labels must be name, value pairs")
	}
	pairs := make([]string, 0, len(labels)/2)
	for i := 0; i < len(labels); i += 2 {
		pairs = append(pairs, labels[i]+"="+strconv.Quote(labels[i+1]))
	}
	slices.Sort(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// Value is the sample of name with labels (name, value pairs); ok is false
// when the scrape has no such series.
func (s Samples) Value(name string, labels ...string) (v float64, ok bool) {
	v, ok = s[Series(name, labels...)]
	return v, ok
}

// Family returns every series of the metric name (name{...} or name).
func (s Samples) Family(name string) Samples {
	out := Samples{}
	for k, v := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			out[k] = v
		}
	}
	return out
}
