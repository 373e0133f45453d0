package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// pollInterval is how often start-up checks (etcd health, /readyz, Nodes
// Ready, ...) are retried.
const pollInterval = 250 * time.Millisecond

// cluster is one run of `up`: the state directory layout, the supervised
// children and an admin client for the API server.
type cluster struct {
	Exe    string // this binary, run once per control-plane component
	Kwok   string // the kwok binary; unused when Nodes is 0
	Nodes  int    // number of fake Nodes to create
	Layout layout
	// Unthrottled (up --unthrottled) lifts the control plane's rate limits: see
	// apiserverLimits, clientLimits, kwokUnthrottledConfig and provisionerRESTConfig.
	Unthrottled bool
	// Node is the real node (up --real-node), nil without; hostState is the
	// record of its host changes, undone by Stop.
	Node      *realNode
	hostState *hostState

	pki            *pkiFiles
	client         kubernetes.Interface
	version        string    // the API server's gitVersion, known once started
	kubeletStarted time.Time // when kubelet was started (real node)
	nodeNames      []string  // the fake Nodes, known once started

	mu       sync.Mutex
	children []*child        // in start order; guarded by mu
	expected map[*child]bool // children being restarted on purpose; guarded by mu
	exited   chan *child     // children that exited while not stopping
	stopping atomic.Bool
}

func newCluster(exe, kwok string, nodes int, l layout) *cluster {
	return &cluster{
		Exe: exe, Kwok: kwok, Nodes: nodes, Layout: l,
		// Every child exits at most once; the buffer means the watchers never block.
		exited:   make(chan *child, 8),
		expected: map[*child]bool{},
	}
}

// Start brings the whole cluster up: PKI and kubeconfig, etcd, kube-apiserver
// (waiting for /readyz), kube-controller-manager, kube-scheduler, kwok, the
// default StorageClass and the fake Nodes (waiting until they are Ready and
// the `default` ServiceAccount exists, so Pods can be created right away).
//
// It returns an error wrapping a *childExitedError if a child exits, or the
// cause of ctx if ctx ends (interrupt, start-up timeout) first. Whatever it
// returns, the caller must call Stop. Start must run on the goroutine that
// locked its OS thread (see startChild).
func (c *cluster) Start(ctx context.Context) error {
	for _, d := range []string{c.Layout.Logs, c.Layout.Volumes, c.Layout.KwokHome} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	var err error
	var extraIPs []net.IP
	if c.Node != nil {
		extraIPs = append(extraIPs, net.ParseIP(podGateway))
	}
	if c.pki, err = generatePKI(filepath.Join(c.Layout.Dir, "pki"), extraIPs...); err != nil {
		return fmt.Errorf("generate certificates: %w", err)
	}
	if c.Node != nil {
		if err := c.Node.issueCerts(c.pki); err != nil {
			return fmt.Errorf("generate certificates: %w", err)
		}
		if err := c.Node.writeConfigs(c.Layout, c.pki); err != nil {
			return fmt.Errorf("write the real node's configuration: %w", err)
		}
		if err := setupHostNetwork(c.Layout.APIServerPort); err != nil {
			return fmt.Errorf("set up the pod network: %w", err)
		}
		// containerd needs nothing else: start it first, it is ready by the time the API server is.
		if err := c.spawn(c.Node.containerdSpec()); err != nil {
			return err
		}
	}
	if err := writeKubeconfig(c.Layout.Kubeconfig, c.Layout.Server(), c.pki); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	if c.client, err = kubernetes.NewForConfig(adminRESTConfig(c.Layout.Server(), c.pki)); err != nil {
		return fmt.Errorf("API client: %w", err)
	}

	if err := c.spawn(etcdSpec(c.Exe, c.Layout)); err != nil {
		return err
	}
	if err := c.poll(ctx, "etcd to be healthy", c.etcdHealthy); err != nil {
		return err
	}

	if err := c.spawn(apiserverSpec(c.Exe, c.Layout, c.pki, c.Node, c.Unthrottled)); err != nil {
		return err
	}
	if err := c.poll(ctx, "kube-apiserver to be ready", c.apiserverReady); err != nil {
		return err
	}
	if c.Node != nil {
		if err := c.poll(ctx, "containerd to answer", c.Node.containerdReady); err != nil {
			return err
		}
		if err := c.Node.ensurePauseImage(ctx); err != nil {
			return err
		}
		if err := c.Node.removeAllPods(ctx); err != nil {
			return err
		}
	}

	kwokConfig := ""
	if c.Unthrottled {
		if kwokConfig, err = writeKwokConfig(c.Layout); err != nil {
			return err
		}
	}
	specs := []childSpec{controllerManagerSpec(c.Exe, c.Layout, c.pki, c.Unthrottled), schedulerSpec(c.Exe, c.Layout, c.Unthrottled)}
	if c.Nodes > 0 {
		specs = append(specs, kwokSpec(c.Kwok, c.Layout, kwokConfig))
	}
	for _, s := range specs {
		if err := c.spawn(s); err != nil {
			return err
		}
	}

	if err := ensureStorageClass(ctx, c.client); err != nil {
		return err
	}
	if c.nodeNames, err = createNodes(ctx, c.client, c.Nodes); err != nil {
		return err
	}
	waitFor := c.nodeNames
	if c.Node != nil {
		if err := ensureDNSService(ctx, c.client); err != nil {
			return err
		}
		for _, s := range []childSpec{c.Node.corednsSpec(), c.Node.proxySpec(), c.Node.kubeletSpec()} {
			if err := c.spawn(s); err != nil {
				return err
			}
		}
		c.kubeletStarted = time.Now()
		waitFor = append(append([]string{}, waitFor...), realNodeName)
	}
	if err := c.poll(ctx, "the Nodes to be Ready", func(ctx context.Context) (bool, error) {
		return nodesReady(ctx, c.client, waitFor)
	}); err != nil {
		return err
	}
	if err := c.poll(ctx, "the default ServiceAccount", c.defaultServiceAccountExists); err != nil {
		return err
	}

	v, err := c.client.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("get the API server's version: %w", err)
	}
	c.version = v.GitVersion
	return nil
}

// spawn starts spec and watches it: if it exits before Stop is called, it is
// sent on c.exited.
func (c *cluster) spawn(spec childSpec) error {
	ch, err := startChild(spec, c.Layout.Logs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.children = append(c.children, ch)
	c.mu.Unlock()
	c.watch(ch)
	return nil
}

// watch reports ch on c.exited if it exits on its own (not stopped, not restarted).
func (c *cluster) watch(ch *child) {
	go func() {
		<-ch.Done()
		c.mu.Lock()
		expected := c.expected[ch]
		delete(c.expected, ch)
		c.mu.Unlock()
		if !expected && !c.stopping.Load() {
			c.exited <- ch
		}
	}()
}

// RestartAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after grace) and
// starts it again with the same flags and data, returning once it is ready. It
// lets tests prove that clients survive an API-server restart (watches resume,
// nothing is lost). Like Start, it must run on the goroutine that locked its
// OS thread.
func (c *cluster) RestartAPIServer(ctx context.Context, grace time.Duration) error {
	c.mu.Lock()
	idx := -1
	for i, ch := range c.children {
		if ch.Name == "kube-apiserver" {
			idx = i
		}
	}
	if idx < 0 {
		c.mu.Unlock()
		return errors.New("no kube-apiserver to restart")
	}
	old := c.children[idx]
	c.expected[old] = true
	c.mu.Unlock()

	old.Stop(grace)
	ch, err := startChild(apiserverSpec(c.Exe, c.Layout, c.pki, c.Node, c.Unthrottled), c.Layout.Logs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.children[idx] = ch
	c.mu.Unlock()
	c.watch(ch)
	return c.poll(ctx, "kube-apiserver to be ready again", c.apiserverReady)
}

// Exited receives each child that exits on its own, i.e. before Stop.
func (c *cluster) Exited() <-chan *child { return c.exited }

// Explain turns a start-up error that is really the symptom of a dead child
// (say, "connection refused" from a crashed API server) into a
// *childExitedError for that child, waiting briefly for the exit to be
// noticed. Other errors are returned unchanged.
func (c *cluster) Explain(err error) error {
	if _, ok := asChildExited(err); ok || err == nil {
		return err
	}
	select {
	case ch := <-c.exited:
		return fmt.Errorf("%w (after: %v)", &childExitedError{Child: ch}, err)
	case <-time.After(500 * time.Millisecond):
		return err
	}
}

// poll runs check every pollInterval until it returns true. It fails with
// a *childExitedError as soon as any child exits, or with ctx's cause (and
// the last check error, which usually says what is missing) when ctx ends.
func (c *cluster) poll(ctx context.Context, what string, check func(context.Context) (bool, error)) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		ok, err := check(ctx)
		if ok {
			return nil
		}
		if err != nil && ctx.Err() == nil { // not just the deadline cutting it short
			lastErr = err
		}
		select {
		case ch := <-c.exited:
			return &childExitedError{Child: ch}
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w while waiting for %s (last check: %v)", context.Cause(ctx), what, lastErr)
			}
			return fmt.Errorf("%w while waiting for %s", context.Cause(ctx), what)
		case <-ticker.C:
		}
	}
}

// etcdHealthy checks etcd's /health endpoint.
func (c *cluster) etcdHealthy(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Layout.EtcdURL()+"/health", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("etcd /health: %s", resp.Status)
	}
	return true, nil
}

// apiserverReady checks the API server's /readyz as the admin user.
func (c *cluster) apiserverReady(ctx context.Context) (bool, error) {
	_, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil, err
}

// defaultServiceAccountExists reports whether the controller-manager has
// created the `default` ServiceAccount in namespace default; until then the
// ServiceAccount admission plugin rejects Pods there.
func (c *cluster) defaultServiceAccountExists(ctx context.Context) (bool, error) {
	_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
	return err == nil, err
}

// Stop stops every child in reverse start order: SIGTERM to its process
// group, then SIGKILL after grace. Exits from then on are expected and no
// longer reported on Exited.
//
// With a real node, every pod is removed through the CRI before containerd
// stops, and then every host change is undone (undoHostChanges: leftover
// shims and containers killed, mounts, iptables chains, bridge, cgroups,
// sysctls), and the record of them removed.
func (c *cluster) Stop(grace time.Duration) {
	c.stopping.Store(true)
	c.mu.Lock()
	children := append([]*child(nil), c.children...)
	c.mu.Unlock()
	for i := len(children) - 1; i >= 0; i-- {
		if children[i].Name == "containerd" && c.Node != nil {
			select {
			case <-children[i].Done():
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				if err := c.Node.removeAllPods(ctx); err != nil {
					fmt.Fprintf(os.Stderr, "localcluster: %v (the host clean-up kills what is left)\n", err)
				}
				cancel()
			}
		}
		children[i].Stop(grace)
	}
	if c.hostState != nil {
		for _, err := range undoHostChanges(c.hostState) {
			fmt.Fprintf(os.Stderr, "localcluster: host clean-up: %v\n", err)
		}
		if err := os.Remove(hostStatePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "localcluster: %v\n", err)
		}
	}
}

// KillAll sends SIGKILL to every child's process group at once, for a second
// interrupt while Stop is being patient. It does not wait.
func (c *cluster) KillAll() {
	c.stopping.Store(true)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.children {
		ch.Kill()
	}
}
