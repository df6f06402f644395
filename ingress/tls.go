package ingress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/edgegate/edgegate/config"
)

// certSet picks a listener's certificate by SNI: exact name, then the longest matching wildcard
// (*.example.com covers any depth below example.com, as for routes), then the default (the first
// certificate, or one listed without host names). Immutable; swapped whole on reload.
type certSet struct {
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate
	def   *tls.Certificate
}

// loadCerts reads the PEM pairs of a listener.
func loadCerts(cs []config.Certificate) (*certSet, error) {
	if len(cs) == 0 {
		return nil, errors.New("https listener without certificates")
	}
	set := &certSet{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	explicitDef := false // a certificate without host names is the default, else the first
	for i, c := range cs {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("certificate %d (%s): %w", i, c.CertFile, err)
		}
		cert := &pair
		if i == 0 || len(c.Hostnames) == 0 && !explicitDef {
			set.def = cert
			explicitDef = len(c.Hostnames) == 0
		}
		for _, h := range c.Hostnames {
			h = strings.TrimSuffix(strings.ToLower(h), ".")
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				set.wild[rest] = cert
			} else {
				set.exact[h] = cert
			}
		}
	}
	return set, nil
}

// get returns the certificate for a client hello's server name.
func (c *certSet) get(serverName string) (*tls.Certificate, error) {
	if c == nil {
		return nil, errors.New("no certificates")
	}
	name := normalizeHost(serverName)
	if cert, ok := c.exact[name]; ok {
		return cert, nil
	}
	for i := strings.IndexByte(name, '.'); i >= 0; {
		suffix := name[i+1:]
		if cert, ok := c.wild[suffix]; ok {
			return cert, nil
		}
		j := strings.IndexByte(suffix, '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return c.def, nil
}
