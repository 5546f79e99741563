#!/usr/bin/env bash
# The whole test suite: the Rust tests, including the ONNX Runtime checks, which need a Python
# venv with onnx and onnxruntime (made here in .venv on first use, from scripts/requirements-ci.txt),
# and the OpenCL device tests, which need an OpenCL device (PoCL: Debian's pocl-opencl-icd;
# without one they print SKIPPED, unless SWITCHHEAD_REQUIRE_OPENCL is set, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SWITCHHEAD_VENV:-.venv}
if ! "$venv/bin/python" -c "import onnx, onnxruntime, onnxruntime_genai, numpy, safetensors, maturin, pytest" 2>/dev/null; then
  echo "creating $venv with onnx, onnxruntime, onnxruntime-genai, maturin, pytest (scripts/requirements-ci.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-ci.txt
fi
export SWITCHHEAD_PYTHON="$(cd "$venv" && pwd)/bin/python"
cargo test --workspace --features switchhead-cli/cuda,switchhead-cli/opencl "$@"
# The Python package (python/): installed into the venv and tested with pytest. Built with the
# dev profile (maturin's `--profile test` would build a test harness): its dependencies are
# those the cargo test above built (same features, opt-level 3), so only the workspace crates
# compile again, unoptimized; the wheel a user's `pip install ./python` builds is release.
PATH="$(cd "$venv" && pwd)/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" \
  "$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./python
"$venv/bin/python" -m pytest -q python/tests
