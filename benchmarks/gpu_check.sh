#!/usr/bin/env bash
# The CUDA checks, for a machine with an NVIDIA GPU, in under 5 minutes:
#   1. which GPU, and which providers deploybench finds usable (deploybench env);
#   2. the tests marked `cuda` (pytest -m cuda);
#   3. the quick suite with --providers cpu,cuda, printing its tables.
# It installs nothing: it runs with the python3 it finds (PYTHON=... to choose), from this
# checkout. Frameworks or exporters missing there (TensorFlow, skl2onnx on the lent H200 image)
# are skipped by deploybench with the reason; nothing here fails because of them.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-$(mktemp -d)}/gpu-check"

echo "== GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    || echo "nvidia-smi found no GPU"
echo "== deploybench env"
timeout 60 "$PY" -m toolkit.cli env
echo "== pytest -m cuda"
timeout 120 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests
tests=$?
echo "== quick suite, cpu and cuda"
timeout 240 "$PY" -m toolkit.cli run --suite quick --providers cpu,cuda --out "$out"
suite=$?
echo "== done: pytest exit $tests, suite exit $suite, results in $out"
[ "$tests" -eq 0 ] || [ "$tests" -eq 5 ] || exit "$tests"
exit "$suite"
