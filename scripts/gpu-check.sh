#!/usr/bin/env bash
# The one script a GPU session runs on the device machine (CUDA 13, PyTorch, Triton; no Rust,
# no network), from the repository root, with the bundle made by scripts/gpu-bundle.sh carried:
#   run(command="bash scripts/gpu-check.sh", carry=["gpu-bundle"], timeout_s=540)
# Steps, each under its own timeout, all inside 8 minutes:
#   1. environment (GPU, driver, torch) and bundle checks
#   2. the bundled test executables (runtime + kernels, the cuda feature on: the executor test
#      compiles every kernel and runs one on the GPU)
#   3. cross-backend: every testdata model through `switchhead logits --executor cuda` against
#      its golden files (fp32 1e-3, bf16 1e-2)
#   4. benchmarks: synth c4-262m and wt103-262m, PyTorch eager prefill/decode on the GPU,
#      against device ceilings (large GEMM via torch, device memcpy)
# Everything lands in $OUT (at most 8 files): summary.txt, env.txt, tests.log, compare.json,
# bench.json, run.log.
# --dry-run: the parts that need no GPU, here: argument parsing, bundle checks, synth of a tiny
# model, the comparison with --executor cpu, the PyTorch path on the CPU (if torch is present).
set -uo pipefail
usage() { echo "usage: $0 [--dry-run] [--bundle DIR] [--out DIR]" >&2; exit 2; }
dry=0; bundle=gpu-bundle; out=${OUT:-}
while (($#)); do
  case $1 in
    --dry-run) dry=1 ;;
    --bundle) bundle=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
[[ -d $bundle ]] || { echo "no bundle at $bundle: run scripts/gpu-bundle.sh first" >&2; exit 2; }
bundle=$(cd "$bundle" && pwd)
out=${out:-/tmp/gpu-check-out}; mkdir -p "$out"; out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/gpu-check.XXXXXX)
start=$SECONDS
log="$out/run.log"; summary="$out/summary.txt"; : >"$log"; : >"$summary"
say() { echo "$*" | tee -a "$summary"; }
step() { echo "== [$((SECONDS - start))s] $*" | tee -a "$log"; }
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=1

# Libraries: the toolkit's and the pip wheels' (libnvrtc), so cudarc finds what it can;
# failing that the prebuilt PTX is the kernel cache's fallback.
for d in /usr/local/cuda/lib64 /usr/local/nvidia/lib64 \
  $("$py" -c 'import nvidia, os; r = list(nvidia.__path__)[0]; print(" ".join(os.path.join(r, s, "lib") for s in sorted(os.listdir(r))))' 2>/dev/null); do
  [[ -d $d ]] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export SWITCHHEAD_KERNEL_CACHE="$work/kernels"; mkdir -p "$SWITCHHEAD_KERNEL_CACHE"
cp "$bundle"/ptx/*.ptx "$SWITCHHEAD_KERNEL_CACHE"/ 2>/dev/null

step "1. environment and bundle"
{
  echo "dry_run=$dry"; uname -a; nvidia-smi -L 2>&1; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1
  ls /usr/local/cuda/lib64/libnvrtc* 2>&1; echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
} >"$out/env.txt" 2>&1
sh="$bundle/bin/switchhead"
missing=0
for f in "$sh" "$bundle/bin/switchhead-compile" "$bundle/testdata/scripts/reference.py" "$bundle/scripts/gpu_bench.py" "$bundle/scripts/gpu_compare.py"; do
  [[ -e $f ]] || { say "bundle: missing $f"; missing=1; }
done
ntests=$(ls "$bundle"/tests 2>/dev/null | wc -l); nptx=$(ls "$bundle"/ptx/*.ptx 2>/dev/null | wc -l)
say "bundle: $ntests test executables, $nptx prebuilt PTX modules, binary: $("$sh" --version 2>&1)"
((missing)) && { say "bundle incomplete"; exit 1; }

step "2. test executables"
: >"$out/tests.log"; pass=0; fail=0
for t in "$bundle"/tests/*; do
  if ((dry)); then echo "would run $(basename "$t")" >>"$out/tests.log"; continue; fi
  echo "--- $(basename "$t")" >>"$out/tests.log"
  if timeout 90 "$t" --test-threads=4 --nocapture >>"$out/tests.log" 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
say "tests: $pass executables passed, $fail failed (tests.log)"
grep -h "SKIPPED\|found .*compute_" "$out/tests.log" | sort -u | head -20 | tee -a "$summary"

step "3. cross-backend"
executor=cuda; ((dry)) && executor=cpu
timeout 120 "$py" "$bundle/scripts/gpu_compare.py" --switchhead "$sh" --models "$bundle/testdata/models" \
  --executor "$executor" --out "$out/compare.json" 2>&1 | tee -a "$log" | head -3 | tee -a "$summary"

step "4. benchmarks"
models=()
if ((dry)); then
  "$sh" synth -o "$work/tiny" --d-model 64 --n-layers 2 --n-heads 2 --n-experts 4 --moe-k 2 --d-head 16 \
    --d-ff 128 --vocab-size 256 --pos-encoding xl --ffn dense --chunk-size 32 >>"$log" 2>&1 && models+=("$work/tiny")
  bench_args=(--device cpu --dtype f32 --batch 2 --iters 1 --ceilings --gemm-n 256)
else
  for p in c4-262m wt103-262m; do
    timeout 90 "$sh" synth --preset "$p" -o "$work/$p" >>"$log" 2>&1 && models+=("$work/$p")
  done
  bench_args=(--device cuda --dtype bf16 --batch 8 --iters 10 --ceilings)
fi
say "synth: ${#models[@]} models ($(for m in "${models[@]}"; do basename "$m"; done | tr '\n' ' '))"
timeout 240 "$py" "$bundle/scripts/gpu_bench.py" --reference "$bundle/testdata/scripts/reference.py" \
  --out "$out/bench.json" "${bench_args[@]}" "${models[@]}" 2>&1 | tee -a "$log" | tail -4 | tee -a "$summary"
# Our backend on the same models: recorded once the CUDA backend runs plans.
for m in "${models[@]}"; do
  msg=$("$sh" logits "$m" --tokens "$bundle/testdata/models/xl/golden_short.safetensors" -o "$work/o.safetensors" --executor cuda 2>&1 | tail -1)
  ((dry)) || say "switchhead cuda on $(basename "$m"): $msg"
done

say "done in $((SECONDS - start))s; results in $out"
rm -rf "$work"
