package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certValidity is how long every certificate `up` issues stays valid. A local
// cluster lives for minutes or days; a year keeps a --keep'd state directory
// usable without ever having to think about rotation.
const certValidity = 365 * 24 * time.Hour

// pkiFiles holds the paths (inside DIR/pki) of everything the control plane
// needs to authenticate, plus the admin client credentials in PEM form for the
// kubeconfig and for `up`'s own API client.
type pkiFiles struct {
	Dir string

	CACert string // cluster CA certificate: --client-ca-file, --root-ca-file
	CAKey  string // cluster CA key: kube-controller-manager's CSR signer

	ServingCert string // kube-apiserver's serving certificate
	ServingKey  string

	SAKey string // service-account token signing key (private)
	SAPub string // service-account token verification key (public)

	CAPEM        []byte // the CA certificate, PEM
	AdminCertPEM []byte // client certificate CN=admin, O=system:masters, PEM
	AdminKeyPEM  []byte // its private key, PKCS#8 PEM

	caCert *x509.Certificate // parsed CA, for issueCert
	caKey  crypto.Signer
}

// apiserverSANs are the names the kube-apiserver's serving certificate is
// valid for: loopback (where clients reach it), the first address of the
// service CIDR and the in-cluster DNS names of the `kubernetes` Service.
var (
	apiserverIPs = []net.IP{
		net.ParseIP("127.0.0.1"),
		net.ParseIP("::1"),
		net.ParseIP(serviceIP),
	}
	apiserverDNSNames = []string{
		"localhost",
		"kubernetes",
		"kubernetes.default",
		"kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local",
	}
)

// generatePKI creates dir and writes a fresh CA, the kube-apiserver serving
// certificate, the service-account key pair and an admin client certificate
// into it. All keys are ECDSA P-256 (as in controller-runtime's envtest) in
// PKCS#8 PEM, written with mode 0600. It returns an error if any key cannot be
// generated or any file cannot be written.
//
// extraIPs are added to the serving certificate's IP SANs (the real node's
// bridge gateway, where pods reach the API server).
func generatePKI(dir string, extraIPs ...net.IP) (*pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pkiFiles{
		Dir:         dir,
		CACert:      filepath.Join(dir, "ca.crt"),
		CAKey:       filepath.Join(dir, "ca.key"),
		ServingCert: filepath.Join(dir, "apiserver.crt"),
		ServingKey:  filepath.Join(dir, "apiserver.key"),
		SAKey:       filepath.Join(dir, "sa.key"),
		SAPub:       filepath.Join(dir, "sa.pub"),
	}
	now := time.Now()

	// The CA.
	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "agent-smith-local-ca"},
		NotBefore:             now.Add(-time.Hour), // tolerate small clock skew
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, caCert, err := sign(caTmpl, caKey, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	p.caCert, p.caKey = caCert, caKey
	p.CAPEM = certPEM(caDER)

	// The kube-apiserver's serving certificate.
	servingKey, err := newKey()
	if err != nil {
		return nil, err
	}
	servingDER, _, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: append(append([]net.IP{}, apiserverIPs...), extraIPs...),
		DNSNames:    apiserverDNSNames,
	}, servingKey, caCert, caKey)
	if err != nil {
		return nil, fmt.Errorf("apiserver serving certificate: %w", err)
	}

	// The admin client certificate: system:masters bypasses RBAC.
	adminKey, err := newKey()
	if err != nil {
		return nil, err
	}
	adminDER, _, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, adminKey, caCert, caKey)
	if err != nil {
		return nil, fmt.Errorf("admin client certificate: %w", err)
	}
	p.AdminCertPEM = certPEM(adminDER)
	if p.AdminKeyPEM, err = keyPEM(adminKey); err != nil {
		return nil, err
	}

	// The service-account token key pair (no certificate needed).
	saKey, err := newKey()
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("service-account public key: %w", err)
	}

	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}
	servingKeyPEM, err := keyPEM(servingKey)
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := keyPEM(saKey)
	if err != nil {
		return nil, err
	}
	for path, data := range map[string][]byte{
		p.CACert:                        p.CAPEM,
		p.CAKey:                         caKeyPEM,
		p.ServingCert:                   certPEM(servingDER),
		p.ServingKey:                    servingKeyPEM,
		p.SAKey:                         saKeyPEM,
		p.SAPub:                         pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
		filepath.Join(dir, "admin.crt"): p.AdminCertPEM,
		filepath.Join(dir, "admin.key"): p.AdminKeyPEM,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// issuedCert is a certificate and key issueCert wrote, as paths and PEM.
type issuedCert struct {
	Cert, Key       string // paths
	CertPEM, KeyPEM []byte
}

// issueCert issues a certificate from the cluster CA for tmpl (subject, key
// usages, SANs; validity and serial are filled in) and writes it to
// DIR/pki/<name>.crt and <name>.key (mode 0600). Used for the real node's
// kubelet, kube-proxy and the API server's kubelet client.
func (p *pkiFiles) issueCert(name string, tmpl *x509.Certificate) (*issuedCert, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(certValidity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, _, err := sign(tmpl, key, p.caCert, p.caKey)
	if err != nil {
		return nil, fmt.Errorf("%s certificate: %w", name, err)
	}
	keyData, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	ic := &issuedCert{
		Cert: filepath.Join(p.Dir, name+".crt"), Key: filepath.Join(p.Dir, name+".key"),
		CertPEM: certPEM(der), KeyPEM: keyData,
	}
	if err := os.WriteFile(ic.Cert, ic.CertPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(ic.Key, ic.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	return ic, nil
}

// newKey generates an ECDSA P-256 private key.
func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA key: %w", err)
	}
	return k, nil
}

// sign fills in a random serial number and issues tmpl for key's public half,
// signed by parent/parentKey, or self-signed when parent is nil. It returns
// the DER bytes and the parsed certificate.
func sign(tmpl *x509.Certificate, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return der, cert, nil
}

// certPEM encodes a DER certificate as PEM.
func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keyPEM encodes a private key as PKCS#8 PEM, which every component accepts.
func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
