package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
)

// stopGrace is how long each child gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// logTailLines is how much of a failed child's log `up` prints.
const logTailLines = 30

const upUsage = `usage: localcluster up [flags]

Starts a local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) on free loopback ports, with kwok
simulating --nodes fake Nodes and a development volume provisioner behind the
default StorageClass "standard". When it is ready it prints one line of JSON
on stdout:

  {"ready":true,"kubeconfig":"DIR/kubeconfig","server":"https://127.0.0.1:PORT",
   "version":"v1.x.y","dir":"DIR","nodes":["kwok-node-0",...]}

and runs until SIGINT, SIGTERM or SIGHUP (or, with --exit-on-stdin-close,
until stdin is closed), then stops everything and removes DIR unless --keep.
A second signal kills everything at once. SIGUSR1 restarts kube-apiserver
(same flags and data) and says when it is ready again, for tests of clients
that must survive that. Component logs are in DIR/logs.

--real-node (root only, one per machine) adds a real kubelet Node named
"local" that runs containers: containerd (its image store, --image-store,
outlives runs), a bridge asbr0 with pods in 10.89.0.0/24 and the host at
10.89.0.1 (no default route in pods: nothing leaves the machine),
kube-proxy (iptables) for Services, and CoreDNS as cluster DNS (Service
kube-system/kube-dns 10.0.0.10): cluster.local, the names in DIR/dns/hosts
("IP name" lines, re-read every second) and NXDOMAIN for the rest. The
ready line then also has:

  "realNode":"local"                         the Node's name
  "containerdAddress":"DIR/node/containerd/containerd.sock"
                                             import images with
                                             ctr --address ADDR -n k8s.io images import X.tar
  "podGateway":"10.89.0.1"                   the host as pods reach it (API
                                             server, CoreDNS, host-side servers
                                             behind selector-less Services)
  "podCIDR":"10.89.0.0/24"
  "clusterDNS":"10.0.0.10"
  "dnsHostsFile":"DIR/dns/hosts"
  "imageStore":"..."                         containerd's root

On stop every host change is undone (containers, mounts, iptables chains,
the bridge, kubepods cgroups, sysctls); a run after one that was killed
outright first undoes what that one left (recorded in
/run/agent-smith-localcluster/state.json).
--unthrottled lifts the control plane's rate limits, for scale benchmarks:
kube-apiserver without in-flight limits (--max-requests-inflight=0
--max-mutating-requests-inflight=0 --enable-priority-and-fairness=false),
kube-controller-manager and kube-scheduler with --kube-api-qps=2000
--kube-api-burst=4000 (defaults 20/30 and 50/100), kube-controller-manager
with --concurrent-statefulset-syncs=50 --concurrent-service-endpoint-syncs=50
(default 5), kwok playing 64 pod and 16 node stages at a time (default 4;
DIR/kwok/kwok.yaml), and the dev provisioner at 2000 QPS / burst 4000 with
32 PV requests in flight (default 50/100 and 8), provisioning a claim as
soon as it exists and binding it to its PV itself (the PV controller binds
claims one at a time, about 20/s on 2 cores) rather than waiting for the PV
controller. Without it every component keeps its defaults.

Exit status: 0 after a requested stop, 1 if start-up fails or a component
dies, 2 for bad flags.

flags:
`

// upOptions are the flags of `localcluster up`.
type upOptions struct {
	Dir              string        // state directory; "" means a new temporary one
	Keep             bool          // keep the state directory on exit
	Kwok             string        // kwok binary; "" means look it up
	Nodes            int           // number of fake Nodes
	ExitOnStdinClose bool          // stop when stdin reaches EOF
	Timeout          time.Duration // start-up timeout
	RealNode         bool          // run a real kubelet Node "local" too
	ImageStore       string        // containerd root for --real-node
	Unthrottled      bool          // lift the control plane's rate limits (see upUsage)
}

// defaultImageStore is ${AGENT_SMITH_CACHE:-$HOME/.cache/agent-smith}/containerd.
func defaultImageStore() string {
	cache := os.Getenv("AGENT_SMITH_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "agent-smith")
	}
	return filepath.Join(cache, "containerd")
}

// parseUpFlags parses the flags of `up`. It returns flag.ErrHelp for -h.
func parseUpFlags(args []string) (upOptions, error) {
	var o upOptions
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), upUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Dir, "dir", "", "state directory (certificates, kubeconfig, etcd data, logs, volumes); must be empty or absent.\nDefault: a new agent-smith-cluster-* directory under $TMPDIR")
	fs.BoolVar(&o.Keep, "keep", false, "keep the state directory on exit")
	fs.StringVar(&o.Kwok, "kwok", "", "path to the kwok binary (default: \"kwok\" beside this binary, then in $PATH)")
	fs.IntVar(&o.Nodes, "nodes", 2, fmt.Sprintf("number of fake kwok Nodes, kwok-node-0...; 0 to %d (0 runs no kwok)", maxNodes))
	fs.BoolVar(&o.ExitOnStdinClose, "exit-on-stdin-close", false, "stop the cluster when stdin reaches end of file (so it dies with a parent holding the pipe)")
	fs.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long start-up may take")
	fs.BoolVar(&o.RealNode, "real-node", false, "also run a real kubelet Node \"local\" with containerd, kube-proxy and CoreDNS (root only, one per machine)")
	fs.BoolVar(&o.Unthrottled, "unthrottled", false, "lift the control plane's API rate and in-flight limits (see above), for scale benchmarks")
	fs.StringVar(&o.ImageStore, "image-store", defaultImageStore(), "containerd's root (content store and snapshots) for --real-node; kept across runs so imported images survive")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case o.Nodes < 0 || o.Nodes > maxNodes:
		return o, fmt.Errorf("--nodes must be between 0 and %d, got %d", maxNodes, o.Nodes)
	case o.Timeout <= 0:
		return o, fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	return o, nil
}

// readyLine is the JSON `up` prints on stdout once the cluster is usable.
type readyLine struct {
	Ready      bool     `json:"ready"`
	Kubeconfig string   `json:"kubeconfig"`
	Server     string   `json:"server"`
	Version    string   `json:"version"`
	Dir        string   `json:"dir"`
	Nodes      []string `json:"nodes"`

	// With --real-node only (see upUsage).
	RealNode          string `json:"realNode,omitempty"`
	ContainerdAddress string `json:"containerdAddress,omitempty"`
	PodGateway        string `json:"podGateway,omitempty"`
	PodCIDR           string `json:"podCIDR,omitempty"`
	ClusterDNS        string `json:"clusterDNS,omitempty"`
	DNSHostsFile      string `json:"dnsHostsFile,omitempty"`
	ImageStore        string `json:"imageStore,omitempty"`
}

// runUp implements `localcluster up` and returns the process exit status.
func runUp(args []string) int {
	opts, err := parseUpFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "localcluster up: %v\n", err)
		return 2
	}

	// Children get SIGKILL as parent-death signal, which Linux sends when the
	// thread that started them exits. Pin this goroutine, which starts them
	// all, to its thread for good: the thread then lives as long as `up`.
	runtime.LockOSThread()
	// A parent that reads our stdout/stderr through pipes may die first; the
	// stop (and the host clean-up of --real-node) must still run to the end,
	// so a write to a closed pipe is an error, not death by SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)

	if opts.RealNode {
		if err := preflight(); err != nil {
			fmt.Fprintf(os.Stderr, "localcluster up: %v\n", err)
			return 1
		}
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "localcluster up: cannot find my own executable: %v\n", err)
		return 1
	}
	kwok := ""
	if opts.Nodes > 0 {
		if kwok, err = findKwok(opts.Kwok, exe); err != nil {
			fmt.Fprintf(os.Stderr, "localcluster up: %v\n", err)
			return 1
		}
	}
	var lock *hostLock
	if opts.RealNode {
		if lock, err = acquireHostLock(); err != nil {
			fmt.Fprintf(os.Stderr, "localcluster up: %v\n", err)
			return 1
		}
		defer lock.release()
		if err := undoLeftovers(); err != nil {
			fmt.Fprintf(os.Stderr, "localcluster up: %v\n", err)
			return 1
		}
	}
	dir, err := prepareDir(opts.Dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "localcluster up: %v\n", err)
		return 1
	}
	ports, err := freePorts(3)
	if err != nil {
		fmt.Fprintf(os.Stderr, "localcluster up: %v\n", err)
		removeDir(dir, opts.Keep)
		return 1
	}
	c := newCluster(exe, kwok, opts.Nodes, newLayout(dir, ports))
	c.Unthrottled = opts.Unthrottled
	if opts.RealNode {
		imageStore, err := filepath.Abs(opts.ImageStore)
		if err == nil {
			// Stale mounts of a run whose record is gone (the kill -9 case with a
			// record is handled by undoLeftovers above).
			for _, e := range unmountUnder(imageStore) {
				fmt.Fprintf(os.Stderr, "localcluster: %v\n", e)
			}
			c.Node, err = newRealNode(exe, dir, imageStore)
		}
		if err == nil {
			st := newHostState(dir, opts.Keep, imageStore, c.Node.Socket, exe)
			if err = writeHostState(st); err == nil {
				c.hostState = st
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "localcluster up: %v\n", err)
			removeDir(dir, opts.Keep)
			return 1
		}
	}

	// ctx ends, with the reason as its cause, on the first SIGINT, SIGTERM or
	// SIGHUP (a closed terminal) or, optionally, stdin EOF. A second signal kills everything at once.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		s := <-sigs
		cancel(fmt.Errorf("received %v", s))
		<-sigs
		fmt.Fprintln(os.Stderr, "localcluster: second signal, killing everything")
		c.KillAll()
	}()
	if opts.ExitOnStdinClose {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel(errors.New("stdin closed"))
		}()
	}

	code := serve(ctx, c, opts)
	removeDir(dir, opts.Keep)
	return code
}

// serve starts c, announces it, and supervises it until ctx ends or a child
// dies; it always stops c before returning the exit status.
func serve(ctx context.Context, c *cluster, opts upOptions) int {
	fmt.Fprintf(os.Stderr, "localcluster: starting a local control plane in %s\n", c.Layout.Dir)
	began := time.Now()
	startCtx, cancelStart := context.WithTimeoutCause(ctx, opts.Timeout,
		fmt.Errorf("start-up did not finish within %s", opts.Timeout))
	err := c.Start(startCtx)
	cancelStart()
	if err != nil {
		if ctx.Err() != nil { // a stop was requested while starting
			fmt.Fprintf(os.Stderr, "localcluster: %v during start-up, stopping\n", context.Cause(ctx))
		} else {
			err = c.Explain(err)
			fmt.Fprintf(os.Stderr, "localcluster: start-up failed: %v\n", err)
			if ch, ok := asChildExited(err); ok {
				printTail(ch)
			}
			if !opts.Keep {
				fmt.Fprintln(os.Stderr, "localcluster: (rerun with --keep to keep the logs)")
			}
		}
		c.Stop(stopGrace)
		return 1
	}

	provClient, err := kubernetes.NewForConfig(provisionerRESTConfig(c.Layout.Server(), c.pki, opts.Unthrottled))
	if err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: the dev provisioner's API client: %v\n", err)
		c.Stop(stopGrace)
		return 1
	}
	prov := &provisioner{Client: provClient, VolumesDir: c.Layout.Volumes, Interval: time.Second, Workers: 8}
	if opts.Unthrottled {
		prov.Workers, prov.Eager = 32, true
	}
	provCtx, stopProv := context.WithCancel(ctx)
	provDone := make(chan struct{})
	provLog, closeLog := openLog(filepath.Join(c.Layout.Logs, "provisioner.log"))
	prov.Log = provLog
	go func() {
		defer close(provDone)
		prov.Run(provCtx)
	}()

	ready := readyLine{
		Ready:      true,
		Kubeconfig: c.Layout.Kubeconfig,
		Server:     c.Layout.Server(),
		Version:    c.version,
		Dir:        c.Layout.Dir,
		Nodes:      append([]string{}, c.nodeNames...),
	}
	if n := c.Node; n != nil {
		ready.RealNode, ready.ContainerdAddress, ready.PodGateway, ready.PodCIDR = realNodeName, n.Socket, podGateway, podCIDR
		ready.ClusterDNS, ready.DNSHostsFile, ready.ImageStore = clusterDNSIP, n.DNSHosts, n.ImageStore
		fmt.Fprintf(os.Stderr, "localcluster: node %s Ready %.1fs after kubelet started, %.1fs after up began\n",
			realNodeName, time.Since(c.kubeletStarted).Seconds(), time.Since(began).Seconds())
	}
	line, _ := json.Marshal(ready)
	fmt.Println(string(line))
	fmt.Fprintf(os.Stderr, "local control plane ready (Kubernetes %s) after %.1fs\n", c.version, time.Since(began).Seconds())
	fmt.Fprintf(os.Stderr, "export KUBECONFIG=%s\n", c.Layout.Kubeconfig)
	fmt.Fprintln(os.Stderr, "press Ctrl-C to stop")

	// SIGUSR1 restarts kube-apiserver (for tests of clients that must survive it).
	// The restart runs here, on the thread that started the children (Pdeathsig).
	restart := make(chan os.Signal, 1)
	signal.Notify(restart, syscall.SIGUSR1)
	defer signal.Stop(restart)

	code := 0
loop:
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "localcluster: %v, stopping\n", context.Cause(ctx))
			break loop
		case ch := <-c.Exited():
			fmt.Fprintf(os.Stderr, "localcluster: %v, stopping everything\n", &childExitedError{Child: ch})
			printTail(ch)
			code = 1
			break loop
		case <-restart:
			fmt.Fprintln(os.Stderr, "localcluster: SIGUSR1, restarting kube-apiserver")
			began := time.Now()
			if err := c.RestartAPIServer(ctx, stopGrace); err != nil {
				fmt.Fprintf(os.Stderr, "localcluster: restarting kube-apiserver failed: %v, stopping everything\n", err)
				code = 1
				break loop
			}
			fmt.Fprintf(os.Stderr, "localcluster: kube-apiserver ready again after %.1fs\n", time.Since(began).Seconds())
		}
	}
	stopProv()
	<-provDone
	closeLog()
	c.Stop(stopGrace)
	return code
}

// undoLeftovers undoes the host changes of an earlier real-node run that
// did not stop cleanly (killed outright: its record is still there while we
// hold the lock), and removes its state directory unless it ran with --keep.
func undoLeftovers() error {
	st, err := readHostState()
	if err != nil || st == nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "localcluster: cleaning up after the real-node cluster in %s (pid %d), which did not stop cleanly\n", st.Dir, st.PID)
	errs := undoHostChanges(st)
	for _, err := range errs {
		fmt.Fprintf(os.Stderr, "localcluster: clean-up: %v\n", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("could not undo what the cluster in %s left on this machine (see above)", st.Dir)
	}
	if !st.Keep && st.Dir != "" {
		_ = os.RemoveAll(st.Dir)
	}
	return os.Remove(hostStatePath())
}

// printTail prints the end of a child's log to stderr.
func printTail(ch *child) {
	fmt.Fprintf(os.Stderr, "---- last %d lines of %s ----\n%s\n----\n", logTailLines, ch.LogPath, ch.LogTail(logTailLines))
}

// openLog opens path for appending as a logger; if that fails it logs to
// stderr instead. The returned function closes the file.
func openLog(path string) (*log.Logger, func()) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: %v; logging to stderr\n", err)
		return log.New(os.Stderr, "localcluster: ", log.LstdFlags), func() {}
	}
	return log.New(f, "", log.LstdFlags), func() { _ = f.Close() }
}

// findKwok resolves the kwok binary: flagValue if set (a path, or a name
// looked up in $PATH), else "kwok" in the directory of exe, else "kwok" in
// $PATH. It returns an absolute path, or an error saying how to get kwok.
func findKwok(flagValue, exe string) (string, error) {
	candidates := []string{flagValue}
	if flagValue == "" {
		candidates = []string{filepath.Join(filepath.Dir(exe), "kwok"), "kwok"}
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return filepath.Abs(p)
		} else if flagValue != "" {
			return "", fmt.Errorf("--kwok: %w", err)
		}
	}
	return "", fmt.Errorf("kwok not found beside %s or in $PATH; build it with "+
		"`source scripts/lib/tools.sh && ensure_kwok`, pass --kwok, or use --nodes=0", exe)
}

// prepareDir returns the absolute state directory: a new temporary directory
// if dir is "", else dir, created if absent. An existing dir must be empty,
// since `up` deletes it on exit and assumes a fresh etcd and PKI.
func prepareDir(dir string) (string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "agent-smith-cluster-*")
		if err != nil {
			return "", fmt.Errorf("create state directory: %w", err)
		}
		return filepath.Abs(d)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("--dir: %w", err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return "", fmt.Errorf("--dir: %w", err)
	}
	if len(entries) > 0 {
		return "", fmt.Errorf("--dir %s is not empty; `up` needs a fresh directory (and deletes it on exit unless --keep)", abs)
	}
	return abs, nil
}

// removeDir deletes the state directory unless keep is set, in which case it
// says where it is.
func removeDir(dir string, keep bool) {
	if keep {
		fmt.Fprintf(os.Stderr, "localcluster: kept %s\n", dir)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "localcluster: remove %s: %v\n", dir, err)
	}
}
