#!/usr/bin/env bash
# Creates training/.venv with the pinned requirements and installs tandem_training (editable).
# Needs only PyPI (no model hub). Idempotent: re-running upgrades nothing that already matches the pins.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3.11}"
# pip is the last thing venv installs: without it the venv was cut short (an interrupted set-up) and is made anew.
if [ ! -x "$here/.venv/bin/pip" ]; then
  echo "[setup] creating $here/.venv with $($python --version)"
  "$python" -m venv --clear "$here/.venv"
fi
echo "[setup] installing pinned requirements"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$here"
echo "[setup] ok: $here/.venv/bin/python -m tandem_training.bundle --help"
