package main

// Host side of `up --real-node`: the checks that the machine can run
// containers, the one-per-machine lock, the record of every host change
// (kept outside DIR so that a run after a `kill -9` can undo what the killed
// one left) and the undoing itself.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Address plan of the real node. Pods get addresses on bridgeName; the host
// side of the bridge (podGateway) is where pods reach the API server,
// CoreDNS, kubelet and any host-side server behind a selector-less Service.
// There is no default route in pods: nothing leaves the machine.
const (
	bridgeName     = "asbr0"
	podCIDR        = "10.89.0.0/24"
	podGateway     = "10.89.0.1"
	podGatewayCIDR = "10.89.0.1/24"
	clusterDNSIP   = "10.0.0.10" // the kube-dns Service
	realNodeName   = "local"
	cniNetworkName = "agent-smith"
	kubeletPort    = 10250
	// firewallChain holds our own filter rules (INPUT: the API server and
	// kubelet ports only from loopback and the bridge; FORWARD: nothing from
	// the bridge to another interface).
	firewallChain = "AS-LOCALCLUSTER"
	// hostStateDir holds the lock and the record of host changes; /run is a
	// tmpfs, so a reboot (which undoes everything anyway) clears it.
	hostStateDir = "/run/agent-smith-localcluster"
)

// recordedSysctls are the sysctls kubelet, kube-proxy, the CNI bridge plugin
// or `up` itself may change; their values before start are restored on stop.
var recordedSysctls = []string{
	"kernel/panic",
	"kernel/panic_on_oops",
	"vm/overcommit_memory",
	"net/ipv4/ip_forward",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
	"net/ipv4/conf/all/route_localnet",
	"net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

// hostState is the record, in hostStateDir/state.json, of one real-node run:
// enough to undo its host changes even if `up` was killed outright.
type hostState struct {
	PID        int               `json:"pid"`
	Dir        string            `json:"dir"`        // the run's state directory
	Keep       bool              `json:"keep"`       // --keep: leave Dir in place
	ImageStore string            `json:"imageStore"` // containerd root
	Socket     string            `json:"socket"`     // containerd socket (identifies the shims)
	Exe        string            `json:"exe"`        // localcluster, for kube-proxy --cleanup
	Sysctls    map[string]string `json:"sysctls"`    // value before start, by /proc/sys path
	// Paths outside DIR that did not exist before and that kubelet or CNI create.
	CreatedPaths []string `json:"createdPaths"`
}

// pathsKubeletCreates are written by kubelet and the CNI library whatever
// their configured directories; they are removed on stop if absent before.
var pathsKubeletCreates = []string{"/var/lib/kubelet", "/var/lib/cni", "/run/containerd"}

// preflight checks that this machine can run the real node and returns a
// one-line error naming what is missing otherwise.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("--real-node must run as root (it runs kubelet and containerd, creates a bridge and iptables rules); rerun with sudo")
	}
	// runc, iptables, ip and conntrack live in the sbin directories, which a
	// non-login root shell's PATH may lack; kubelet and kube-proxy inherit this.
	path := os.Getenv("PATH")
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path += ":" + d
		}
	}
	_ = os.Setenv("PATH", path)
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("this machine cannot run containers: %v", err)
	}
	if !strings.Contains(string(fs), "\toverlay\n") {
		return errors.New("this machine cannot run containers: the kernel has no overlayfs (no \"overlay\" in /proc/filesystems)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err2 := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err2 != nil {
			return errors.New("this machine cannot run containers: no cgroup hierarchy under /sys/fs/cgroup")
		}
	}
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		return errors.New("this machine cannot run containers: the kernel has no bridge netfilter (/proc/sys/net/bridge is missing)")
	}
	for _, tool := range []string{"runc", "iptables", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore", "ip", "conntrack", "gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("this machine cannot run containers: %s is not installed (`source scripts/lib/tools.sh && ensure_node_runtime` installs it)", tool)
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			return fmt.Errorf("this machine cannot run containers: CNI plugin %s is missing from %s (Debian package containernetworking-plugins; ensure_node_runtime installs it)", plugin, cniBinDir)
		}
	}
	return nil
}

// cniBinDir is where Debian's containernetworking-plugins puts the plugins.
const cniBinDir = "/usr/lib/cni"

// findTool resolves one of the programs the real node runs (containerd, its
// shim, ctr, coredns): beside this binary first, then in $PATH.
func findTool(name, exe string) (string, error) {
	for _, c := range []string{filepath.Join(filepath.Dir(exe), name), name} {
		if p, err := exec.LookPath(c); err == nil {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("this machine cannot run the real node: %s not found beside %s or in $PATH (`source scripts/lib/tools.sh && ensure_real_node` builds it)", name, exe)
}

// hostLock is the one-real-node-per-machine lock: an flock on
// hostStateDir/lock, released by the kernel when `up` exits however it exits.
type hostLock struct{ f *os.File }

// acquireHostLock takes the lock or fails naming the state directory of the
// cluster holding it.
func acquireHostLock() (*hostLock, error) {
	if err := os.MkdirAll(hostStateDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(hostStateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		other := "unknown"
		if st, err := readHostState(); err == nil && st != nil {
			other = fmt.Sprintf("%s (pid %d)", st.Dir, st.PID)
		}
		return nil, fmt.Errorf("another real-node cluster is running on this machine: %s; stop it first (one real node per machine)", other)
	}
	return &hostLock{f: f}, nil
}

func (l *hostLock) release() { _ = l.f.Close() }

func hostStatePath() string { return filepath.Join(hostStateDir, "state.json") }

// readHostState returns the recorded state, or nil if there is none.
func readHostState() (*hostState, error) {
	data, err := os.ReadFile(hostStatePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st hostState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", hostStatePath(), err)
	}
	return &st, nil
}

// writeHostState records st (atomically: temp file and rename).
func writeHostState(st *hostState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := hostStatePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, hostStatePath())
}

// newHostState records the machine as it is now: the sysctls' values and
// which paths kubelet may create do not exist yet.
func newHostState(dir string, keep bool, imageStore, socket, exe string) *hostState {
	st := &hostState{PID: os.Getpid(), Dir: dir, Keep: keep, ImageStore: imageStore, Socket: socket, Exe: exe, Sysctls: map[string]string{}}
	for _, name := range recordedSysctls {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", name)); err == nil {
			st.Sysctls[name] = strings.TrimSpace(string(v))
		}
	}
	for _, p := range pathsKubeletCreates {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			st.CreatedPaths = append(st.CreatedPaths, p)
		}
	}
	return st
}

// setSysctl writes value to /proc/sys/<name>.
func setSysctl(name, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644)
}

// runCmd runs a command, returning its combined output in the error.
func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setupHostNetwork creates the bridge with the gateway address (before the
// API server starts, so it can advertise that address), turns on bridge
// netfilter (so Services work between pods on the bridge) and adds our
// firewall chain: the API server (bound to every address) and kubelet answer
// only on loopback and the bridge, and nothing is forwarded from the bridge
// to another interface.
//
// A bridge or chains of ours already there are leftovers of a run whose
// record is gone (we hold the one-per-machine lock): they are removed first.
func setupHostNetwork(apiserverPort int) error {
	if _, err := os.Stat("/sys/class/net/" + bridgeName); err == nil {
		if err := runCmd("ip", "link", "del", bridgeName); err != nil {
			return err
		}
	}
	for _, v := range []string{"iptables", "ip6tables"} {
		if err := removeChains(v); err != nil {
			return err
		}
	}
	if err := runCmd("ip", "link", "add", bridgeName, "type", "bridge"); err != nil {
		return err
	}
	if err := runCmd("ip", "addr", "add", podGatewayCIDR, "dev", bridgeName); err != nil {
		return err
	}
	if err := runCmd("ip", "link", "set", bridgeName, "up"); err != nil {
		return err
	}
	if err := setSysctl("net/bridge/bridge-nf-call-iptables", "1"); err != nil {
		return err
	}
	rules := [][]string{
		{"-N", firewallChain},
		{"-A", firewallChain, "-i", "lo", "-j", "RETURN"},
		{"-A", firewallChain, "-i", bridgeName, "-j", "RETURN"},
		{"-A", firewallChain, "-p", "tcp", "-m", "multiport", "--dports", fmt.Sprintf("%d,%d", apiserverPort, kubeletPort), "-j", "DROP"},
		{"-I", "INPUT", "-j", firewallChain},
		{"-I", "FORWARD", "-i", bridgeName, "!", "-o", bridgeName, "-j", "DROP"},
	}
	for _, r := range rules {
		if err := runCmd("iptables", r...); err != nil {
			return err
		}
	}
	return nil
}

// undoHostChanges undoes everything a real-node run recorded in st did to
// the host, as far as it can, and returns what it could not undo. It is safe
// to run on a host where part (or all) of it was undone already.
func undoHostChanges(st *hostState) []error {
	var errs []error
	// 1. Every container and shim of the node: shims outlive containerd.
	killNodeProcesses(st.Socket)
	// 2. Mounts under DIR (kubelet's root, pod volumes, netns, rootfs) and the image store.
	errs = append(errs, unmountUnder(st.Dir, st.ImageStore)...)
	// 3. iptables: kube-proxy's own cleanup, then every KUBE-* chain (kubelet's)
	// and our firewall chain.
	if st.Exe != "" {
		cmd := exec.Command(st.Exe, "kube-proxy", "--cleanup")
		cmd.Args[0] = "localcluster"
		_ = cmd.Run()
	}
	for _, v := range []string{"iptables", "ip6tables"} {
		if err := removeChains(v); err != nil {
			errs = append(errs, err)
		}
	}
	// 4. The bridge (its veths went with the pods' network namespaces).
	if _, err := os.Stat("/sys/class/net/" + bridgeName); err == nil {
		if err := runCmd("ip", "link", "del", bridgeName); err != nil {
			errs = append(errs, err)
		}
	}
	// 5. The kubepods cgroups, deepest first.
	errs = append(errs, removeKubepodsCgroups()...)
	// 6. Sysctls.
	for name, v := range st.Sysctls {
		if cur, err := os.ReadFile(filepath.Join("/proc/sys", name)); err == nil && strings.TrimSpace(string(cur)) == v {
			continue
		}
		if err := setSysctl(name, v); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", name, v, err))
		}
	}
	// 7. Paths outside DIR that kubelet, CNI or containerd created.
	for _, p := range st.CreatedPaths {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// killNodeProcesses SIGKILLs every containerd shim serving socket and every
// process in a kubepods cgroup, and waits (up to 5 s) until they are gone.
func killNodeProcesses(socket string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := nodeProcesses(socket)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nodeProcesses lists the shims whose -address is socket and the processes
// of the kubepods cgroups.
func nodeProcesses(socket string) []int {
	seen := map[int]bool{}
	var pids []int
	add := func(pid int) {
		if pid > 0 && pid != os.Getpid() && !seen[pid] {
			seen[pid] = true
			pids = append(pids, pid)
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == socket {
				add(pid)
			}
		}
	}
	for _, root := range kubepodsCgroups() {
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					add(pid)
				}
			}
			return nil
		})
	}
	return pids
}

// kubepodsCgroups lists the kubepods cgroup directories in every mounted hierarchy.
func kubepodsCgroups() []string {
	var dirs []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/kubepods", "/sys/fs/cgroup/kubepods"} {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	return dirs
}

// removeKubepodsCgroups removes the kubepods cgroups, children first (a
// cgroup directory is removed with rmdir once it has no processes).
func removeKubepodsCgroups() []error {
	var errs []error
	for _, root := range kubepodsCgroups() {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for try := 0; try < 20; try++ { // a killed process may take a moment to leave
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errs
}

// mountsUnder lists the mount points at or under any of roots, deepest first.
func mountsUnder(roots ...string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		for _, r := range roots {
			if r != "" && (mp == r || strings.HasPrefix(mp, r+"/")) {
				out = append(out, mp)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMountinfo decodes the octal escapes (\040 for a space ...) of a
// /proc/self/mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder lazily unmounts every mount at or under roots, deepest first,
// until none is left (stacked mounts need several passes).
func unmountUnder(roots ...string) []error {
	var last []string
	for pass := 0; pass < 10; pass++ {
		mps := mountsUnder(roots...)
		if len(mps) == 0 {
			return nil
		}
		last = mps
		for _, mp := range mps {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
	return []error{fmt.Errorf("could not unmount %s", strings.Join(last, ", "))}
}

// removeChains deletes every chain named KUBE-* or firewallChain, and every
// rule jumping to one, from each table of one iptables variant
// ("iptables" or "ip6tables"), with one save/restore per table that has any.
func removeChains(variant string) error {
	out, err := exec.Command(variant + "-save").Output()
	if err != nil {
		return fmt.Errorf("%s-save: %w", variant, err)
	}
	ours := func(chain string) bool { return strings.HasPrefix(chain, "KUBE-") || chain == firewallChain }
	type table struct {
		name  string
		lines []string
		dirty bool
	}
	var tables []*table
	var cur *table
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			cur = &table{name: line[1:]}
			tables = append(tables, cur)
			cur.lines = append(cur.lines, line)
		case cur == nil:
		case strings.HasPrefix(line, ":"):
			chain := strings.Fields(line[1:])[0]
			if ours(chain) {
				cur.dirty = true
				continue
			}
			cur.lines = append(cur.lines, line)
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			drop := ours(f[1])
			for i := 0; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
					drop = true
				}
			}
			// Our FORWARD rule (setupHostNetwork) has no chain of its own.
			if f[1] == "FORWARD" && strings.Contains(line, "-i "+bridgeName+" ! -o "+bridgeName+" -j DROP") {
				drop = true
			}
			if drop {
				cur.dirty = true
				continue
			}
			cur.lines = append(cur.lines, line)
		default:
			cur.lines = append(cur.lines, line)
		}
	}
	for _, t := range tables {
		if !t.dirty {
			continue
		}
		// Without --noflush, restore rewrites only the tables in its input: this one.
		cmd := exec.Command(variant + "-restore")
		cmd.Stdin = strings.NewReader(strings.Join(t.lines, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s-restore (table %s): %v: %s", variant, t.name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
