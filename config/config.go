package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"

	"gopkg.in/yaml.v3"
)

// Scheduler is a service's scheduler (the key "scheduler"); the values are the YAML spellings.
type Scheduler string

// Affinity is a service's session_affinity.
type Affinity string

// SourceNAT is a service's source_nat.
type SourceNAT string

// AllUnhealthy is a health check's all_unhealthy policy.
type AllUnhealthy string

// Accepted values of the enumerated keys (exported so other packages and docs share one list).
const (
	SchedulerRandom             Scheduler = "random"
	SchedulerRoundRobin         Scheduler = "round_robin"
	SchedulerWeightedRoundRobin Scheduler = "weighted_round_robin"
	SchedulerLeastConn          Scheduler = "least_conn"
	SchedulerTwoChoices         Scheduler = "two_choices"
	SchedulerSourceHash         Scheduler = "source_hash"
	SchedulerMaglev             Scheduler = "maglev"

	AffinityNone     Affinity = "none"
	AffinityClientIP Affinity = "client_ip"

	SourceNATMasquerade SourceNAT = "masquerade"
	SourceNATNone       SourceNAT = "none"

	AllUnhealthyFailOpen AllUnhealthy = "fail_open"
	AllUnhealthyRefuse   AllUnhealthy = "refuse"
)

// Accepted values of the other enumerated keys.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"

	HealthTCP  = "tcp"
	HealthHTTP = "http"

	AdminOff = "off"
)

// Schedulers are the scheduler names the lb package implements (the same list as lb.Schedulers;
// a test keeps them equal).
var Schedulers = []Scheduler{
	SchedulerRandom, SchedulerRoundRobin, SchedulerWeightedRoundRobin, SchedulerLeastConn,
	SchedulerTwoChoices, SchedulerSourceHash, SchedulerMaglev,
}

// maxFileSize bounds what Load reads: a config is kilobytes; anything near this is a mistake.
const maxFileSize = 16 << 20

// Load reads, defaults and validates the config file at path. On problems it returns an Errors
// listing all of them with file:line:column.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, maxFileSize)
	}
	return Parse(data, path)
}

// Parse decodes data (source names it in messages and anchors relative certificate paths),
// applies defaults once and validates. The returned Config is never mutated afterwards; on
// problems the error is an Errors with every problem found.
func Parse(data []byte, source string) (*Config, error) {
	root, err := parseNode(data)
	if err != nil {
		return nil, Errors{yamlSyntaxError(err, source)}
	}
	d := newDecoder(source)
	c := &Config{Source: source}
	if root != nil {
		d.budget = nodeBudget(root)
		d.decode(root, reflect.ValueOf(c).Elem(), "")
	}
	if !d.capped && d.nodes <= d.budget {
		// Validate even after decode errors so one run reports every problem.
		d.validating = true
		v := &validator{decoder: d, c: c, root: root}
		v.defaults()
		v.validate()
		c.index()
	}
	if len(d.errs) > 0 {
		return nil, sortErrors(d.errs)
	}
	return c, nil
}

// parseNode returns the content node of the single YAML document in data (nil when empty).
func parseNode(data []byte) (n *yaml.Node, err error) {
	defer func() {
		// yaml.v3 has panicked on malformed input before; a config error must never crash.
		if r := recover(); r != nil {
			n, err = nil, fmt.Errorf("yaml: malformed document (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: only one YAML document is allowed", extra.Line)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// Effective returns the config with every default applied, as YAML (for the admin /config
// endpoint and "what is really running" questions). It parses back to an equal Config.
func (c *Config) Effective() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, fmt.Errorf("config: marshal effective config: %w", err)
	}
	prune(&n)
	b, err := yaml.Marshal(&n)
	if err != nil {
		return nil, fmt.Errorf("config: marshal effective config: %w", err)
	}
	return b, nil
}

// prune drops mapping entries that carry nothing: null, "", [] and {}. Each of them decodes to
// the same value as an absent key, so the dump stays exact while showing only what matters.
// (Zero numbers stay: for some keys an explicit 0 differs from the default.)
func prune(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			v := n.Content[i+1]
			prune(v)
			empty := (v.Kind == yaml.ScalarNode && (v.ShortTag() == "!!null" || (v.ShortTag() == "!!str" && v.Value == ""))) ||
				((v.Kind == yaml.SequenceNode || v.Kind == yaml.MappingNode) && len(v.Content) == 0)
			if !empty {
				kept = append(kept, n.Content[i], v)
			}
		}
		n.Content = kept
		return
	}
	for _, c := range n.Content {
		prune(c)
	}
}

// ServiceByName returns the named service, or nil. A map lookup for configs from Parse; a
// linear scan for ones built as literals (tests), which have no index.
func (c *Config) ServiceByName(name string) *Service {
	if c.services == nil {
		for i := range c.Services {
			if c.Services[i].Name == name {
				return &c.Services[i]
			}
		}
		return nil
	}
	if i, ok := c.services[name]; ok {
		return &c.Services[i]
	}
	return nil
}

// EgressByName returns the named egress rule, or nil.
func (c *Config) EgressByName(name string) *Egress {
	for i := range c.Egress {
		if c.Egress[i].Name == name {
			return &c.Egress[i]
		}
	}
	return nil
}

// Port returns the service port with the given number and protocol, or nil.
func (s *Service) Port(proto string, port uint16) *ServicePort {
	for i := range s.Ports {
		if s.Ports[i].Port == port && s.Ports[i].Protocol == proto {
			return &s.Ports[i]
		}
	}
	return nil
}

func (c *Config) index() {
	c.services = make(map[string]int, len(c.Services))
	for i, s := range c.Services {
		c.services[s.Name] = i
	}
}
