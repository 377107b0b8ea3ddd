#!/usr/bin/env bash
# Builds every bundle the services use by default, into .cache/models:
#   all-minilm-l6-v2(+int8)   the undistilled student (student/student baseline)
#   all-mpnet-base-v2(+int8)  the teacher
#   leaf-minilm-mpnet(+int8)  the student distilled into the teacher's space (served by default), assembled from
#                             the pinned base weights + the committed artifact training/artifacts/leaf-minilm-mpnet/
# Nothing here trains: distillation is an offline run of hours (python -m tandem_training.distill --budget ...)
# whose product is that artifact. Each step skips a bundle already built from the same inputs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$here/.venv/bin/python"
[ -x "$py" ] || { echo "training/.venv is missing: run training/setup.sh first" >&2; exit 1; }
cd "$here"
start=$SECONDS
"$py" -m tandem_training.bundle build all-minilm-l6-v2
"$py" -m tandem_training.bundle build all-mpnet-base-v2
"$py" -m tandem_training.artifact assemble leaf-minilm-mpnet
echo "[build-all] bundles ready in $((SECONDS - start)) s: $(ls "$here/../.cache/models" | tr '\n' ' ')"
