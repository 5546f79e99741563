#!/usr/bin/env bash
# The one script a GPU session runs on the device machine (CUDA, PyTorch with CUDA, Python with
# numpy; no Rust, no network), from the repository root, with the bundle made by
# scripts/gpu-bundle.sh carried:
#   run(command="bash scripts/gpu-check.sh", carry=["gpu-bundle"], timeout_s=540)
# Steps, each under its own `timeout`, all inside --budget seconds (default 450: 7.5 minutes);
# a step's failure is recorded in summary.txt and the next step still runs:
#   1. environment (GPU, driver, libraries, torch) and bundle checks (every file there, the
#      binary runs);
#   2. the bundled test executables (kernels and runtime crates, cuda + opencl features);
#   3. golden tests through `switchhead logits --executor cuda`: every testdata model and the
#      official-golden models, f32 (max rel err <= 1e-4) and bf16 (<= 1e-2), every logits*
#      tensor (gpu_compare.py);
#   4. benchmarks (gpu_bench.py): synth c4-262m; ours (`switchhead bench --executor cuda`,
#      f32 and bf16) prefill at batch 8 x 512 tokens and decode at batch 1 after a 256-token
#      prompt; PyTorch eager (testdata/scripts/reference.py) on the same weights and GPU; the
#      GEMM ceiling (bf16 / f32 torch.matmul TFLOP/s) and the device copy bandwidth (GB/s);
#      ratios: ours vs PyTorch at b8/s512 (target >= 2x), decode ms/step vs one read of the
#      weights at the measured bandwidth (target <= 2x).
# Results in $OUT (or --out): summary.txt, env.txt, tests.log, compare.json, bench.json,
# run.log. Exit status 0 when every step passed, 1 otherwise (2: bad arguments / no bundle).
#
# --dry-run: everything that needs no GPU, anywhere: argument parsing, bundle checks, listing
# the test executables' tests, the golden comparison with --executor opencl (PoCL), a tiny
# synthesized model benched with --executor opencl, the PyTorch path on the CPU if torch is
# importable (else recorded as skipped). Default budget there: 1500 s.
set -uo pipefail
usage() {
  echo "usage: $0 [--dry-run] [--bundle DIR] [--out DIR] [--budget SECONDS]" >&2
  exit 2
}
dry=0 bundle= out=${OUT:-} budget=
while (($#)); do
  case $1 in
    --dry-run) dry=1 ;;
    --bundle) [[ $# -ge 2 ]] || usage; bundle=$2; shift ;;
    --bundle=*) bundle=${1#*=} ;;
    --out) [[ $# -ge 2 ]] || usage; out=$2; shift ;;
    --out=*) out=${1#*=} ;;
    --budget) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage; budget=$2; shift ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
  shift
done
here=$(cd "$(dirname "$0")" && pwd)
# The bundle: --bundle (relative to where we were started), else the one this script sits in,
# else gpu-bundle at the repository root.
if [[ -z $bundle ]]; then
  if [[ -e $here/../bin/switchhead.xz || -x $here/../bin/switchhead ]]; then bundle=$here/..; else bundle=$here/../gpu-bundle; fi
fi
[[ -d $bundle ]] || { echo "no bundle at $bundle: run scripts/gpu-bundle.sh first" >&2; exit 2; }
bundle=$(cd "$bundle" && pwd)
out=${out:-/tmp/gpu-check-out}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
budget=${budget:-$((dry ? 1500 : 450))}
start=$SECONDS
deadline=$((start + budget))
work=$(mktemp -d /tmp/gpu-check.XXXXXX)
log=$out/run.log summary=$out/summary.txt
: >"$log"; : >"$summary"; : >"$out/tests.log"
rm -f "$out/compare.json" "$out/bench.json" "$out/env.txt"
py=${PYTHON:-python3}
executor=cuda; ((dry)) && executor=opencl
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 RUST_BACKTRACE=1
failed=()    # names of failed steps
steps=()     # one line per step

say() { echo "$*" | tee -a "$log" >>"$summary"; }
say_file() { [[ -s $1 ]] && tee -a "$log" <"$1" >>"$summary"; }
elapsed() { echo $((SECONDS - start)); }
section() { echo "== [$(elapsed)s] $*" | tee -a "$log" >>"$summary"; echo "== [$(elapsed)s] $*" >&2; }
# cap N [RESERVE]: N seconds, or what the budget leaves after RESERVE seconds (at least 1).
cap() {
  local left=$((deadline - SECONDS - ${2:-0}))
  ((left < 1)) && left=1
  echo $((left < $1 ? left : $1))
}
# run T LOGFILE CMD...: CMD under `timeout T` (killed 10 s after TERM); its stdout + stderr
# land in $last, then are appended to LOGFILE and run.log; returns CMD's status (124: timed out).
last=$work/last.out
run() {
  local t=$1 file=$2 rc
  shift 2
  echo "\$ (timeout ${t}s) $*" >>"$log"
  timeout -k 10 "$t" "$@" >"$last" 2>&1 </dev/null
  rc=$?
  ((rc == 124 || rc == 137)) && echo "(timed out after ${t}s)" >>"$last"
  cat "$last" >>"$log"
  [[ $file == "$log" ]] || cat "$last" >>"$file"
  return $rc
}
# record NAME RC SECONDS [DETAIL]: one line in the step list; a failure marks the run failed.
record() {
  local what="ok"
  if (($2 != 0)); then
    what="FAILED (exit $2$( (($2 == 124 || $2 == 137)) && echo ', timed out'))"
    failed+=("$1")
  fi
  steps+=("$(printf '%-26s %-28s %4ss %s' "$1" "$what" "$3" "${4:-}")")
}
finish() {
  trap - EXIT INT TERM
  section "steps"
  for s in "${steps[@]}"; do say "$s"; done
  if ((${#failed[@]})); then
    say "RESULT: ${#failed[@]} step(s) failed: ${failed[*]}"
  else
    say "RESULT: all steps passed"
  fi
  say "done in $(elapsed)s (budget ${budget}s); results in $out"
  rm -rf "$work"
  echo "----- summary.txt" >&2
  cat "$summary"
}
trap 'say "interrupted at $(elapsed)s"; failed+=(interrupted); finish; exit 1' INT TERM
trap 'rm -rf "$work"' EXIT

say "gpu-check $( ((dry)) && echo 'DRY RUN (no GPU: --executor opencl)' || echo 'on the device (--executor cuda)') $(date -u +%FT%TZ) on $(uname -n)"

# ------------------------------------------------------------------ 1. environment and bundle
section "1. environment and bundle"
t1=$SECONDS
# Libraries: the toolkit's and the pip wheels' (libnvrtc, cuBLAS), so cudarc finds what it can;
# failing that the bundle's prebuilt PTX is the kernel cache's fallback.
nv_wheels=$(timeout 20 "$py" -c 'import nvidia, os; r = list(nvidia.__path__)[0]; print(" ".join(os.path.join(r, s, "lib") for s in sorted(os.listdir(r))))' 2>/dev/null)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 $nv_wheels; do
  [[ -d $d ]] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export SWITCHHEAD_KERNEL_CACHE=$work/kernels
mkdir -p "$SWITCHHEAD_KERNEL_CACHE"
cp "$bundle"/ptx/*.ptx "$SWITCHHEAD_KERNEL_CACHE"/ 2>/dev/null
# Executables: the bundle's NAME.xz unpacked into the work directory (xz, else Python's
# lzma); a plain NAME copied.
unpack() {
  case $1 in
    *.xz) { xz -dc "$1" >"$2" 2>/dev/null ||
      "$py" -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' "$1" "$2"; } ;;
    *) cp "$1" "$2" ;;
  esac && chmod +x "$2"
}
mkdir -p "$work/bin" "$work/tests"
unpack_failed=()
for f in "$bundle"/bin/* "$bundle"/tests/*; do
  [[ -f $f ]] || continue
  d=$work/$(basename "$(dirname "$f")")/$(basename "${f%.xz}")
  unpack "$f" "$d" || unpack_failed+=("${f#"$bundle"/}")
done
sh=$work/bin/switchhead
{
  echo "dry_run=$dry executor=$executor budget=${budget}s bundle=$bundle out=$out"
  date -u; uname -a; echo "cores: $(nproc)"; free -g 2>&1 | head -2; df -h /tmp 2>&1 | tail -1
  echo "--- GPU"
  timeout 20 nvidia-smi -L 2>&1
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,power.limit,temperature.gpu,compute_cap --format=csv 2>&1
  timeout 20 nvidia-smi 2>&1 | grep -i "cuda version"
  echo "--- libraries"
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  ldconfig -p 2>/dev/null | grep -E "libcuda\.|libnvrtc|libcublas\.|libcublasLt\.|libOpenCL" | head -20
  ldd --version 2>&1 | head -1
  ld_path=${LD_LIBRARY_PATH:-}
  for d in ${ld_path//:/ }; do ls "$d" 2>/dev/null | grep -E "^lib(nvrtc|cublas|cublasLt)\.so" | sed "s|^|$d/|"; done | head -20
  timeout 20 clinfo -l 2>&1 | head -10
  echo "--- python"
  timeout 60 "$py" -c '
import sys; print("python", sys.version.split()[0])
try:
    import numpy; print("numpy", numpy.__version__)
except ImportError as e: print("numpy: missing", e)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0); print("device", p.name, p.total_memory >> 20, "MiB", "sm", p.major, p.minor)
except ImportError as e: print("torch: missing", e)' 2>&1
  echo "--- bundle"
  head -4 "$bundle/MANIFEST.txt" 2>&1
  echo "prebuilt PTX: $(ls "$bundle"/ptx/*.ptx 2>/dev/null | wc -l) modules"
  ldd "$sh" 2>&1
} >"$out/env.txt" 2>&1
gpu_line=$(grep -m1 "^GPU 0" "$out/env.txt" || echo "no nvidia-smi GPU")
torch_line=$(grep -m1 "^torch" "$out/env.txt" || echo "torch: ?")
say "env: $gpu_line; $torch_line; $(grep -m1 '^python' "$out/env.txt")"
missing=()
for f in testdata/scripts/reference.py scripts/gpu_bench.py scripts/gpu_compare.py \
  testdata/models/{rope,xl,switchall,dense,gated}/golden_short.safetensors testdata/models/rope-pth/model.pth \
  testdata/models/xl-standalone/model.safetensors official-golden/{official-rope,official-xl,official-trn-switchall-xl-mem}/golden.safetensors; do
  [[ -e $bundle/$f ]] || missing+=("$f")
done
for f in switchhead switchhead-compile; do [[ -x $work/bin/$f ]] || missing+=("bin/$f(.xz)"); done
version=$(timeout 20 "$sh" --version 2>&1 | head -1)
vrc=$?
ntests=$(find "$work/tests" -maxdepth 1 -type f -perm -u+x 2>/dev/null | wc -l)
nptx=$(ls "$bundle"/ptx/*.ptx 2>/dev/null | wc -l)
size=$(du -sb "$bundle" 2>/dev/null | cut -f1)
say "bundle: $((${size:-0} / 1024 / 1024)) MiB, $ntests test executables, $nptx prebuilt PTX modules, switchhead: $version"
bundle_rc=0
if ((${#missing[@]})); then say "bundle: MISSING ${missing[*]}"; bundle_rc=1; fi
if ((${#unpack_failed[@]})); then say "bundle: could not unpack ${unpack_failed[*]}"; bundle_rc=1; fi
if ((vrc != 0)); then say "bundle: the switchhead binary does not run here (see env.txt for ldd)"; bundle_rc=1; fi
((ntests == 0)) && { say "bundle: no test executables"; bundle_rc=1; }
# Scripts: those beside this one, else the bundle's.
scripts=$here
[[ -f $scripts/gpu_compare.py && -f $scripts/gpu_bench.py ]] || scripts=$bundle/scripts
record "1 environment+bundle" $bundle_rc $((SECONDS - t1)) "${missing[*]:+missing: ${missing[*]}}"

# ------------------------------------------------------------------ 2. test executables
section "2. test executables ($( ((dry)) && echo listing only || echo running))"
t2=$SECONDS
step_deadline=$((SECONDS + $(cap 120 250)))
pass=0 fail=0 ntest=0 details=()
for t in "$work"/tests/*; do
  [[ -f $t && -x $t ]] || continue
  name=$(basename "$t")
  echo "--- $name" >>"$out/tests.log"
  if ((dry)); then
    run 30 "$out/tests.log" "$t" --list
    rc=$?
    n=$(grep -c ": test$" "$last")
    ntest=$((ntest + n))
    if ((rc == 0)); then pass=$((pass + 1)); details+=("$name: $n tests"); else fail=$((fail + 1)); details+=("$name: --list FAILED (exit $rc)"); fi
    continue
  fi
  left=$((step_deadline - SECONDS))
  if ((left < 5)); then
    fail=$((fail + 1)); details+=("$name: NOT RUN (time budget)"); echo "not run: time budget" >>"$out/tests.log"; continue
  fi
  t0=$SECONDS
  run $((left < 90 ? left : 90)) "$out/tests.log" "$t" --test-threads=8 --nocapture
  rc=$?
  res=$(grep "^test result:" "$last" | tail -1 | sed 's/^test result: //; s/; finished in.*//')
  grep -h "^test .* \.\.\. FAILED$" "$last" | sed "s/^/    $name: /" >>"$work/failures"
  if ((rc == 0)); then pass=$((pass + 1)); else fail=$((fail + 1)); fi
  details+=("$name: $( ((rc == 0)) && echo ok || echo "FAILED (exit $rc$( ((rc == 124 || rc == 137)) && echo ', timed out'))") ${res:+[$res]} $((SECONDS - t0))s")
done
if ((dry)); then
  say "tests: $((pass + fail)) executables listed ($ntest tests), $fail failed to list"
else
  say "tests: $pass executables passed, $fail failed (tests.log)"
fi
for d in "${details[@]}"; do say "  $d"; done
grep -h "SKIPPED" "$out/tests.log" | sort -u | head -10 | sed 's/^/  /' | tee -a "$log" >>"$summary"
[[ -s $work/failures ]] && head -20 "$work/failures" | tee -a "$log" >>"$summary"
record "2 test executables" $((fail > 0)) $((SECONDS - t2)) "$pass $( ((dry)) && echo listed || echo passed), $fail failed"

# ------------------------------------------------------------------ 3. golden tests
section "3. golden tests through --executor $executor (f32 <= 1e-4, bf16 <= 1e-2)"
t3=$SECONDS
gt=$(cap $((dry ? 900 : 150)) $((dry ? 240 : 150)))
case_t=$((dry ? 240 : 60)) gbudget=$((gt - (dry ? 240 : 60) - 5))
((gbudget < 1)) && gbudget=1
run "$gt" "$work/compare.out" "$py" "$scripts/gpu_compare.py" --switchhead "$sh" \
  --models "$bundle/testdata/models" --official "$bundle/official-golden" --executor "$executor" \
  --out "$out/compare.json" --timeout "$case_t" --budget "$gbudget"
rc=$?
# the per-case lines go to run.log; the verdict and the failures to the summary
sed -n '/^golden (/,$p' "$work/compare.out" >>"$summary"
grep -q "^golden (" "$work/compare.out" || say "golden: no verdict (exit $rc): $(tail -3 "$work/compare.out" | tr '\n' ' ')"
record "3 golden ($executor)" $rc $((SECONDS - t3)) "$(grep -o '[0-9]* cases: [0-9]* pass' "$work/compare.out" | head -1)"

# ------------------------------------------------------------------ 4. benchmarks
section "4. benchmarks"
t4=$SECONDS
if ((dry)); then
  model=$work/tiny
  run $(cap 60 30) "$work/synth.out" "$sh" synth -o "$model" --d-model 64 --n-layers 2 --n-heads 2 \
    --n-experts 4 --moe-k 2 --d-head 16 --d-ff 128 --vocab-size 256 --pos-encoding xl --ffn dense --chunk-size 64
  src=$?
  bench_args=(--batch 2 --seq 32 --runs 3 --warmup 1 --decode-context 16 --decode-steps 4 --decode-runs 1
    --torch-device cpu --gemm-n 256 --copy-mib 16 --ceiling-iters 3 --timeout 180)
else
  model=$work/c4-262m
  run $(cap 90 60) "$work/synth.out" "$sh" synth --preset c4-262m -o "$model"
  src=$?
  bench_args=(--batch 8 --seq 512 --runs 10 --warmup 2 --decode-context 256 --decode-steps 32 --decode-runs 2
    --torch-device cuda --gemm-n 8192 --copy-mib 2048 --ceiling-iters 10 --timeout 90)
fi
say "synth $(basename "$model"): $( ((src == 0)) && tail -1 "$work/synth.out" || echo "FAILED (exit $src): $(tail -2 "$work/synth.out" | tr '\n' ' ')")"
record "4a synth" $src $((SECONDS - t4))
t4b=$SECONDS
if ((src == 0)); then
  bt=$(cap 400 15)
  run "$bt" "$work/bench.out" "$py" "$scripts/gpu_bench.py" "$model" --switchhead "$sh" --executor "$executor" \
    --reference "$bundle/testdata/scripts/reference.py" --out "$out/bench.json" --dtypes f32,bf16 \
    --budget $((bt - 60 > 10 ? bt - 60 : 10)) "${bench_args[@]}" $( ((dry)) || echo --require-torch)
  rc=$?
else
  rc=1
  echo '{"error": "synth failed"}' >"$out/bench.json"
fi
# the summary from the JSON, whatever state the run left it in
timeout 30 "$py" "$scripts/gpu_bench.py" --summary-only --out "$out/bench.json" >"$work/bench.summary" 2>&1
say_file "$work/bench.summary"
record "4b bench (ours + torch)" $rc $((SECONDS - t4b))

finish
((${#failed[@]} == 0))
