#!/usr/bin/env bash
# Builds what a GPU session carries to the device machine (which has no Rust toolchain):
#   gpu-bundle/bin/       switchhead, switchhead-compile (release, --features cuda)
#   gpu-bundle/tests/     the test executables that need no cargo at run time (runtime, kernels)
#   gpu-bundle/ptx/       every kernel module's PTX for compute_90 (the fallback when the
#                         device's libnvrtc is not one cudarc loads), if libnvrtc is found here
#   gpu-bundle/testdata/  models + golden files, testdata/scripts/reference.py
#   gpu-bundle/scripts/   gpu-check.sh, gpu_bench.py, gpu_compare.py
# then checks it stays under the 64 MiB a device call carries.
# Usage: scripts/gpu-bundle.sh [OUT_DIR]   (NVRTC_LIB=dir with libnvrtc.so.12 for the PTX)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-bundle}
limit=$((60 * 1024 * 1024))
rm -rf "$out" && mkdir -p "$out"/{bin,tests,ptx,scripts}
feat=(--features switchhead-cli/cuda)

cargo build --release -p switchhead-cli "${feat[@]}"
tgt=${CARGO_TARGET_DIR:-target}
cp "$tgt/release/switchhead" "$tgt/release/switchhead-compile" "$out/bin/"

# Test executables: only those that do not need cargo's build-time paths (CARGO_BIN_EXE_*).
cargo test --release --no-run -p switchhead-runtime -p switchhead-kernels "${feat[@]}" \
  --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"] + "\t" + m["executable"])
' | while IFS=$'\t' read -r name exe; do
  cp "$exe" "$out/tests/$(basename "$(dirname "$(dirname "$exe")")")-$name" 2>/dev/null || cp "$exe" "$out/tests/$name-$(basename "$exe")"
done
strip "$out"/bin/* "$out"/tests/* 2>/dev/null || true

nvrtc_dir=${NVRTC_LIB:-}
if [[ -z "$nvrtc_dir" ]]; then
  nvrtc_dir=$(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib"))' 2>/dev/null || true)
fi
if [[ -n "$nvrtc_dir" && -d "$nvrtc_dir" ]]; then
  LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" SWITCHHEAD_PTX_OUT="$PWD/$out/ptx" \
    cargo test --release -p switchhead-kernels "${feat[@]}" --test nvrtc_compile -- --nocapture
else
  echo "no libnvrtc here (set NVRTC_LIB): the bundle has no prebuilt PTX; the device must have NVRTC"
fi

mkdir -p "$out/testdata/scripts"
cp -r testdata/models "$out/testdata/"
cp testdata/scripts/reference.py "$out/testdata/scripts/"
cp scripts/gpu-check.sh scripts/gpu_bench.py scripts/gpu_compare.py "$out/scripts/"
size=$(du -sb "$out" | cut -f1)
echo "bundle $out: $((size / 1024 / 1024)) MiB"; ls -la "$out"/bin "$out"/tests "$out"/ptx
if (( size > limit )); then
  echo "error: the bundle is $size bytes, over the $limit carried to the device" >&2
  exit 1
fi
