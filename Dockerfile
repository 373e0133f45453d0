# syntax=docker/dockerfile:1
# Multi-stage build, one target per image:
#   docker build --target operator -t agent-smith/operator .
#   docker build --target agent    -t agent-smith/agent .
# Nothing in this repository's tests needs Docker; this is for shipping.
#
# The base images are build arguments, so a machine without registry access can build
# from images it made itself (scripts/images, scripts/lib/images.sh: a Debian + Node base
# with the official node image's layout and `node` user, and a kubectl image):
#   --build-arg NODE_IMAGE=... --build-arg KUBECTL_IMAGE=...
# Behind a TLS-inspecting proxy, hand npm the CA bundle as a build secret; it is mounted
# only while npm runs and ends up in no layer. Without the secret the build is the same:
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt ...
ARG NODE_IMAGE=node:24-bookworm-slim
ARG KUBECTL_IMAGE=registry.k8s.io/kubectl:v1.35.4

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# node-pty (agent-smith attach) builds a native addon, against the headers of the base
# image's own Node (/usr/local/include/node), so node-gyp downloads none (node-gyp reads
# npm_package_config_node_gyp_nodedir; npm 11 warns that npm_config_nodedir will stop working).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca_bundle; fi \
 && npm_package_config_node_gyp_nodedir=/usr/local npm ci --omit=dev --no-audit --no-fund

# agent-image compiled to JavaScript (agent-image/tsconfig.build.json): the long-lived
# supervisor starts without type stripping, which costs ~28 MB of RSS.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca_bundle; fi \
 && npm ci --no-audit --no-fund --ignore-scripts
COPY agent-image ./agent-image
RUN npx tsc -p agent-image/tsconfig.build.json --outDir /out

# The operator compiled to JavaScript (operator/tsconfig.build.json; `npm run
# build:operator` makes the same tree in operator/dist): type stripping's machinery stays
# in the process for its whole life. The output mirrors the tree, with the part of
# agent-image it imports (agent-image/src/contract).
FROM build AS operator-build
COPY operator ./operator
RUN npx tsc -p operator/tsconfig.build.json --outDir /out/operator-dist

# The operator. V8 would let the heap grow to several times the live set; a 1 MB young
# generation and an old generation allowed 20 % over the live set after each full GC keep
# the peak RSS at about 2/5 for ~25 % more CPU (test/bench/results.md, which runs the
# operator with these flags). V8's optimising compilers (TurboFan, Maglev) are off: their
# code and feedback grew the heap with the Agents reconciled; without them the peak RSS at
# 300 Agents was 134 MB instead of 163 MB for ~10 % more CPU and the same time to Ready
# (test/bench/operator-memory.ts, 2026-12-07). Sparkplug's baseline code is off too and V8
# favours size (--optimize-for-size, freed pooled pages decommitted), as in the supervisor:
# 1,000 Agents peaked at 141 MB instead of 148 MB (129 MB instead of 148 MB after the
# burst) for ~15 % more CPU (same bench, 2026-12-07T09:20). The shared rules sit where the
# compiled config.js looks by default (<dist>/agents/_shared; --shared-dir overrides it).
FROM ${NODE_IMAGE} AS operator
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=operator-build /out/operator-dist ./operator/dist
COPY agents/_shared ./operator/dist/agents/_shared
USER 65532:65532
ENTRYPOINT ["node", "--max-semi-space-size=1", "--heap-growing-percent=20", "--no-opt", "--no-maglev", "--no-sparkplug", "--optimize-for-size", "--decommit-pooled-pages", "/app/operator/dist/operator/src/main.js"]

# The agent pod's image: `agent-smith` (setup, supervise, attach, hook, proxy, egress-init),
# tini, tmux, git, curl, gh (GitHub's CLI), jq, ripgrep, iptables, kubectl and the Claude
# Code CLI. Claude Code's version is pinned to the one the tests run (package.json
# devDependencies). The tools and users
# come first (stage agent-tools), our code last, so a change of our code rebuilds only the
# small layers on top.
FROM ${KUBECTL_IMAGE} AS kubectl

FROM ${NODE_IMAGE} AS agent-tools
ARG CLAUDE_CODE_VERSION=2.1.330
COPY --from=kubectl /bin/kubectl /usr/local/bin/kubectl
# Users: the agent (UID/GID 1000, as the operator renders the pod) and the egress proxy
# (UID/GID 1337, the one UID the firewall lets out; the pod names it by number only). The
# node base image's `node` user already holds UID/GID 1000, so whoever holds them is
# removed first; Debian already has a user named `proxy` (UID 13), hence `egress-proxy`.
RUN --mount=type=secret,id=ca_bundle,required=false \
    apt-get update \
 && apt-get install -y --no-install-recommends tini tmux git curl ca-certificates iptables openssh-client procps gh jq ripgrep \
 && rm -rf /var/lib/apt/lists/* \
 && if getent passwd 1000 >/dev/null; then userdel --remove "$(getent passwd 1000 | cut -d: -f1)"; fi \
 && if getent group 1000 >/dev/null; then groupdel "$(getent group 1000 | cut -d: -f1)"; fi \
 && groupadd --gid 1000 agent \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/agent --shell /bin/bash agent \
 && groupadd --gid 1337 egress-proxy \
 && useradd --uid 1337 --gid 1337 --no-create-home --shell /usr/sbin/nologin egress-proxy \
 && if [ -s /run/secrets/ca_bundle ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca_bundle; fi \
 && npm install -g --no-audit --no-fund @anthropic-ai/claude-code@${CLAUDE_CODE_VERSION} \
 && rm -rf /root/.npm \
 && ln -s /app/agent-image/bin/agent-smith /usr/local/bin/agent-smith \
 && mkdir -p /workspace && chown 1000:1000 /workspace

FROM agent-tools AS agent
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY agent-image ./agent-image
COPY --from=build /out/agent-image/src ./agent-image/src
USER 1000:1000
ENV HOME=/home/agent SHELL=/bin/bash
WORKDIR /workspace
ENTRYPOINT ["tini", "-g", "--", "agent-smith"]
CMD ["supervise"]
