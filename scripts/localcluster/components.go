package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Address plan of the local cluster. None of these addresses is routable:
// kwok only writes them into Pod and Node status.
const (
	serviceCIDR = "10.0.0.0/24" // ClusterIP Services
	serviceIP   = "10.0.0.1"    // the `kubernetes` Service: first address of serviceCIDR
	// Pod IPs come from 10.244.0.0/16, handed out by kwok counting up from
	// the address written here, so that the first one is 10.244.0.1.
	kwokPodCIDR = "10.244.0.1/16"
	nodeIPBase  = "10.0.2." // fake Node i gets InternalIP 10.0.2.(i+1)

	// serviceAccountIssuer is the `iss` of service-account tokens.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

	// kwokNodeAnnotation marks the Nodes kwok manages (and only those).
	kwokNodeAnnotation      = "kwok.x-k8s.io/node"
	kwokNodeAnnotationValue = "fake"
)

// layout is where everything lives inside the state directory, and the
// loopback ports chosen for this run.
type layout struct {
	Dir        string // the state directory (absolute)
	Logs       string // DIR/logs: one <component>.log per child
	EtcdData   string // DIR/etcd
	Volumes    string // DIR/volumes: hostPath PVs of the dev provisioner
	KwokHome   string // DIR/kwok: HOME for kwok, see kwokSpec
	Kubeconfig string // DIR/kubeconfig: admin credentials

	EtcdClientPort int
	EtcdPeerPort   int
	APIServerPort  int
}

func newLayout(dir string, ports []int) layout {
	return layout{
		Dir:            dir,
		Logs:           filepath.Join(dir, "logs"),
		EtcdData:       filepath.Join(dir, "etcd"),
		Volumes:        filepath.Join(dir, "volumes"),
		KwokHome:       filepath.Join(dir, "kwok"),
		Kubeconfig:     filepath.Join(dir, "kubeconfig"),
		EtcdClientPort: ports[0],
		EtcdPeerPort:   ports[1],
		APIServerPort:  ports[2],
	}
}

// EtcdURL is the etcd client URL (plain HTTP on loopback).
func (l layout) EtcdURL() string { return fmt.Sprintf("http://127.0.0.1:%d", l.EtcdClientPort) }

// Server is the kube-apiserver URL clients use.
func (l layout) Server() string { return fmt.Sprintf("https://127.0.0.1:%d", l.APIServerPort) }

// selfSpec runs one of this binary's own subcommands.
func selfSpec(exe, subcommand string, args ...string) childSpec {
	return childSpec{
		Name: subcommand,
		Path: exe,
		// argv[0] "localcluster" makes main dispatch on the subcommand
		// whatever the executable file happens to be called.
		Args: append([]string{"localcluster", subcommand}, args...),
	}
}

func etcdSpec(exe string, l layout) childSpec {
	return selfSpec(exe, "etcd",
		"--data-dir="+l.EtcdData,
		"--listen-client-url="+l.EtcdURL(),
		fmt.Sprintf("--listen-peer-url=http://127.0.0.1:%d", l.EtcdPeerPort),
	)
}

// apiserverSpec mirrors controller-runtime envtest's kube-apiserver flags,
// except that admission runs with its defaults (ServiceAccount included: the
// controller-manager creates the `default` ServiceAccounts) and Node
// authorization is on as in a real cluster.
//
// The endpoint reconciler is off: it would publish the advertise address
// 127.0.0.1 as the endpoint of the `kubernetes` Service, which Endpoints
// validation rejects (loopback), logging an error every 10 seconds. Nothing
// in the cluster can reach the API server through that Service anyway, since
// kwok runs no containers; the Service itself still exists.
//
// With a real node (n non-nil) pods must reach the API server through the
// `kubernetes` Service: it binds every address (our firewall chain admits
// only loopback and the bridge, see setupHostNetwork), advertises the bridge
// gateway, whose lease-based endpoint the Service then gets, and reaches
// kubelet (logs, exec, port-forward) with a client certificate, checking
// kubelet's serving certificate against the cluster CA.
//
// unthrottled (up --unthrottled) lifts its concurrency limits as `kwokctl
// --disable-qps-limits` does: no limit on requests in flight (the defaults are
// 400 read-only and 200 mutating) and API Priority and Fairness off, which is
// what makes 0 ("no limit") valid for both.
func apiserverSpec(exe string, l layout, p *pkiFiles, n *realNode, unthrottled bool) childSpec {
	mode := []string{"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"}
	if n != nil {
		mode = []string{
			"--bind-address=0.0.0.0",
			"--advertise-address=" + podGateway,
			"--endpoint-reconciler-type=lease",
			"--kubelet-client-certificate=" + n.apiKubelet.Cert,
			"--kubelet-client-key=" + n.apiKubelet.Key,
			"--kubelet-certificate-authority=" + p.CACert,
			"--kubelet-preferred-address-types=InternalIP,Hostname",
		}
	}
	return selfSpec(exe, "kube-apiserver", append([]string{
		"--etcd-servers=" + l.EtcdURL(), "--secure-port=" + strconv.Itoa(l.APIServerPort),
		"--cert-dir=" + p.Dir,
		"--tls-cert-file=" + p.ServingCert,
		"--tls-private-key-file=" + p.ServingKey,
		"--client-ca-file=" + p.CACert,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + p.SAPub,
		"--service-account-signing-key-file=" + p.SAKey,
	}, append(mode, apiserverLimits(unthrottled)...)...)...,
	)
}

// apiserverLimits are kube-apiserver's flags for up --unthrottled (none without it).
func apiserverLimits(unthrottled bool) []string {
	if !unthrottled {
		return nil
	}
	return []string{"--max-requests-inflight=0", "--max-mutating-requests-inflight=0", "--enable-priority-and-fairness=false"}
}

// Client-side API rate limits of kube-controller-manager and kube-scheduler
// under up --unthrottled. Their defaults are 20 QPS / burst 30 (each of the
// controller-manager's controllers has its own client, hence its own budget:
// the PV binder alone then caps a burst of StatefulSets with two claims each
// at about 2 pods/s) and 50 QPS / burst 100 for the scheduler.
const (
	unthrottledQPS   = 2000
	unthrottledBurst = 4000
)

// clientLimits are the --kube-api-qps/--kube-api-burst flags for up
// --unthrottled (none without it: the components' defaults stay).
func clientLimits(unthrottled bool) []string {
	if !unthrottled {
		return nil
	}
	return []string{"--kube-api-qps=" + strconv.Itoa(unthrottledQPS), "--kube-api-burst=" + strconv.Itoa(unthrottledBurst)}
}

// controllerWorkers are kube-controller-manager's worker counts for up
// --unthrottled: 50 StatefulSets and 50 Services' EndpointSlices synced at
// once instead of 5 (none without it). The PV binder has one worker and no
// flag; see provisioner.Eager.
func controllerWorkers(unthrottled bool) []string {
	if !unthrottled {
		return nil
	}
	return []string{"--concurrent-statefulset-syncs=50", "--concurrent-service-endpoint-syncs=50"}
}

// controllerManagerSpec runs every default controller as the admin user,
// without leader election and without a serving port (nothing scrapes it).
// The service-account key and root CA make the token and
// kube-root-ca.crt publishers work; the CA doubles as the CSR signer.
//
// unthrottled raises its client-side API rate limit (see clientLimits).
func controllerManagerSpec(exe string, l layout, p *pkiFiles, unthrottled bool) childSpec {
	return selfSpec(exe, "kube-controller-manager", append([]string{
		"--kubeconfig=" + l.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + p.SAKey,
		"--root-ca-file=" + p.CACert,
		"--cluster-signing-cert-file=" + p.CACert,
		"--cluster-signing-key-file=" + p.CAKey,
		"--cluster-name=" + clusterName,
		// kwok's fake nodes heartbeat from one process; on a loaded 2-core machine a
		// late heartbeat must not mark every node NotReady (and with it every pod
		// not Ready, which tests and the demo would see as flapping agents). With
		// 10m, a scale run at 5,000 pods saw five nodes' 539 pods go not Ready ten
		// minutes after the nodes were made: kwok had not renewed those leases
		// under that load. Nodes here never really die, so a grace period longer
		// than any run costs nothing.
		"--node-monitor-grace-period=24h",
	}, append(clientLimits(unthrottled), controllerWorkers(unthrottled)...)...)...,
	)
}

// schedulerSpec runs the default scheduler without leader election and
// without a serving port. unthrottled raises its client-side API rate limit
// (see clientLimits; the flags are deprecated but honoured without --config).
func schedulerSpec(exe string, l layout, unthrottled bool) childSpec {
	return selfSpec(exe, "kube-scheduler", append([]string{
		"--kubeconfig=" + l.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	}, clientLimits(unthrottled)...)...,
	)
}

// kwokSpec runs kwok with its default stages (Nodes become Ready and keep a
// lease; scheduled Pods become Running and Ready; deleted Pods go away) for
// the Nodes annotated kwok.x-k8s.io/node=fake only. Its HTTP server (logs,
// exec, metrics) stays off: it starts only with --server-address or
// --node-port. HOME points into DIR so a developer's ~/.kwok/kwok.yaml (which
// kwok always loads when present) cannot change its behaviour.
//
// kwok has no client-side rate limit; what bounds it is how many stages it
// plays at once (4 pods and 4 nodes by default). With config non-empty (up
// --unthrottled: see writeKwokConfig) it reads that KwokConfiguration.
func kwokSpec(kwok string, l layout, config string) childSpec {
	args := []string{"kwok",
		"--kubeconfig=" + l.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=" + kwokNodeAnnotationValue,
		"--cidr=" + kwokPodCIDR,
	}
	if config != "" {
		args = append(args, "--config="+config)
	}
	return childSpec{
		Name: "kwok",
		Path: kwok,
		Args: args,
		Env:  append(os.Environ(), "HOME="+l.KwokHome),
	}
}

// kwokUnthrottledConfig is the KwokConfiguration (config.kwok.x-k8s.io/v1alpha1,
// schema of sigs.k8s.io/kwok v0.7.0 pkg/apis/config/v1alpha1) of up
// --unthrottled: pod and node stages played 64 and 16 at a time instead of 4,
// node leases renewed 16 at a time instead of 4. Stages are not configured,
// so kwok keeps its default (fast) ones.
const kwokUnthrottledConfig = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 64
  nodePlayStageParallelism: 16
  nodeLeaseParallelism: 16
`

// writeKwokConfig writes kwokUnthrottledConfig to DIR/kwok/kwok.yaml and returns its path.
func writeKwokConfig(l layout) (string, error) {
	path := filepath.Join(l.KwokHome, "kwok.yaml")
	if err := os.WriteFile(path, []byte(kwokUnthrottledConfig), 0o644); err != nil {
		return "", fmt.Errorf("write kwok configuration: %w", err)
	}
	return path, nil
}
