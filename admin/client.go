package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client talks to the admin API (the CLI's subcommands use it).
type Client struct {
	Base string // e.g. http://127.0.0.1:9469
	HTTP *http.Client
}

// NewClient returns a client for an admin TCP address (host:port): it reaches /metrics,
// /healthz and /readyz only, unless a proxy in front of the socket listens there.
func NewClient(listen string) *Client {
	return &Client{Base: "http://" + listen, HTTP: &http.Client{}}
}

// NewSocketClient returns a client for the admin Unix socket at path (the whole API).
func NewSocketClient(path string) *Client {
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{Base: "http://edgegate", HTTP: &http.Client{Transport: tr}}
}

// open sends a request without a body and returns the response of a 200 answer; any other
// status becomes the API's error. The caller closes the body.
func (c *Client) open(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	u := c.Base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	resp, err := c.open(ctx, method, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("admin API %s: decode: %w", path, err)
	}
	return nil
}

func apiError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("admin API: %s: %s", resp.Status, e.Error)
	}
	return fmt.Errorf("admin API: %s: %s", resp.Status, strings.TrimSpace(string(b)))
}

// Flows lists flows matching f.
func (c *Client) Flows(ctx context.Context, f FlowFilter) ([]Flow, error) {
	out := []Flow{}
	err := c.EachFlow(ctx, f, func(fl *Flow) error {
		out = append(out, *fl)
		return nil
	})
	return out, err
}

// EachFlow calls fn for each flow matching f as the server streams them.
func (c *Client) EachFlow(ctx context.Context, f FlowFilter, fn func(*Flow) error) error {
	resp, err := c.open(ctx, http.MethodGet, "/conntrack", f.Values())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return fmt.Errorf("admin API /conntrack: want a JSON array: %v", err)
	}
	var fl Flow
	for dec.More() {
		fl = Flow{}
		if err := dec.Decode(&fl); err != nil {
			return fmt.Errorf("admin API /conntrack: decode: %w", err)
		}
		if err := fn(&fl); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("admin API /conntrack: truncated listing: %w", err)
	}
	return nil
}

// DeleteFlows deletes flows matching f; an empty filter needs all.
func (c *Client) DeleteFlows(ctx context.Context, f FlowFilter, all bool) (int, error) {
	q := f.Values()
	if all {
		q.Set("all", "true")
	}
	var out struct{ Deleted int }
	err := c.do(ctx, http.MethodDelete, "/conntrack", q, &out)
	return out.Deleted, err
}

// Status fetches /status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/status", nil, &st)
	return st, err
}

// Capture streams a pcap capture into w and returns the bytes written.
func (c *Client) Capture(ctx context.Context, r CaptureRequest, w io.Writer) (int64, error) {
	q := url.Values{}
	if r.Count > 0 {
		q.Set("count", strconv.Itoa(r.Count))
	}
	if r.Duration > 0 {
		q.Set("duration", r.Duration.String())
	}
	if r.Snaplen > 0 {
		q.Set("snaplen", strconv.Itoa(r.Snaplen))
	}
	if r.Filter != "" {
		q.Set("filter", r.Filter)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/capture?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, apiError(resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil && ctx.Err() != nil {
		err = nil // interrupted by the caller: what arrived is a valid pcap prefix
	}
	return n, err
}
