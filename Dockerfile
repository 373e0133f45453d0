# syntax=docker/dockerfile:1
# Multi-stage build, one target per image:
#   docker build --target operator -t agent-smith/operator .
#   docker build --target agent    -t agent-smith/agent .
# Nothing in this repository's tests needs Docker; this is for shipping.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim AS base
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY agent-image ./agent-image

# The operator: TypeScript run directly by Node 24's type stripping.
FROM base AS operator
COPY operator ./operator
COPY agents/_shared ./agents/_shared
USER 65532:65532
ENTRYPOINT ["node", "/app/operator/src/main.ts"]

# The agent pod's image: setup, supervise, proxy and egress-init entry points, tini,
# tmux, git and the coding-agent CLIs.
FROM base AS agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini tmux git ca-certificates iptables openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --create-home --home-dir /home/agent agent \
 && useradd --uid 1337 --no-create-home proxy \
 && npm install -g @anthropic-ai/claude-code \
 && printf '#!/bin/sh\nexec node /app/agent-image/src/cli.ts "$@"\n' > /usr/local/bin/agent-smith \
 && chmod +x /usr/local/bin/agent-smith
USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["tini", "--", "agent-smith"]
CMD ["supervise"]
