package activities

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/premiscale/premiscale/config"
)

// Prometheus runs the groups' checks. It holds the client, so credentials
// stay in the worker and never enter workflow history.
type Prometheus struct {
	api     promv1.API
	timeout time.Duration
}

// NewPrometheus builds the query client from the controller's prometheus
// section (auth, TLS and headers through prometheus/common's HTTP client
// config). An empty address yields a Prometheus whose queries all fail with
// a clear error, so groups without checks run without one.
func NewPrometheus(c config.Prometheus) (*Prometheus, error) {
	p := &Prometheus{timeout: c.QueryTimeout}
	if p.timeout <= 0 {
		p.timeout = config.DefaultQueryTimeout
	}
	if c.Address == "" {
		return p, nil
	}
	hc := promconfig.HTTPClientConfig{
		FollowRedirects: true,
		EnableHTTP2:     true,
		BearerTokenFile: c.BearerTokenFile,
		TLSConfig: promconfig.TLSConfig{
			CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
			ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify,
		},
	}
	if c.BearerToken != "" {
		hc.BearerToken = promconfig.Secret(c.BearerToken)
	}
	if c.BasicAuth.Username != "" {
		hc.BasicAuth = &promconfig.BasicAuth{
			Username: c.BasicAuth.Username, Password: promconfig.Secret(c.BasicAuth.Password), PasswordFile: c.BasicAuth.PasswordFile,
		}
	}
	if len(c.Headers) > 0 {
		hc.HTTPHeaders = &promconfig.Headers{Headers: map[string]promconfig.Header{}}
		for k, v := range c.Headers {
			hc.HTTPHeaders.Headers[k] = promconfig.Header{Secrets: []promconfig.Secret{promconfig.Secret(v)}}
		}
	}
	if err := hc.Validate(); err != nil {
		return nil, fmt.Errorf("controller.prometheus: %w", err)
	}
	rt, err := promconfig.NewRoundTripperFromConfig(hc, "premiscale")
	if err != nil {
		return nil, fmt.Errorf("controller.prometheus: %w", err)
	}
	client, err := api.NewClient(api.Config{Address: c.Address, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("controller.prometheus.address: %w", err)
	}
	p.api = promv1.NewAPI(client)
	return p, nil
}

// NamedQuery is one check's query.
type NamedQuery struct {
	Name  string `json:"name"`
	Query string `json:"query"`
}

// QueryInput lists the checks to evaluate together.
type QueryInput struct {
	Queries []NamedQuery `json:"queries"`
}

// QueryResult is one check's value, or why there is none.
type QueryResult struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Error is empty on success. It is a value, not an activity failure, so
	// that one broken check does not hide the others.
	Error string `json:"error,omitempty"`
}

// QueryOutput holds one result per query, in order.
type QueryOutput struct {
	Results []QueryResult `json:"results"`
}

// Query evaluates every query at the current time, in parallel, each
// bounded by the query timeout. A query must return exactly one finite
// sample (an instant vector of one series, or a scalar); anything else —
// no data, several series, NaN, ±Inf, a timeout, an HTTP or PromQL error —
// is that check's Error. Read-only: always safe to retry.
func (p *Prometheus) Query(ctx context.Context, in QueryInput) (QueryOutput, error) {
	out := QueryOutput{Results: make([]QueryResult, len(in.Queries))}
	now := time.Now()
	var wg sync.WaitGroup
	for i, q := range in.Queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := p.one(ctx, q.Query, now)
			out.Results[i] = QueryResult{Name: q.Name, Value: v}
			if err != nil {
				out.Results[i] = QueryResult{Name: q.Name, Error: err.Error()}
			}
		}()
	}
	wg.Wait()
	return out, nil
}

func (p *Prometheus) one(ctx context.Context, query string, at time.Time) (float64, error) {
	if p.api == nil {
		return 0, errors.New("controller.prometheus.address is not set")
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	val, _, _, err := p.api.Query(ctx, query, at, promv1.WithTimeout(p.timeout))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("query timed out after %s", p.timeout)
		}
		return 0, fmt.Errorf("query failed: %w", err)
	}
	var f float64
	switch v := val.(type) {
	case model.Vector:
		switch len(v) {
		case 0:
			return 0, errors.New("query returned no data")
		case 1:
			f = float64(v[0].Value)
		default:
			return 0, fmt.Errorf("query returned %d series; it must return exactly one (aggregate it, e.g. avg(...))", len(v))
		}
	case *model.Scalar:
		f = float64(v.Value)
	default:
		return 0, fmt.Errorf("query returned a %s; it must return one sample", val.Type())
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("query returned %v", f)
	}
	return f, nil
}
