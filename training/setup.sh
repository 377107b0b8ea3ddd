#!/usr/bin/env bash
# Creates training/.venv with the pinned requirements and installs tandem_training (editable).
# Needs only PyPI (no model hub). Idempotent: re-running upgrades nothing that already matches the pins.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3.11}"
if [ ! -x "$here/.venv/bin/python" ]; then
  echo "[setup] creating $here/.venv with $($python --version)"
  "$python" -m venv "$here/.venv"
fi
echo "[setup] installing pinned requirements"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$here"
echo "[setup] ok: $here/.venv/bin/python -m tandem_training.bundle --help"
