#!/usr/bin/env bash
# `switchhead serve` under load on loopback: tokens/s and p50/p99 latency at 1, 8 and 32
# concurrent connections, with continuous batching (--max-batch 32) against the same requests
# served one at a time (--max-batch 1). Load generator: Debian's `wrk` (apt-get install wrk),
# POSTing one completion request per call (a Lua script written here); tokens/s comes from the
# server's own switchhead_generated_tokens_total over the run, the latencies from wrk
# (whole responses). Not a test: it prints a Markdown table for BENCHMARKS.md.
#
# Usage: scripts/bench-serve.sh [SECONDS per run, default 20] [MAX_TOKENS, default 32]
# Model: a RoPE variant of the c4-47m paper configuration with random weights and a byte
# vocabulary (`switchhead synth`), compiled to a native plan; BENCH_SERVE_MODEL=path overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
max_tokens=${2:-32}
threads=${BENCH_SERVE_THREADS:-2}
port=${BENCH_SERVE_PORT:-18431}
work=${BENCH_SERVE_DIR:-target/bench-serve}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q --workspace --features switchhead-cli/cuda,switchhead-cli/opencl
bin=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$work"
model=${BENCH_SERVE_MODEL:-$work/c4-47m-rope.shplan}
if [ ! -e "$model" ]; then
  "$bin/switchhead" synth --preset c4-47m --pos-encoding rope --vocab-size 256 -o "$work/c4-47m-rope" >&2
  "$bin/switchhead-compile" "$work/c4-47m-rope" -o "$model" >&2
fi
lua=$work/post.lua
cat >"$lua" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("BENCH_SERVE_BODY")
wrk.headers["Content-Type"] = "application/json"
LUA
export BENCH_SERVE_BODY="{\"prompt\": \"In the beginning God created the heaven and the earth.\", \"max_tokens\": $max_tokens, \"temperature\": 0}"

metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# One server, one wrk run per concurrency; prints table rows.
run_server() {
  local batch=$1
  "$bin/switchhead" serve "$model" --port "$port" --threads "$threads" --max-batch "$batch" \
    --executor cpu --max-queue 1024 --timeout 600 2>"$work/serve-$batch.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
  # Warm-up: first-use costs (worker threads, page faults) out of the timed runs.
  wrk -t1 -c1 -d3s -s "$lua" "http://127.0.0.1:$port/v1/completions" >/dev/null
  for conns in 1 8 32; do
    local tokens0 steps0 rows0 tokens1 steps1 rows1 out
    tokens0=$(metric switchhead_generated_tokens_total)
    steps0=$(metric switchhead_decode_step_seconds_count)
    rows0=$(metric switchhead_decode_step_rows_total)
    out=$(wrk -t"$(( conns < 2 ? 1 : 2 ))" -c"$conns" -d"${secs}s" --timeout 600s --latency \
      -s "$lua" "http://127.0.0.1:$port/v1/completions")
    tokens1=$(metric switchhead_generated_tokens_total)
    steps1=$(metric switchhead_decode_step_seconds_count)
    rows1=$(metric switchhead_decode_step_rows_total)
    echo "$out" >"$work/wrk-$batch-$conns.txt"
    local p50 p99 reqs errs
    p50=$(echo "$out" | awk '$1 == "50%" { print $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    errs=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    awk -v b="$batch" -v c="$conns" -v t0="$tokens0" -v t1="$tokens1" -v s="$secs" \
        -v s0="$steps0" -v s1="$steps1" -v r0="$rows0" -v r1="$rows1" \
        -v p50="$p50" -v p99="$p99" -v n="$reqs" -v e="${errs:-0}" 'BEGIN {
      mean = (s1 > s0) ? (r1 - r0) / (s1 - s0) : 0
      printf "| %d | %d | %.0f | %s | %s | %d | %s | %.1f |\n", b, c, (t1 - t0) / s, p50, p99, n, e, mean }'
  done
  kill -TERM "$pid"
  wait "$pid"
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; model: $model; $max_tokens tokens per request, greedy; $secs s per run; --threads $threads"
echo
echo "| --max-batch | connections | tokens/s | p50 latency | p99 latency | requests | non-2xx | mean rows per step |"
echo "|---|---|---|---|---|---|---|---|"
run_server 32
run_server 1
