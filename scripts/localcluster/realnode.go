package main

// The real node of `up --real-node`: containerd, kubelet, kube-proxy and
// CoreDNS as supervised children, their configuration, the pause image and
// the kube-dns Service.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pauseImage is the sandbox image `up` builds from the kubernetes module's
// build/pause/linux/pause.c and imports; pinned in containerd, so never
// garbage-collected.
const pauseImage = "localhost/agent-smith/pause:" + kubePauseTag

// kubePauseTag names the pause image after the Kubernetes version it was built from.
const kubePauseTag = "v1.35.4"

// realNode holds the paths and programs of the real node of one run.
type realNode struct {
	Exe        string // this binary
	Containerd string // containerd, containerd-shim-runc-v2 beside it
	Ctr        string
	CoreDNS    string
	Runc       string
	ImageStore string // containerd root: content and snapshots, kept across runs

	Dir         string // DIR/node
	Socket      string // containerd's socket
	KubeletDir  string // kubelet --root-dir
	CNIConfDir  string
	DNSHosts    string // DIR/dns/hosts, read by CoreDNS's hosts plugin
	kubeletCert *issuedCert
	kubeletCli  *issuedCert
	proxyCli    *issuedCert
	apiKubelet  *issuedCert // the API server's client certificate for kubelet
}

// newRealNode resolves the programs and lays out the node's files under dir.
func newRealNode(exe, dir, imageStore string) (*realNode, error) {
	n := &realNode{Exe: exe, ImageStore: imageStore, Dir: filepath.Join(dir, "node")}
	var err error
	for name, dst := range map[string]*string{"containerd": &n.Containerd, "ctr": &n.Ctr, "coredns": &n.CoreDNS, "containerd-shim-runc-v2": new(string)} {
		if *dst, err = findTool(name, exe); err != nil {
			return nil, err
		}
	}
	if n.Runc, err = exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("this machine cannot run containers: runc is not installed")
	}
	n.Socket = filepath.Join(n.Dir, "containerd", "containerd.sock")
	n.KubeletDir = filepath.Join(n.Dir, "kubelet")
	n.CNIConfDir = filepath.Join(n.Dir, "cni", "net.d")
	n.DNSHosts = filepath.Join(dir, "dns", "hosts")
	return n, nil
}

// toolEnv is the environment of containerd and kubelet: the shim must be on
// PATH (containerd looks it up there) and so must iptables, runc and mount.
func (n *realNode) toolEnv() []string {
	path := filepath.Dir(n.Containerd) + ":" + os.Getenv("PATH") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PATH=") {
			env = append(env, e)
		}
	}
	return append(env, "PATH="+path)
}

// issueCerts issues the node's certificates from the cluster CA: kubelet's
// serving certificate (the gateway address, loopback, the node name and the
// host name), kubelet's client certificate (system:node:local, so the Node
// authorizer applies), kube-proxy's (system:kube-proxy, bound to
// system:node-proxier by default RBAC), and the API server's client
// certificate for kubelet (system:masters, so kubelet's webhook
// authorization lets logs/exec/port-forward through).
func (n *realNode) issueCerts(p *pkiFiles) error {
	host, _ := os.Hostname()
	var err error
	n.kubeletCert, err = p.issueCert("kubelet-serving", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + realNodeName, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(podGateway), net.ParseIP("127.0.0.1")},
		DNSNames:    []string{realNodeName, host, "localhost"},
	})
	if err != nil {
		return err
	}
	if n.kubeletCli, err = p.issueCert("kubelet-client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + realNodeName, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	if n.proxyCli, err = p.issueCert("kube-proxy-client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:kube-proxy"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	n.apiKubelet, err = p.issueCert("apiserver-kubelet-client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

// containerdConfig is containerd's v3 configuration: its own root (the
// image store), state and socket, the CRI runtime with runc (cgroupfs, no
// AppArmor, restrict_oom_score_adj because root lacks CAP_SYS_RESOURCE on
// these machines), the bridge CNI and our pause image, pinned. NRI is off
// (it would listen under /var/run/nri) and the opt plugin's directory is in DIR.
func (n *realNode) containerdConfig() string {
	q := strconv.Quote
	return `version = 3
root = ` + q(n.ImageStore) + `
state = ` + q(filepath.Join(n.Dir, "containerd", "state")) + `
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = ` + q(n.Socket) + `

[plugins.'io.containerd.internal.v1.opt']
  path = ` + q(filepath.Join(n.Dir, "containerd", "opt")) + `

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = ` + q(pauseImage) + `

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = ` + q(n.Runc) + `
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [` + q(cniBinDir) + `]
    conf_dir = ` + q(n.CNIConfDir) + `
`
}

// cniConfig is the pod network: a bridge of ours with the gateway address
// on the host, no default route and no masquerading (nothing leaves the
// machine), one route to the Service CIDR via the gateway (so pods reach
// ClusterIPs, which kube-proxy translates on the host), host-local IPAM with
// its state in DIR, loopback, and portmap for hostPort.
func (n *realNode) cniConfig() string {
	cfg := map[string]any{
		"cniVersion": "1.0.0",
		"name":       cniNetworkName,
		"plugins": []any{
			map[string]any{
				"type":             "bridge",
				"bridge":           bridgeName,
				"isGateway":        true,
				"isDefaultGateway": false,
				"ipMasq":           false,
				"hairpinMode":      true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": filepath.Join(n.Dir, "cni", "ipam"),
					"ranges":  []any{[]any{map[string]any{"subnet": podCIDR, "gateway": podGateway}}},
					"routes":  []any{map[string]any{"dst": serviceCIDR, "gw": podGateway}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	return string(data)
}

// writeConfigs writes every configuration file of the node.
func (n *realNode) writeConfigs(l layout, p *pkiFiles) error {
	for _, d := range []string{n.KubeletDir, n.CNIConfDir, filepath.Join(n.Dir, "containerd"), filepath.Dir(n.DNSHosts), n.ImageStore} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		filepath.Join(n.Dir, "containerd", "config.toml"):      n.containerdConfig(),
		filepath.Join(n.CNIConfDir, "10-agent-smith.conflist"): n.cniConfig(),
		filepath.Join(n.Dir, "kubelet-config.yaml"):            n.kubeletConfig(p),
		filepath.Join(n.Dir, "kube-proxy-config.yaml"):         n.proxyConfig(),
		filepath.Join(n.Dir, "Corefile"):                       n.corefile(l),
		filepath.Join(n.Dir, "root.zone"):                      rootZone,
		// Pods with dnsPolicy Default get this: no resolver at all outside the cluster.
		filepath.Join(n.Dir, "resolv.conf"): "",
		n.DNSHosts:                          "# name -> address lines (\"10.0.0.42 github.com\"), read by CoreDNS every second\n",
	}
	for path, data := range files {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			return err
		}
	}
	if err := writeKubeconfigFor(filepath.Join(n.Dir, "kubelet.kubeconfig"), l.Server(), p.CAPEM, n.kubeletCli.CertPEM, n.kubeletCli.KeyPEM); err != nil {
		return err
	}
	return writeKubeconfigFor(filepath.Join(n.Dir, "kube-proxy.kubeconfig"), l.Server(), p.CAPEM, n.proxyCli.CertPEM, n.proxyCli.KeyPEM)
}

// kubeletConfig is the KubeletConfiguration measured to work on these
// machines (see docs in /work/shared/notes/real-node.md): cgroupfs, cgroup
// v1 allowed, swap tolerated, serving on the gateway address with a
// certificate from the cluster CA, webhook authentication and authorization,
// image GC practically off (images are imported, never pulled), low
// eviction thresholds, and every directory it would put elsewhere in DIR.
func (n *realNode) kubeletConfig(p *pkiFiles) string {
	return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ` + podGateway + `
port: ` + strconv.Itoa(kubeletPort) + `
readOnlyPort: 0
healthzPort: 0
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://` + n.Socket + `
clusterDNS: [` + clusterDNSIP + `]
clusterDomain: cluster.local
resolvConf: ` + filepath.Join(n.Dir, "resolv.conf") + `
tlsCertFile: ` + n.kubeletCert.Cert + `
tlsPrivateKeyFile: ` + n.kubeletCert.Key + `
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ` + p.CACert + `}
authorization: {mode: Webhook}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
volumePluginDir: ` + filepath.Join(n.KubeletDir, "volume-plugins") + `
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
maxPods: 110
`
}

// proxyConfig is kube-proxy in iptables mode (the kernel has no IPVS) that
// leaves the conntrack sysctls alone and does not open NodePorts on
// loopback (which would set route_localnet).
func (n *realNode) proxyConfig() string {
	return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: ` + realNodeName + `
clusterCIDR: ` + podCIDR + `
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection:
  kubeconfig: ` + filepath.Join(n.Dir, "kube-proxy.kubeconfig") + `
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
nodePortAddresses: [` + podCIDR + `]
`
}

// corefile is CoreDNS's configuration: on the gateway address only, the
// names of DIR/dns/hosts (re-read every second) first, cluster.local and the
// reverse zones from the API server, and NXDOMAIN for everything else from
// an empty root zone (rootZone): no forwarding to any resolver outside.
// (The hosts plugin alone answers SERVFAIL for names it lacks; plugins run
// in CoreDNS's fixed order hosts, kubernetes, file.)
func (n *realNode) corefile(l layout) string {
	return `.:53 {
    bind ` + podGateway + `
    errors
    hosts ` + n.DNSHosts + ` {
        ttl 5
        reload 1s
        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig ` + l.Kubeconfig + `
        pods insecure
        ttl 5
    }
    file ` + filepath.Join(n.Dir, "root.zone") + ` .
}
`
}

// rootZone is the zone file of the empty root zone: a SOA only, so every
// name outside cluster.local and the hosts file is NXDOMAIN.
const rootZone = `$ORIGIN .
@ 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
@ 5 IN NS ns.dns.cluster.local.
`

func (n *realNode) containerdSpec() childSpec {
	return childSpec{
		Name: "containerd",
		Path: n.Containerd,
		Args: []string{"containerd", "--config", filepath.Join(n.Dir, "containerd", "config.toml"), "--log-level", "warn"},
		Env:  n.toolEnv(),
	}
}

func (n *realNode) kubeletSpec() childSpec {
	s := selfSpec(n.Exe, "kubelet",
		"--config="+filepath.Join(n.Dir, "kubelet-config.yaml"),
		"--kubeconfig="+filepath.Join(n.Dir, "kubelet.kubeconfig"),
		"--root-dir="+n.KubeletDir,
		"--cert-dir="+filepath.Join(n.KubeletDir, "pki"),
		"--hostname-override="+realNodeName,
		"--node-ip="+podGateway,
		"--v=1",
	)
	s.Env = n.toolEnv()
	return s
}

func (n *realNode) proxySpec() childSpec {
	s := selfSpec(n.Exe, "kube-proxy", "--config="+filepath.Join(n.Dir, "kube-proxy-config.yaml"))
	s.Env = n.toolEnv()
	return s
}

func (n *realNode) corednsSpec() childSpec {
	return childSpec{
		Name: "coredns",
		Path: n.CoreDNS,
		Args: []string{"coredns", "-conf", filepath.Join(n.Dir, "Corefile")},
	}
}

// ctrArgs runs ctr against our containerd in namespace k8s.io (the CRI's).
func (n *realNode) ctr(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", n.Socket, "--namespace", "k8s.io"}, args...)
	out, err := exec.CommandContext(ctx, n.Ctr, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// containerdReady reports whether containerd answers on its socket.
func (n *realNode) containerdReady(ctx context.Context) (bool, error) {
	_, err := n.ctr(ctx, "version")
	return err == nil, err
}

// ensurePauseImage imports the pause image unless the image store has it:
// pause.c from the kubernetes module (in the Go module cache) compiled with
// gcc -static, in a one-layer image written as a docker-archive.
func (n *realNode) ensurePauseImage(ctx context.Context) error {
	out, err := n.ctr(ctx, "images", "ls", "-q", "name=="+pauseImage)
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) == pauseImage {
		return nil
	}
	gomodcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	src := filepath.Join(strings.TrimSpace(string(gomodcache)), "k8s.io", "kubernetes@"+kubePauseTag, "build", "pause", "linux", "pause.c")
	if err != nil {
		src = filepath.Join(os.Getenv("HOME"), "go", "pkg", "mod", "k8s.io", "kubernetes@"+kubePauseTag, "build", "pause", "linux", "pause.c")
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("pause image: %s not found (it is in the Go module cache once localcluster is built: `go mod download k8s.io/kubernetes@%s`)", src, kubePauseTag)
	}
	work := filepath.Join(n.Dir, "pause")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(work, "pause")
	if out, err := exec.CommandContext(ctx, "gcc", "-Os", "-static", "-DVERSION="+kubePauseTag, "-o", bin, src).CombinedOutput(); err != nil {
		return fmt.Errorf("pause image: gcc -static %s: %v: %s", src, err, strings.TrimSpace(string(out)))
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	archive, err := dockerArchive(pauseImage, []string{"/pause"}, map[string][]byte{"pause": data})
	if err != nil {
		return err
	}
	tarPath := filepath.Join(work, "pause.tar")
	if err := os.WriteFile(tarPath, archive, 0o644); err != nil {
		return err
	}
	_, err = n.ctr(ctx, "images", "import", "--local", tarPath)
	return err
}

// dockerArchive builds a docker-archive (`docker save` format) of a
// one-layer image named name, whose layer holds files (mode 0755, mtime 0)
// and whose entrypoint is entrypoint.
func dockerArchive(name string, entrypoint []string, files map[string][]byte) ([]byte, error) {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	for path, data := range files {
		if err := lw.WriteHeader(&tar.Header{Name: path, Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := lw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := lw.Close(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": entrypoint},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(sum[:])}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{name}, "Layers": []string{"layer.tar"}}})
	var out bytes.Buffer
	w := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		data []byte
	}{{"config.json", config}, {"layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := w.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := w.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// removeAllPods stops and removes every pod sandbox (and so every container)
// through containerd's CRI, which also tears down their networks and mounts.
// The image store outlives runs, and with it the sandboxes of a run that was
// killed; they go before kubelet starts, and all go again on stop.
func (n *realNode) removeAllPods(ctx context.Context) error {
	conn, err := grpc.NewClient("unix://"+n.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	var errs []string
	for _, s := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, err.Error())
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove pod sandboxes: %s", strings.Join(errs, "; "))
	}
	return nil
}

// ensureDNSService creates the kube-dns Service (ClusterIP clusterDNSIP,
// port 53 UDP and TCP) without a selector, and an EndpointSlice pointing it
// at CoreDNS on the gateway address.
func ensureDNSService(ctx context.Context, cs kubernetes.Interface) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem, Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: clusterDNSIP,
			Ports: []corev1.ServicePort{
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
			},
		},
	}
	if _, err := cs.CoreV1().Services(metav1.NamespaceSystem).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Service kube-system/kube-dns: %w", err)
	}
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	port, dns, dnsTCP := int32(53), "dns", "dns-tcp"
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "kube-dns-host", Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{discoveryv1.LabelServiceName: "kube-dns", discoveryv1.LabelManagedBy: "localcluster"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{podGateway}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &dns, Protocol: &udp, Port: &port}, {Name: &dnsTCP, Protocol: &tcp, Port: &port}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceSystem).Create(ctx, slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create EndpointSlice kube-system/kube-dns-host: %w", err)
	}
	return nil
}
