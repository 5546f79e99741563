#!/usr/bin/env bash
# The whole test suite: the Rust tests, including the ONNX Runtime checks, which need a Python
# venv with onnx and onnxruntime (made here in .venv on first use, from scripts/requirements-ci.txt),
# and the OpenCL device tests, which need an OpenCL device (PoCL: Debian's pocl-opencl-icd;
# without one they print SKIPPED, unless SWITCHHEAD_REQUIRE_OPENCL is set, as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${SWITCHHEAD_VENV:-.venv}
if ! "$venv/bin/python" -c "import onnx, onnxruntime, numpy, safetensors" 2>/dev/null; then
  echo "creating $venv with onnx and onnxruntime (scripts/requirements-ci.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-ci.txt
fi
export SWITCHHEAD_PYTHON="$(cd "$venv" && pwd)/bin/python"
cargo test --workspace --features switchhead-cli/cuda,switchhead-cli/opencl "$@"
