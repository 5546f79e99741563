#!/usr/bin/env bash
# Builds what a GPU session carries to the device machine (which has no Rust toolchain and no
# network):
#   gpu-bundle/bin/             switchhead, switchhead-compile (release, --features
#                               switchhead-cli/cuda; opencl is a default feature), stripped,
#                               xz-compressed (NAME.xz; gpu-check.sh unpacks them)
#   gpu-bundle/tests/           (also NAME.xz) the test executables that need no cargo: the
#                               kernels and runtime crates' (lib + integration tests), except
#                               those whose source uses CARGO_BIN_EXE_
#   gpu-bundle/ptx/             every kernel module's PTX for compute_90 (the kernel cache's
#                               fallback when the device has no libnvrtc cudarc loads), if
#                               libnvrtc is found here
#   gpu-bundle/testdata/        models/ (with their goldens), scripts/reference.py
#   gpu-bundle/official-golden/ ../shared/official-golden's models and goldens
#   gpu-bundle/scripts/         gpu-check.sh, gpu_bench.py, gpu_compare.py (+ scripts/gpu/)
#   gpu-bundle/MANIFEST.txt     commit, build features, every file with its size
# then checks it stays under 60 MiB (a device call carries 64 MiB).
# Usage: scripts/gpu-bundle.sh [OUT_DIR]   (default gpu-bundle, git-ignored; carry it by that
#        name). NVRTC_LIB=dir holding libnvrtc.so.12 for the PTX (default: the
#        nvidia-cuda-nvrtc-cu12 wheel of python3 or of /tmp/nvrtc/bin/python).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-gpu-bundle}
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$root"
limit=$((60 * 1024 * 1024))
case $out in "$root" | / | "$HOME") echo "refusing to use $out as the bundle directory" >&2; exit 2 ;; esac
rm -rf "$out" && mkdir -p "$out"/{bin,tests,ptx,scripts,testdata/scripts}
tgt=${CARGO_TARGET_DIR:-target}
[[ $tgt = /* ]] || tgt=$root/$tgt
t0=$SECONDS
note() { echo "gpu-bundle [$((SECONDS - t0))s]: $*" >&2; }

note "building the binaries (release, cuda + opencl)"
cargo build --release -p switchhead-cli --features switchhead-cli/cuda
cp "$tgt/release/switchhead" "$tgt/release/switchhead-compile" "$out/bin/"

# The kernels and runtime crates' tests, with the features the CLI build gave them (so their
# dependencies are not rebuilt). Integration tests that use CARGO_BIN_EXE_* need cargo's
# build-time paths: left out.
note "building the test executables (kernels, runtime)"
test_features=switchhead-runtime/cuda,switchhead-runtime/opencl,switchhead-kernels/cuda,switchhead-kernels/opencl
artifacts=$(mktemp)
trap 'rm -f "$artifacts"' EXIT
cargo test --release --no-run -p switchhead-runtime -p switchhead-kernels --features "$test_features" \
  --message-format=json-render-diagnostics >"$artifacts"
python3 - "$artifacts" "$out/tests" <<'EOF'
import json, os, shutil, sys
arts, dst = sys.argv[1], sys.argv[2]
seen = set()
for line in open(arts):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    pkg = m["package_id"].split("#")[-1].split("@")[0]
    pkg = pkg.rsplit("/", 1)[-1].removeprefix("switchhead-")
    kind = m["target"]["kind"][0]
    name = f"{pkg}-lib" if kind == "lib" else f"{pkg}-{m['target']['name']}"
    src = m["target"]["src_path"]
    if "CARGO_BIN_EXE_" in open(src, errors="replace").read():
        print(f"  skip {name}: {os.path.relpath(src)} uses CARGO_BIN_EXE_", file=sys.stderr)
        continue
    if name in seen:
        continue
    seen.add(name)
    shutil.copy2(m["executable"], os.path.join(dst, name))
    print(f"  test {name}", file=sys.stderr)
if not seen:
    sys.exit("gpu-bundle: no test executables found")
EOF
strip "$out"/bin/* "$out"/tests/* 2>/dev/null || note "strip failed: the binaries stay unstripped"


# Prebuilt PTX: the nvrtc_compile test writes every module's PTX to SWITCHHEAD_PTX_OUT.
nvrtc_dir=${NVRTC_LIB:-}
if [[ -z $nvrtc_dir ]]; then
  for py in python3 /tmp/nvrtc/bin/python; do
    nvrtc_dir=$("$py" -c 'import nvidia.cuda_nvrtc as m, os; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null) && break
    nvrtc_dir=
  done
fi
if [[ -z $nvrtc_dir ]]; then
  for d in /tmp/nvrtc/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib; do [[ -d $d ]] && nvrtc_dir=$d; done
fi
ptx_note="no prebuilt PTX (no libnvrtc here; set NVRTC_LIB): the device must have NVRTC"
if [[ -n $nvrtc_dir && -d $nvrtc_dir && -x $out/tests/kernels-nvrtc_compile ]]; then
  note "compiling the kernels to PTX with $nvrtc_dir"
  if LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" SWITCHHEAD_PTX_OUT="$out/ptx" \
    "$out/tests/kernels-nvrtc_compile" --nocapture --test-threads=1 >&2; then
    ptx_note="$(ls "$out"/ptx/*.ptx 2>/dev/null | wc -l) PTX modules from $nvrtc_dir"
  else
    ptx_note="the NVRTC compile test FAILED: the bundle's PTX is incomplete"
  fi
  (($(ls "$out"/ptx/*.ptx 2>/dev/null | wc -l))) || ptx_note="no PTX written ($ptx_note)"
fi
note "$ptx_note"

# Executables travel xz-compressed (stripped, switchhead alone is ~35 MB; xz takes it to ~7):
# gpu-check.sh unpacks them (xz, else Python's lzma) into its work directory.
note "compressing the executables"
for f in "$out"/bin/* "$out"/tests/*; do
  if command -v xz >/dev/null; then
    xz -T0 -6 "$f"
  else
    python3 -c 'import lzma, os, sys; f = sys.argv[1]; open(f + ".xz", "wb").write(lzma.compress(open(f, "rb").read(), preset=6)); os.remove(f)' "$f"
  fi
done

cp -r testdata/models "$out/testdata/"
rm -f "$out"/testdata/models/*.log
cp testdata/scripts/reference.py "$out/testdata/scripts/"
if [[ -d ../shared/official-golden ]]; then
  cp -r ../shared/official-golden "$out/official-golden"
else
  note "no ../shared/official-golden: the bundle has no official goldens"
fi
cp scripts/gpu-check.sh scripts/gpu_bench.py scripts/gpu_compare.py "$out/scripts/"
[[ -d scripts/gpu ]] && cp -r scripts/gpu "$out/scripts/"

{
  echo "built $(date -u +%FT%TZ) on $(uname -n)"
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
  echo "binaries: --features switchhead-cli/cuda (+ default opencl); tests: --features $test_features"
  echo "ptx: $ptx_note"
  echo "needs glibc >= $(objdump -T "$tgt/release/switchhead" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 | sed 's/GLIBC_//')"
  (cd "$out" && find . -type f ! -name MANIFEST.txt -printf '%s\t%p\n' | sort -k2)
} >"$out/MANIFEST.txt"

size=$(du -sb "$out" | cut -f1)
ls -la "$out"/bin "$out"/tests "$out"/ptx >&2
echo "bundle $out: $size bytes ($((size / 1024 / 1024)) MiB; limit $((limit / 1024 / 1024)) MiB), built in $((SECONDS - t0))s"
if ((size > limit)); then
  echo "error: the bundle is $size bytes, over the $limit that may be carried to the device" >&2
  exit 1
fi
