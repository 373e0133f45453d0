# syntax=docker/dockerfile:1
# Multi-stage build, one target per image:
#   docker build --target operator -t agent-smith/operator .
#   docker build --target agent    -t agent-smith/agent .
# Nothing in this repository's tests needs Docker; this is for shipping.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
# node-pty (agent-smith attach) builds a native addon.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim AS base
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY agent-image ./agent-image

# agent-image compiled to JavaScript (agent-image/tsconfig.build.json): the long-lived
# supervisor starts without type stripping, which costs ~28 MB of RSS.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY agent-image ./agent-image
RUN npx tsc -p agent-image/tsconfig.build.json --outDir /out

# The operator: TypeScript run directly by Node 24's type stripping. V8 would let the
# heap grow to several times the live set (caches of ~35 kB per Agent); a 1 MB young
# generation and an old generation allowed 20 % over the live set after each full GC keep
# the peak RSS at about 2/5 for ~25 % more CPU (test/bench/results.md, which runs the
# operator with these flags).
FROM base AS operator
COPY operator ./operator
COPY agents/_shared ./agents/_shared
USER 65532:65532
ENTRYPOINT ["node", "--max-semi-space-size=1", "--heap-growing-percent=20", "/app/operator/src/main.ts"]

# The agent pod's image: `agent-smith` (setup, supervise, attach, hook; proxy and
# egress-init follow), tini, tmux, git, iptables, kubectl and the Claude Code CLI.
# Claude Code's version is pinned to the one the tests run (package.json devDependencies).
FROM registry.k8s.io/kubectl:v1.35.4 AS kubectl

FROM base AS agent
ARG CLAUDE_CODE_VERSION=2.1.330
COPY --from=kubectl /bin/kubectl /usr/local/bin/kubectl
COPY --from=build /out/agent-image/src ./agent-image/src
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini tmux git ca-certificates iptables openssh-client procps \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --create-home --home-dir /home/agent --shell /bin/bash agent \
 && useradd --uid 1337 --no-create-home --shell /usr/sbin/nologin proxy \
 && npm install -g --no-audit --no-fund @anthropic-ai/claude-code@${CLAUDE_CODE_VERSION} \
 && ln -s /app/agent-image/bin/agent-smith /usr/local/bin/agent-smith \
 && mkdir -p /workspace && chown 1000:1000 /workspace
USER 1000:1000
ENV HOME=/home/agent SHELL=/bin/bash
WORKDIR /workspace
ENTRYPOINT ["tini", "-g", "--", "agent-smith"]
CMD ["supervise"]
