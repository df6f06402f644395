package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// base is a minimal valid config that invalid cases extend or break.
const base = `nat:
  masquerade_addresses: [198.18.250.1]
services:
  - name: web
    addresses: [198.18.200.10]
    ports:
      - port: 80
    backends:
      - address: 198.19.1.2
`

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"empty file", "", func(t *testing.T, c *Config) {
			if c.TUN.Name != "edge0" || len(c.Services) != 0 {
				t.Errorf("got %+v", c.TUN)
			}
		}},
		{"minimal", base, func(t *testing.T, c *Config) {
			s := c.ServiceByName("web")
			if s == nil || s.Ports[0].TargetPort != 80 || s.Ports[0].Protocol != "tcp" {
				t.Fatalf("service defaults not applied: %+v", s)
			}
		}},
		{"durations as integers are seconds", base + `    session_affinity: client_ip
    session_affinity_timeout: 60
`, func(t *testing.T, c *Config) {
			if got := c.Services[0].AffinityTimeout(); got != time.Minute {
				t.Errorf("affinity timeout = %v, want 1m", got)
			}
		}},
		{"source_nat none needs no masquerade address", `services:
  - name: direct
    addresses: [192.0.2.10]
    source_nat: none
    ports: [{port: 443, protocol: udp, target_port: 8443, node_port: 30443}]
    backends: [{address: 198.51.100.7, weight: 0}]
`, func(t *testing.T, c *Config) {
			s := c.Services[0]
			if s.Masquerade() || s.Ports[0].TargetPort != 8443 || s.Backends[0].Weight != 0 {
				t.Errorf("got %+v", s)
			}
		}},
		{"yaml anchors and merge keys", `nat:
  masquerade_addresses: [198.18.250.1]
x-common: &common
  addresses: [198.18.200.10]
  ports: [{port: 80}]
services:
  - <<: *common
    name: a
    backends: &bk [{address: 198.19.1.2}]
`, nil},
		{"earlier merge sources win", `x-a: &a {level: debug}
x-b: &b {level: error, format: json}
log:
  <<: [*a, *b]
`, func(t *testing.T, c *Config) {
			if c.Log != (Log{Format: "json", Level: "debug"}) {
				t.Errorf("log = %+v, want json/debug", c.Log)
			}
		}},
		{"explicit keys beat merged ones", "x-a: &a {level: debug}\nlog: {<<: *a, level: warn}\n", func(t *testing.T, c *Config) {
			if c.Log.Level != "warn" {
				t.Errorf("level = %q, want warn", c.Log.Level)
			}
		}},
		{"explicit zero txqueuelen kept", "tun: {txqueuelen: 0}\n", func(t *testing.T, c *Config) {
			if c.TUN.TxQueueLen != 0 {
				t.Errorf("txqueuelen = %d, want 0", c.TUN.TxQueueLen)
			}
		}},
		{"offload false", "tun: {offload: false, manage_routes: false}\n", func(t *testing.T, c *Config) {
			if c.TUN.Offload || c.TUN.ManageRoutes {
				t.Error("offload/manage_routes false not honoured")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "t.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// ingressBase appends to base: an ingress with one plain listener; more listener keys may follow.
const ingressBase = `ingress:
  listeners:
    - name: plain
      address: :8080
`

// routeBase is a routes section with route "r": routeKeys go under the route, ruleKeys under its
// first rule, which already has a backend.
func routeBase(routeKeys, ruleKeys string) string {
	return "  routes:\n    - name: r\n" + routeKeys + "      rules:\n        - backends: [{service: web}]\n" + ruleKeys
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // one expected line of the error output (file:line:col: msg)
	}{
		{"unknown top-level key", "tunn: {}\n", `t.yaml:1:1: document: unknown key "tunn" (did you mean "tun"?)`},
		{"unknown nested key", "tun:\n  mut: 1500\n", `t.yaml:2:3: tun: unknown key "mut" (did you mean "mtu"?)`},
		{"misspelt key", base + "    schedular: maglev\n", `t.yaml:10:5: services[0]: unknown key "schedular" (did you mean "scheduler"?)`},
		{"unknown key far from any", "tun:\n  colour: red\n", `t.yaml:2:3: tun: unknown key "colour" (known: manage_routes, mtu, name, offload, persist, queues, route_table, syn_burst, syn_proxy, syn_rate_limit, txqueuelen)`},
		{"wrong type", "tun:\n  mtu: big\n", `t.yaml:2:8: tun.mtu: want an integer, got "big"`},
		{"list for scalar", "tun:\n  name: [a]\n", `t.yaml:2:9: tun.name: want a string, got a list`},
		{"bad duration", base + "    session_affinity_timeout: soon\n", `t.yaml:10:31: services[0].session_affinity_timeout: want a duration such as "30s" or an integer number of seconds, got "soon"`},
		{"negative duration", "conntrack:\n  timeouts: {udp: -5s}\n", `t.yaml:2:19: conntrack.timeouts.udp: duration must not be negative`},
		{"bad port range", "nat:\n  port_range: 2000-1000\n", `t.yaml:2:15: nat.port_range: port range "2000-1000": want 1 <= low <= high <= 65535`},
		{"bad address", "nat:\n  masquerade_addresses: [198.18.250.300]\n", `t.yaml:2:26: nat.masquerade_addresses[0]: want an IP address, got "198.18.250.300"`},
		{"duplicate key", "tun:\n  mtu: 1500\n  mtu: 9000\n", `t.yaml:3:3: tun.mtu: duplicate key (first at line 2)`},
		{"two documents", "tun: {}\n---\nlog: {}\n", `only one YAML document is allowed`},
		{"syntax error", "tun:\n  mtu: 1\n bad\n", `t.yaml:2: invalid YAML: did not find expected key`},
		{"mtu too small", "tun:\n  mtu: 500\n", `t.yaml:2:8: tun.mtu: 500 out of range 576..65535`},
		{"mtu too small for ipv6", "tun:\n  mtu: 1000\nnode_ports:\n  addresses: [2001:db8::1]\n", `t.yaml:2:8: tun.mtu: 1000 out of range 1280..65535 (IPv6 addresses are configured, so at least 1280)`},
		{"queues", "tun: {queues: 65}\n", `t.yaml:1:15: tun.queues: 65 out of range 1..64`},
		{"explicit zero queues", "tun: {queues: 0}\n", `t.yaml:1:15: tun.queues: 0 out of range 1..64`},
		{"checkpoint path relative", "conntrack: {checkpoint: {path: cp.json}}\n", `t.yaml:1:32: conntrack.checkpoint.path: "cp.json" must be an absolute file path`},
		{"checkpoint interval", "conntrack: {checkpoint: {path: /var/lib/edgegate/cp.json, interval: 100ms}}\n", `t.yaml:1:69: conntrack.checkpoint.interval: 100ms is below the minimum 1s`},
		{"reserved route table", "tun: {route_table: 254}\n", `t.yaml:1:20: tun.route_table: 254 is a reserved table`},
		{"long tun name", "tun: {name: abcdefghijklmnopq}\n", `t.yaml:1:13: tun.name: "abcdefghijklmnopq" is not a valid interface name`},
		{"bad service name", strings.Replace(base, "name: web", "name: Web_1", 1), `t.yaml:4:11: services[0]: name "Web_1" must be a DNS label`},
		{"missing service name", strings.Replace(base, "  - name: web\n    addresses", "  - addresses", 1), `t.yaml:4:5: services[0]: name is required`},
		{"duplicate service name", base + strings.TrimPrefix(strings.Replace(base, "198.18.200.10", "198.18.200.11", 1), "nat:\n  masquerade_addresses: [198.18.250.1]\nservices:\n"), `t.yaml:10:11: services[1]: duplicate name "web" (first at line 4)`},
		{"unknown scheduler", base + "    scheduler: fastest\n", `t.yaml:10:16: service "web": scheduler: unknown value "fastest" (want one of: random, round_robin, weighted_round_robin, least_conn, two_choices, source_hash, maglev)`},
		{"maglev size not prime", base + "    scheduler: maglev\n    maglev_table_size: 65536\n", `t.yaml:11:24: service "web": maglev_table_size 65536 must be a prime`},
		{"port zero", strings.Replace(base, "port: 80", "port: 0", 1), `t.yaml:7:15: service "web": ports[0].port: a port 1..65535 is required`},
		{"port missing", strings.Replace(base, "- port: 80", "- name: http", 1), `t.yaml:7:9: service "web": ports[0].port: a port 1..65535 is required`},
		{"bad protocol", strings.Replace(base, "port: 80", "port: 80\n        protocol: sctp", 1), `t.yaml:8:19: service "web": ports[0].protocol: unknown value "sctp" (want one of: tcp, udp)`},
		{"same port twice", strings.Replace(base, "- port: 80", "- port: 80\n      - port: 80", 1), `t.yaml:8:15: service "web": ports[1].port: tcp/80 is already served by this service (line 7)`},
		{"no addresses", strings.Replace(base, "    addresses: [198.18.200.10]\n", "", 1), `t.yaml:4:5: service "web": at least one address is required`},
		{"empty backends", strings.Replace(base, "    backends:\n      - address: 198.19.1.2\n", "    backends: []\n", 1), `t.yaml:8:15: service "web": at least one backend is required`},
		{"no masquerade address", strings.TrimPrefix(base, "nat:\n  masquerade_addresses: [198.18.250.1]\n"), `t.yaml:7:18: service "web": backends[0]: source_nat masquerade needs an IPv4 address in nat.masquerade_addresses for backend 198.19.1.2`},
		{"backend is a service address", strings.Replace(base, "address: 198.19.1.2", "address: 198.18.200.10", 1), `t.yaml:9:18: service "web": backend 198.18.200.10 is the address of service "web" (line 5); traffic to it would loop into edgegate`},
		{"backend is the masquerade address", strings.Replace(base, "address: 198.19.1.2", "address: 198.18.250.1", 1), `t.yaml:9:18: service "web": backend 198.18.250.1 is the masquerade address (line 2)`},
		{"service address is masquerade address", strings.Replace(base, "[198.18.200.10]", "[198.18.250.1]", 1), `t.yaml:5:17: service "web": address 198.18.250.1 is already the masquerade address (line 2)`},
		{"family mismatch", strings.Replace(base, "address: 198.19.1.2", "address: 2001:db8::2", 1), `t.yaml:9:18: service "web": backends[0]: IPv6 backend 2001:db8::2 but the service has no IPv6 address`},
		{"duplicate backend", base + "      - address: 198.19.1.2\n", `t.yaml:10:18: service "web": backends[1]: duplicate backend 198.19.1.2 (first at line 9)`},
		{"negative weight", base + "        weight: -1\n", `t.yaml:10:17: service "web": backends[0].weight: -1 out of range 0..65535`},
		{"bad affinity", base + "    session_affinity: cookie\n", `t.yaml:10:23: service "web": session_affinity: unknown value "cookie" (want one of: none, client_ip)`},
		{"bad source nat", base + "    source_nat: snat\n", `t.yaml:10:17: service "web": source_nat: unknown value "snat" (want one of: masquerade, none)`},
		{"node port reused", base + `  - name: api
    addresses: [198.18.200.11]
    ports: [{port: 80, node_port: 30080}]
    backends: [{address: 198.19.1.3}]
  - name: api2
    addresses: [198.18.200.12]
    ports: [{port: 80, node_port: 30080}]
    backends: [{address: 198.19.1.4}]
`, `t.yaml:16:35: service "api2": ports[0].node_port: tcp node port 30080 is already used (line 12)`},
		{"address shared across services", base + `  - name: api
    addresses: [198.18.200.10]
    ports: [{port: 81}]
    backends: [{address: 198.19.1.3}]
`, `t.yaml:11:17: service "api": address 198.18.200.10 is already the address of service "web" (line 5)`},
		{"max entries", "conntrack: {max_entries: 8}\n", `t.yaml:1:26: conntrack.max_entries: 8 is below the minimum 16`},
		{"log level", "log: {level: verbose}\n", `t.yaml:1:14: log.level: unknown value "verbose" (want one of: debug, info, warn, error)`},
		{"log format", "log: {format: xml}\n", `t.yaml:1:15: log.format: unknown value "xml" (want one of: text, json)`},
		{"admin listen", "admin: {listen: 'nohost'}\n", `t.yaml:1:17: admin.listen: "nohost" is not host:port (or "off")`},
		{"admin socket relative", "admin: {socket: admin.sock}\n", `t.yaml:1:17: admin.socket: "admin.sock": want an absolute path (or "off")`},
		{"admin socket too long", "admin: {socket: /" + strings.Repeat("s", 107) + "}\n", `t.yaml:1:17: admin.socket: "/` + strings.Repeat("s", 107) + `": longer than 107 bytes (the kernel's limit for a socket path) (or "off")`},
		{"admin socket group without socket", "admin: {socket: 'off', socket_group: adm}\n", `t.yaml:1:38: admin.socket_group: set while admin.socket is off`},
		{"egress without pool", "egress:\n  - name: pods\n    sources: [198.18.64.0/18]\n", `t.yaml:2:5: egress "pods": at least one pool address is required`},
		{"egress host bits", "egress:\n  - name: pods\n    sources: [198.18.64.1/18]\n    addresses: [203.0.113.1]\n", `t.yaml:3:15: egress "pods": sources[0]: prefix 198.18.64.1/18 has host bits set (did you mean 198.18.64.0/18?)`},
		{"egress family mismatch", "egress:\n  - name: pods\n    sources: [198.18.64.0/18]\n    addresses: [2001:db8::1]\n", `t.yaml:4:17: egress "pods": IPv6 pool address 2001:db8::1 but no IPv6 source`},
		{"egress sources overlap", "egress:\n  - name: a\n    sources: [198.18.64.0/18]\n    addresses: [203.0.113.1]\n  - name: b\n    sources: [198.18.64.0/24]\n    addresses: [203.0.113.2]\n", `t.yaml:6:15: egress "b": source 198.18.64.0/24 overlaps 198.18.64.0/18 of egress "a" (line 3)`},
		{"health check timeout", base + "    health_check: {interval: 1s, timeout: 2s}\n", `t.yaml:10:43: service "web": health_check.timeout: 2s is longer than the interval 1s`},
		{"health check type", base + "    health_check: {type: icmp}\n", `t.yaml:10:26: service "web": health_check.type: unknown value "icmp" (want one of: tcp, http)`},
		{"ingress without listeners", base + "ingress: {}\n", `t.yaml:10:10: ingress: at least one listener is required`},
		{"listener address", base + ingressBase + "    - name: bad\n      address: example.com:80\n", `t.yaml:15:16: listener "bad": address "example.com:80": host must be an IP address, localhost or empty`},
		{"listener address conflicts with admin", base + ingressBase + "    - name: adm\n      address: 127.0.0.1:9469\n", `t.yaml:15:16: listener "adm": address 127.0.0.1:9469 conflicts with admin.listen (default)`},
		{"listener wildcard conflict", base + ingressBase + "    - name: any\n      address: :8080\n", `t.yaml:15:16: listener "any": address :8080 conflicts with listener "plain" (line 13)`},
		{"listener protocol", base + ingressBase + "      protocol: spdy\n", `t.yaml:14:17: listener "plain": protocol: unknown value "spdy" (want one of: http, https)`},
		{"https without certs", base + ingressBase + "      protocol: https\n", `t.yaml:14:17: listener "plain": https needs at least one tls certificate`},
		{"missing cert file", base + ingressBase + "      protocol: https\n      tls: [{cert_file: nope.crt, key_file: nope.key}]\n", `t.yaml:15:25: listener "plain": tls[0]: load certificate `},
		{"tls on http", base + ingressBase + "      tls: [{cert_file: a, key_file: b}]\n", `t.yaml:14:12: listener "plain": tls is only used with protocol https`},
		{"route unknown listener", base + ingressBase + routeBase("      listeners: [nope]\n", ""), `t.yaml:16:19: route "r": listeners[0]: no listener named "nope"`},
		{"route bad hostname", base + ingressBase + routeBase("      hostnames: [\"foo.*.com\"]\n", ""), `t.yaml:16:19: route "r": hostnames[0]: "foo.*.com" must be lowercase DNS labels separated by dots, optionally with a leading "*."`},
		{"route ip hostname", base + ingressBase + routeBase("      hostnames: [192.0.2.1]\n", ""), `t.yaml:16:19: route "r": hostnames[0]: "192.0.2.1" must be a host name, not an IP address`},
		{"path type", base + ingressBase + routeBase("", "          matches: [{path: {type: glob, value: /x}}]\n"), `t.yaml:18:35: route "r": rules[0].matches[0].path.type: unknown value "glob" (want one of: exact, prefix, regex)`},
		{"path must start with slash", base + ingressBase + routeBase("", "          matches: [{path: {type: exact, value: x}}]\n"), `t.yaml:18:49: route "r": rules[0].matches[0].path.value: "x" must start with '/'`},
		{"regex does not compile", base + ingressBase + routeBase("", "          matches: [{path: {type: regex, value: \"/(\"}}]\n"), `t.yaml:18:49: route "r": rules[0].matches[0].path.value: error parsing regexp: missing closing ): ` + "`/(`"},
		{"bad method", base + ingressBase + routeBase("", "          matches: [{method: FETCH}]\n"), `t.yaml:18:30: route "r": rules[0].matches[0].method: unknown method "FETCH" (want one of: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)`},
		{"header match type", base + ingressBase + routeBase("", "          matches: [{headers: [{name: x-a, type: glob, value: b}]}]\n"), `t.yaml:18:50: route "r": rules[0].matches[0].headers[0].type: unknown value "glob" (want one of: exact, regex)`},
		{"header match name", base + ingressBase + routeBase("", "          matches: [{headers: [{name: \"a b\", value: b}]}]\n"), `t.yaml:18:39: route "r": rules[0].matches[0].headers[0].name: "a b" is not a valid header name`},
		{"query regex", base + ingressBase + routeBase("", "          matches: [{query_params: [{name: q, type: regex, value: \"[\"}]}]\n"), `t.yaml:18:67: route "r": rules[0].matches[0].query_params[0].value: error parsing regexp: missing closing ]: ` + "`[`"},
		{"empty filter", base + ingressBase + routeBase("", "          filters: [{}]\n"), `t.yaml:18:21: route "r": rules[0].filters[0]: a filter needs exactly one of request_headers, response_headers, redirect, url_rewrite, mirror`},
		{"two fields in a filter", base + ingressBase + routeBase("", "          filters: [{request_headers: {remove: [x]}, response_headers: {remove: [y]}}]\n"), `t.yaml:18:21: route "r": rules[0].filters[0]: a filter has exactly one field, got request_headers and response_headers`},
		{"redirect status", base + ingressBase + "  routes:\n    - name: r\n      rules:\n        - filters: [{redirect: {status_code: 303}}]\n", `t.yaml:17:46: route "r": rules[0].filters[0].redirect.status_code: 303 is not a redirect status (want 301, 302, 307 or 308)`},
		{"redirect with backends", base + ingressBase + routeBase("", "          filters: [{redirect: {scheme: https}}]\n"), `t.yaml:17:21: route "r": rules[0]: backends are never used by a rule with a redirect filter`},
		{"rule without backends", base + ingressBase + "  routes:\n    - name: r\n      rules:\n        - timeout: 1s\n", `t.yaml:17:11: route "r": rules[0]: at least one backend (or a redirect filter) is required`},
		{"prefix rewrite needs prefix match", base + ingressBase + routeBase("", "          matches: [{path: {type: exact, value: /a}}]\n          filters: [{url_rewrite: {path: {type: prefix, value: /b}}}]\n"), `t.yaml:19:49: route "r": rules[0].filters[0].url_rewrite.path.type: prefix rewrite needs every match of the rule to be a prefix path match`},
		{"rewrite type", base + ingressBase + routeBase("", "          filters: [{url_rewrite: {path: {type: regex, value: /b}}}]\n"), `t.yaml:18:49: route "r": rules[0].filters[0].url_rewrite.path.type: unknown value "regex" (want one of: full, prefix)`},
		{"backend unknown service", base + ingressBase + "  routes:\n    - name: r\n      rules:\n        - backends: [{service: nope}]\n", `t.yaml:17:32: route "r": rules[0].backends[0].service: no service named "nope"`},
		{"backend unknown port", base + ingressBase + "  routes:\n    - name: r\n      rules:\n        - backends: [{service: web, port: 81}]\n", `t.yaml:17:43: route "r": rules[0].backends[0].port: service "web" has no TCP port 81`},
		{"backend weight", base + ingressBase + "  routes:\n    - name: r\n      rules:\n        - backends: [{service: web, weight: -2}]\n", `t.yaml:17:45: route "r": rules[0].backends[0].weight: -2 out of range 0..65535`},
		{"backend protocol", base + ingressBase + "  routes:\n    - name: r\n      rules:\n        - backends: [{service: web, protocol: grpc}]\n", `t.yaml:17:47: route "r": rules[0].backends[0].protocol: unknown value "grpc" (want one of: http, h2c)`},
		{"retries", base + ingressBase + routeBase("", "          retries: 6\n"), `t.yaml:18:20: route "r": rules[0].retries: 6 out of range 0..5`},
		{"duplicate route", base + ingressBase + routeBase("", "") + "    - name: r\n      rules: [{backends: [{service: web}]}]\n", `t.yaml:18:13: ingress.routes[1]: duplicate name "r" (first at line 15)`},
		{"egress pool is a service address", base + "egress:\n  - name: pods\n    sources: [198.19.0.0/16]\n    addresses: [198.18.200.10]\n", `t.yaml:13:17: egress "pods": pool address 198.18.200.10 is already the address of service "web" (line 5)`},
		{"backend is an egress pool address", base + "egress:\n  - name: pods\n    sources: [198.19.0.0/17]\n    addresses: [198.18.200.99]\n  - name: more\n    sources: [198.19.128.0/17]\n    addresses: [198.19.1.2]\n", `t.yaml:9:18: service "web": backend 198.19.1.2 is the pool address of egress "more" (line 16)`},
		{"duplicate masquerade address", "nat:\n  masquerade_addresses: [198.18.250.1, 198.18.250.1]\n", `t.yaml:2:40: nat.masquerade_addresses[1]: duplicate address 198.18.250.1 (first at line 2)`},
		{"duplicate node address", "node_ports:\n  addresses:\n    - 192.0.2.1\n    - 192.0.2.1\n", `t.yaml:4:7: node_ports.addresses[1]: duplicate address 192.0.2.1 (first at line 3)`},
		{"ipv4-mapped address", "nat:\n  masquerade_addresses: ['::ffff:198.18.250.1']\n", `t.yaml:2:26: nat.masquerade_addresses[0]: address ::ffff:198.18.250.1 is IPv4-mapped; write it as 198.18.250.1`},
		{"zoned address", "node_ports:\n  addresses: ['2001:db8::1%eth0']\n", `t.yaml:2:15: node_ports.addresses[0]: address 2001:db8::1%eth0 must not have a zone`},
		{"loopback address", strings.Replace(base, "198.18.200.10", "127.0.0.1", 1), `t.yaml:5:17: service "web": addresses[0]: address 127.0.0.1 is not a usable unicast address`},
		{"maglev table smaller than backends", base + "      - address: 198.19.1.3\n      - address: 198.19.1.4\n    maglev_table_size: 2\n", `t.yaml:12:24: service "web": maglev_table_size 2 is smaller than the number of backends (3)`},
		{"health check status", base + "    health_check: {type: http, expect_status: 600}\n", `t.yaml:10:47: service "web": health_check.expect_status: 600 is not an HTTP status 100..599`},
		{"health check threshold", base + "    health_check: {healthy_threshold: 0}\n", `t.yaml:10:39: service "web": health_check.healthy_threshold: must be at least 1`},
		{"health check all_unhealthy", base + "    health_check: {all_unhealthy: panic}\n", `t.yaml:10:35: service "web": health_check.all_unhealthy: unknown value "panic" (want one of: fail_open, refuse)`},
		{"duplicate listener", base + ingressBase + "    - name: plain\n      address: :8081\n", `t.yaml:14:13: ingress.listeners[1]: duplicate name "plain" (first at line 12)`},
		{"trusted proxy host bits", base + "ingress:\n  trusted_proxies: [192.0.2.1/24]\n  listeners: [{name: l, address: ':80'}]\n", `t.yaml:11:21: ingress.trusted_proxies[0]: prefix 192.0.2.1/24 has host bits set (did you mean 192.0.2.0/24?)`},
		{"send timeout", base + "ingress:\n  send_timeout: 0s\n  listeners: [{name: l, address: ':80'}]\n", `t.yaml:11:17: ingress.send_timeout: must be positive`},
		{"max upgraded connections", base + "ingress:\n  max_upgraded_connections: 0\n  listeners: [{name: l, address: ':80'}]\n", `t.yaml:11:29: ingress.max_upgraded_connections: must be at least 1`},
		{"max header bytes", base + "ingress:\n  max_header_bytes: 100\n  listeners: [{name: l, address: ':80'}]\n", `t.yaml:11:21: ingress.max_header_bytes: 100 out of range 1024..16777216`},
		{"two default certificates", base + ingressBase + "      protocol: https\n      tls:\n        - {cert_file: ../examples/certs/default.crt, key_file: ../examples/certs/default.key}\n        - {cert_file: ../examples/certs/example.crt, key_file: ../examples/certs/example.key}\n", `t.yaml:17:11: listener "plain": tls[1]: only one certificate may have no hostnames (the default)`},
		{"uppercase route hostname", base + ingressBase + routeBase("      hostnames: [Example.com]\n", ""), `t.yaml:16:19: route "r": hostnames[0]: "Example.com" must be lowercase DNS labels separated by dots`},
		{"route listener twice", base + ingressBase + routeBase("      listeners: [plain, plain]\n", ""), `t.yaml:16:26: route "r": listeners[1]: "plain" is listed twice`},
		{"redirect and rewrite", base + ingressBase + "  routes:\n    - name: r\n      rules:\n        - filters: [{redirect: {scheme: https}}, {url_rewrite: {hostname: a.test}}]\n", `t.yaml:17:64: route "r": rules[0]: redirect and url_rewrite cannot be combined in one rule`},
		{"two header filters of one kind", base + ingressBase + routeBase("", "          filters: [{request_headers: {remove: [a]}}, {request_headers: {remove: [b]}}]\n"), `t.yaml:18:55: route "r": rules[0].filters[1]: a rule may have only one request_headers filter (first at line 18)`},
		{"header filter duplicate name", base + ingressBase + routeBase("", "          filters: [{request_headers: {set: {X-A: b}, remove: [x-a]}}]\n"), `t.yaml:18:64: route "r": rules[0].filters[0].request_headers.remove: header "x-a" is already in set`},
		{"backend timeout beyond timeout", base + ingressBase + routeBase("", "          timeout: 1s\n          backend_timeout: 2s\n"), `t.yaml:19:28: route "r": rules[0].backend_timeout: 2s is longer than the request timeout 1s`},
		{"redirect prefix path with exact match", base + ingressBase + "  routes:\n    - name: r\n      rules:\n        - matches: [{path: {type: exact, value: /a}}]\n          filters: [{redirect: {path: {type: prefix, value: /b}}}]\n", `t.yaml:18:46: route "r": rules[0].filters[0].redirect.path.type: prefix rewrite needs every match of the rule to be a prefix path match`},
		{"backend port required with two ports", strings.Replace(base, "      - port: 80\n", "      - port: 80\n      - port: 81\n", 1) + ingressBase + "  routes:\n    - name: r\n      rules:\n        - backends: [{service: web}]\n", `t.yaml:18:22: route "r": rules[0].backends[0].port: required unless service "web" has exactly one TCP port`},
		{"ingress backend on udp port", strings.Replace(base, "      - port: 80\n", "      - {port: 53, protocol: udp}\n", 1) + ingressBase + "  routes:\n    - name: r\n      rules:\n        - backends: [{service: web, port: 53}]\n", `t.yaml:17:43: route "r": rules[0].backends[0].port: service "web" has no TCP port 53`},
		{"recursive merge", "log: &l {<<: *l}\n", `t.yaml:1:10: log: merge keys nested too deeply`},
		{"health check port explicit zero", base + "    health_check: {port: 0}\n", `t.yaml:10:26: service "web": health_check.port: must be 1..65535`},
		{"health check path without http", base + "    health_check: {path: /healthz}\n", `t.yaml:10:26: service "web": health_check.path: only used with type http`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "t.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error containing %q", c, tt.want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("errors:\n%v\nwant a line containing:\n%s", err, tt.want)
			}
		})
	}
}

// TestAllErrorsReported checks one run reports every problem, in file order.
func TestAllErrorsReported(t *testing.T) {
	_, err := Parse([]byte("tun:\n  mtu: 10\n  bogus: 1\nlog:\n  level: loud\n"), "f.yaml")
	want := "f.yaml:2:8: tun.mtu: 10 out of range 576..65535\n" +
		"f.yaml:3:3: tun: unknown key \"bogus\" (known: manage_routes, mtu, name, offload, persist, queues, route_table, syn_burst, syn_proxy, syn_rate_limit, txqueuelen)\n" +
		"f.yaml:5:10: log.level: unknown value \"loud\" (want one of: debug, info, warn, error)"
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

// TestDefaultQueues: one queue per CPU, at least two (so connection attempts get their own
// queue), at most MaxDefaultQueues; an explicit tun.queues wins, 1 included.
func TestDefaultQueues(t *testing.T) {
	for _, c := range []struct{ cpus, want int }{{1, 2}, {2, 2}, {3, 3}, {8, 8}, {64, 8}} {
		if got := defaultQueues(c.cpus); got != c.want {
			t.Errorf("%d CPUs: default queues %d, want %d", c.cpus, got, c.want)
		}
	}
	for _, c := range []struct {
		yaml string
		want int
		dflt bool
	}{{"", DefaultQueues(), true}, {"tun: {name: edge0}\n", DefaultQueues(), true}, {"tun: {queues: 1}\n", 1, false}, {"tun: {queues: 64}\n", 64, false}} {
		cfg, err := Parse([]byte(c.yaml), "t.yaml")
		if err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		if cfg.TUN.Queues != c.want || cfg.TUN.QueuesDefault != c.dflt {
			t.Errorf("%q: queues %d (default %v), want %d (%v)", c.yaml, cfg.TUN.Queues, cfg.TUN.QueuesDefault, c.want, c.dflt)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(base+"    health_check: {type: http}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tun := TUN{Name: "edge0", MTU: 1500, Queues: DefaultQueues(), Offload: true, ManageRoutes: true, Persist: true, TxQueueLen: 10000, RouteTable: 4242, SYNProxy: "auto", QueuesDefault: true}
	if !reflect.DeepEqual(c.TUN, tun) {
		t.Errorf("tun = %+v, want %+v", c.TUN, tun)
	}
	if c.NAT.PortRange != (PortRange{1024, 65535}) {
		t.Errorf("port_range = %v", c.NAT.PortRange)
	}
	s := c.Services[0]
	if s.Scheduler != "round_robin" || s.SessionAffinity != "none" || s.SessionAffinityTimeout.D() != 3*time.Hour ||
		s.SourceNAT != "masquerade" || s.MaglevTableSize != 65537 || s.Backends[0].Weight != 1 {
		t.Errorf("service defaults: %+v", s)
	}
	h := *s.HealthCheck
	wantH := HealthCheck{Type: "http", Port: 80, Path: "/", ExpectStatus: 200, Interval: Duration(2 * time.Second),
		Timeout: Duration(time.Second), HealthyThreshold: 2, UnhealthyThreshold: 2, AllUnhealthy: "fail_open"}
	if h != wantH {
		t.Errorf("health check = %+v, want %+v", h, wantH)
	}
	if c.Conntrack.MaxEntries != 262144 || c.Conntrack.Timeouts != DefaultTimeouts ||
		c.Conntrack.Timeouts.TCPEstablished.D() != 5*24*time.Hour {
		t.Errorf("conntrack = %+v", c.Conntrack)
	}
	if c.Admin.Listen != "127.0.0.1:9469" || !c.Admin.Enabled() || c.Admin.Socket != "/run/edgegate/admin.sock" ||
		!c.Admin.SocketEnabled() || c.Admin.SocketGroup != "" || c.Log != (Log{"text", "info"}) {
		t.Errorf("admin/log = %+v %+v", c.Admin, c.Log)
	}
	if c.ServiceByName("nope") != nil || c.ServiceByName("web") != &c.Services[0] {
		t.Error("ServiceByName")
	}
	if got := c.Services[0].Addresses[0]; got != netip.MustParseAddr("198.18.200.10") {
		t.Errorf("address = %v", got)
	}
}

// TestEffectiveRoundTrip checks the effective dump parses back to the same config.
func TestEffectiveRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.Effective()
			if err != nil {
				t.Fatal(err)
			}
			c2, err := Parse(out, f)
			if err != nil {
				t.Fatalf("effective config does not parse: %v\n%s", err, out)
			}
			// The dump writes the queue count chosen; whether the file set it is not part of it.
			c2.TUN.QueuesDefault = c.TUN.QueuesDefault
			if !reflect.DeepEqual(c, c2) {
				t.Errorf("round trip differs:\n%+v\n%+v", c, c2)
			}
		})
	}
}

// TestExamples loads every example so new ones are covered automatically.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	c, err := Load("../examples/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := c.ServiceByName("web")
	if s == nil || s.Scheduler != "maglev" || len(s.Backends) != 3 || s.Port("tcp", 80).TargetPort != 8080 ||
		s.Addresses[0] != netip.MustParseAddr("198.18.200.10") || c.TUN.Name != "edge0" ||
		c.NAT.MasqueradeAddresses[0] != netip.MustParseAddr("198.18.250.1") {
		t.Fatalf("demo config: %+v", s)
	}
	// iperf3 needs its control and data connections on one server: a port of its own service
	// with client affinity (per-flow Maglev would split them).
	iperf := 0
	for i := range c.Services {
		if p := c.Services[i].Port("tcp", 5201); p != nil {
			iperf++
			if c.Services[i].SessionAffinity != AffinityClientIP {
				t.Errorf("service %q serves iperf3 without client_ip affinity", c.Services[i].Name)
			}
		}
	}
	if iperf != 1 {
		t.Errorf("%d services serve tcp/5201, want 1", iperf)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../examples/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(base))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a non-empty Errors: %v", err)
			}
			return
		}
		// A valid config's effective form must be valid too.
		out, err := c.Effective()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(out, "fuzz.yaml"); err != nil {
			t.Fatalf("effective config rejected: %v\n%s", err, out)
		}
	})
}

// TestDocsCoverEveryKey fails when a YAML key of the contract types is missing from
// docs/config.md, so new keys cannot ship undocumented.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || isLeaf(ty) {
			return
		}
		seen[ty] = true
		for _, name := range fieldsOf(ty).names {
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("docs/config.md does not document key %s%s", path, name)
			}
			f, _ := ty.FieldByName(ty.Field(fieldsOf(ty).index[name]).Name)
			walk(f.Type, path+name+".")
		}
	}
	walk(reflect.TypeFor[Config](), "")
	if len(seen) < 20 {
		t.Fatalf("walked only %d types", len(seen))
	}
}

// TestDocsSnippetsDecode checks every ```yaml block in docs/config.md uses only real keys and
// well-typed values (snippets are fragments, so cross-references are not validated).
func TestDocsSnippetsDecode(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) < 8 {
		t.Fatalf("found only %d yaml blocks", len(blocks))
	}
	for i, b := range blocks {
		b, _, _ = strings.Cut(b, "```")
		root, err := parseNode([]byte(b))
		if err != nil {
			t.Errorf("block %d: %v\n%s", i, err, b)
			continue
		}
		d := newDecoder("config.md")
		d.decode(root, reflect.ValueOf(&Config{}).Elem(), "")
		if len(d.errs) > 0 {
			t.Errorf("block %d:\n%v\n%s", i, d.errs, b)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Column: 7, Msg: "bad"}, "a.yaml:3:7: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
		{Error{Line: 2, Column: 1, Msg: "bad"}, "2:1: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	es := Errors{{File: "f", Line: 1, Column: 2, Msg: "x"}, {File: "f", Line: 3, Column: 4, Msg: "y"}}
	if es.Error() != "f:1:2: x\nf:3:4: y" {
		t.Errorf("Errors.Error() = %q", es.Error())
	}
	var one *Error
	if !errors.As(error(es), &one) || one.Msg != "x" {
		t.Errorf("errors.As(*Error) = %v", one)
	}
}

func TestDurationAndPortRange(t *testing.T) {
	durations := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"30", 30 * time.Second, false},
		{"30s", 30 * time.Second, false},
		{"1m30s", 90 * time.Second, false},
		{"3h", 3 * time.Hour, false},
		{"0", 0, false},
		{"250ms", 250 * time.Millisecond, false},
		{"-1", 0, true},
		{"-1s", 0, true},
		{"1.5", 0, true},
		{"99999999999999999999", 0, true},
		{"[1]", 0, true},
	}
	for _, tt := range durations {
		c, err := Parse([]byte("conntrack: {drain_timeout: "+tt.in+"}\n"), "d.yaml")
		if (err != nil) != tt.err {
			t.Errorf("%q: err = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if err == nil && c.Conntrack.DrainTimeout.D() != tt.want {
			t.Errorf("%q = %v, want %v", tt.in, c.Conntrack.DrainTimeout.D(), tt.want)
		}
	}
	ranges := []struct {
		in   string
		want PortRange
		err  bool
	}{
		{"1024-65535", PortRange{1024, 65535}, false},
		{"8080", PortRange{8080, 8080}, false},
		{" 10 - 20 ", PortRange{10, 20}, false},
		{"0-10", PortRange{}, true},
		{"20-10", PortRange{}, true},
		{"1-65536", PortRange{}, true},
		{"a-b", PortRange{}, true},
		{"", PortRange{}, true},
	}
	for _, tt := range ranges {
		got, err := ParsePortRange(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	r := PortRange{1024, 1027}
	if r.Size() != 4 || !r.Contains(1024) || !r.Contains(1027) || r.Contains(1028) || (PortRange{}).Contains(0) {
		t.Errorf("PortRange helpers wrong for %v", r)
	}
}

func TestXKeysOnlyAtTopLevel(t *testing.T) {
	if _, err := Parse([]byte("x-anything: {a: 1}\n"), "x.yaml"); err != nil {
		t.Fatalf("top-level x- key rejected: %v", err)
	}
	_, err := Parse([]byte("tun:\n  x-note: 1\n"), "x.yaml")
	if err == nil || !strings.Contains(err.Error(), `x.yaml:2:3: tun: unknown key "x-note"`) {
		t.Fatalf("nested x- key: err = %v", err)
	}
}

func TestIngressDefaultsAndHelpers(t *testing.T) {
	c, err := Load("../examples/ingress.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := c.Ingress
	if in.ReadHeaderTimeout.D() != 10*time.Second || in.IdleTimeout.D() != 2*time.Minute ||
		in.MaxHeaderBytes != 65536 || in.DrainTimeout.D() != 10*time.Second || !in.AccessLog ||
		in.RequestBodyTimeout.D() != time.Minute || in.SendTimeout.D() != time.Minute ||
		in.UpgradeIdleTimeout.D() != time.Hour || in.MaxUpgradedConnections != 10000 {
		t.Errorf("ingress limits: %+v", in)
	}
	sec := in.ListenerByName("secure")
	if sec == nil || in.ListenerByName("nope") != nil {
		t.Fatal("ListenerByName")
	}
	for _, ct := range sec.TLS {
		if !filepath.IsAbs(ct.CertFile) || !filepath.IsAbs(ct.KeyFile) {
			t.Errorf("certificate paths not resolved: %+v", ct)
		}
		if _, err := ct.Load(); err != nil {
			t.Error(err)
		}
	}
	redirect := in.Routes[0].Rules[0]
	if m := redirect.Matches; len(m) != 1 || *m[0].Path != (PathMatch{Type: "prefix", Value: "/"}) {
		t.Errorf("default match = %+v", m)
	}
	if redirect.Retries != 1 {
		t.Errorf("default retries = %d", redirect.Retries)
	}
	app := in.Routes[1].Rules[1]
	canary := app.Backends[1]
	if canary.Service != "app-canary" || canary.Port != 80 || canary.Weight != 10 || canary.Protocol != "http" {
		t.Errorf("backend defaults: %+v", canary)
	}
	re, err := app.Matches[1].Path.Regexp()
	if err != nil || !re.MatchString("/v2/users") || re.MatchString("/x/v2/users") {
		t.Errorf("path regex must match whole paths: %v %v", re, err)
	}
	hre, err := app.Matches[1].Headers[0].Regexp()
	if err != nil || !hre.MatchString("2") || hre.MatchString("4") {
		t.Errorf("header regex: %v %v", hre, err)
	}
	if re, _ := app.Matches[0].Path.Regexp(); re != nil {
		t.Error("prefix match returned a regexp")
	}
}

func TestEffectiveIsPruned(t *testing.T) {
	c, err := Parse([]byte(base), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"mtu: 1500", "port_range: 1024-65535", "target_port: 80", "session_affinity_timeout: 3h0m0s", "tcp_established: 120h0m0s"} {
		if !strings.Contains(s, want) {
			t.Errorf("effective config lacks %q:\n%s", want, s)
		}
	}
	for _, unwanted := range []string{"null", "[]", "{}", `""`} {
		if strings.Contains(s, unwanted) {
			t.Errorf("effective config contains %s:\n%s", unwanted, s)
		}
	}
}

// TestAliasBomb checks alias expansion is bounded: a small file whose aliases expand to
// millions of values is cut off with an error instead of being decoded.
func TestAliasBomb(t *testing.T) {
	refs := func(alias string, n int) string {
		return "[" + strings.Repeat(alias+", ", n-1) + alias + "]"
	}
	doc := "x-b: &b {address: 198.19.1.2}\n" +
		"x-s: &s {name: a, addresses: [198.18.200.1], ports: [{port: 80}], backends: " + refs("*b", 2000) + "}\n" +
		"services: " + refs("*s", 2000) + "\n" // 4 million backends from 20 KB
	_, err := Parse([]byte(doc), "bomb.yaml")
	if err == nil || !strings.Contains(err.Error(), "bomb.yaml:1:6: document too large (more than 200000 values after alias expansion)") {
		t.Fatalf("err = %v, want document too large", err)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"mtu", "mtu", 0}, {"mut", "mtu", 1}, {"tunn", "tun", 1}, {"schedular", "scheduler", 1},
		{"abc", "", 3}, {"kitten", "sitting", 3}, {"ca", "abc", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
