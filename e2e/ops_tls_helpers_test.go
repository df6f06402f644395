package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// rotatingCert is a self-signed certificate and key in files only root can read (mode 0600),
// which a test replaces to rotate the ingress certificate.
type rotatingCert struct {
	cert, key string
}

func newRotatingCert(t *testing.T, dir string) *rotatingCert {
	t.Helper()
	d := filepath.Join(dir, "tls")
	must(t, os.Mkdir(d, 0o755))
	rc := &rotatingCert{cert: filepath.Join(d, "cert.pem"), key: filepath.Join(d, "key.pem")}
	rc.rotate(t, "v1")
	return rc
}

// rotate writes a new certificate with common name cn (and its key), both 0600.
func (rc *rotatingCert) rotate(t *testing.T, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{"edge.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{rc.cert, "CERTIFICATE", der}, {rc.key, "EC PRIVATE KEY", kder}} {
		must(t, os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600))
		must(t, os.Chmod(f.path, 0o600))
	}
}

// ingress is an ingress section with an HTTPS listener on 198.18.1.1:8443 serving the
// certificate, routing to service web.
func (rc *rotatingCert) ingress() string {
	return fmt.Sprintf(`ingress:
  listeners:
    - name: tls
      address: "198.18.1.1:8443"
      protocol: https
      tls:
        - {cert_file: %q, key_file: %q}
  routes:
    - name: web
      rules:
        - backends: [{service: web, port: 80}]
`, rc.cert, rc.key)
}

// check makes an HTTPS request from c1 and wants the certificate named cn and a backend's answer.
func (rc *rotatingCert) check(t *testing.T, tp *topo, cn string) {
	t.Helper()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := tp.c1.Do(func() (err error) {
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			return
		})
		return c, err
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: "edge.test", InsecureSkipVerify: true}}}
	resp, err := hc.Get("https://198.18.1.1:8443/")
	if err != nil {
		t.Fatalf("HTTPS through the ingress: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != cn || !regexp.MustCompile(`^b[12]$`).Match(body) {
		t.Errorf("HTTPS: certificate %q, body %q; want certificate %q and a backend's name", got, body, cn)
	}
}
