package main

import (
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// clusterName is the name of the cluster, user and context entries in the
// kubeconfig `up` writes.
const clusterName = "agent-smith-local"

// writeKubeconfig writes an admin kubeconfig for server (e.g.
// "https://127.0.0.1:6443") to path, with the CA and the admin client
// certificate embedded, so the file works on its own after the pki directory
// is gone. The file is written with mode 0600.
func writeKubeconfig(path, server string, p *pkiFiles) error {
	return writeKubeconfigFor(path, server, p.CAPEM, p.AdminCertPEM, p.AdminKeyPEM)
}

// writeKubeconfigFor writes a kubeconfig for server with the given CA and
// client certificate and key (all PEM) embedded, mode 0600.
func writeKubeconfigFor(path, server string, caPEM, certPEM, keyPEM []byte) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: caPEM,
	}
	cfg.AuthInfos[clusterName] = &clientcmdapi.AuthInfo{
		ClientCertificateData: certPEM,
		ClientKeyData:         keyPEM,
	}
	cfg.Contexts[clusterName] = &clientcmdapi.Context{
		Cluster:  clusterName,
		AuthInfo: clusterName,
	}
	cfg.CurrentContext = clusterName
	return clientcmd.WriteToFile(*cfg, path)
}

// adminRESTConfig is `up`'s own client configuration: the admin identity,
// a per-request timeout (every call `up` makes is a short poll or write), no
// client-side throttling worth noticing, and API warnings suppressed so they
// do not clutter a terminal.
func adminRESTConfig(server string, p *pkiFiles) *rest.Config {
	return &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   p.CAPEM,
			CertData: p.AdminCertPEM,
			KeyData:  p.AdminKeyPEM,
		},
		Timeout:        10 * time.Second,
		QPS:            50,
		Burst:          100,
		UserAgent:      "localcluster-up",
		WarningHandler: rest.NoWarnings{},
	}
}

// Client-side rate limits of the dev provisioner's client (see provisioner):
// the admin client's 50 QPS / burst 100, or 2000 / 4000 under up --unthrottled,
// so that 10 000 claims get their PVs in seconds.
const (
	provisionerQPS, provisionerBurst                       = 50, 100
	provisionerUnthrottledQPS, provisionerUnthrottledBurst = 2000, 4000
)

// provisionerRESTConfig is the dev provisioner's client configuration: the
// admin identity without a whole-request timeout (its informers hold watches;
// each create and delete has its own deadline), with the rate limits above.
func provisionerRESTConfig(server string, p *pkiFiles, unthrottled bool) *rest.Config {
	cfg := adminRESTConfig(server, p)
	cfg.Timeout = 0
	cfg.UserAgent = "localcluster-provisioner"
	cfg.QPS, cfg.Burst = provisionerQPS, provisionerBurst
	if unthrottled {
		cfg.QPS, cfg.Burst = provisionerUnthrottledQPS, provisionerUnthrottledBurst
	}
	return cfg
}
