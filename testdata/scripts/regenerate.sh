#!/usr/bin/env bash
# Regenerates everything under testdata/models from testdata/corpus/kjv.txt:
#   1. check_official.py: the reference must match the official-golden logits (rel err < 1e-5)
#   2. train_tokenizer.py: the SentencePiece model models/spm/tokenizer.model (deterministic)
#   3. train.py: trains the six models (two parallel queues, 1 torch thread each) and writes
#      model.safetensors, config.json, metrics.json and testdata/corpus/heldout-eval.txt
#   4. make_golden.py: golden files, rope-pth/, xl-standalone/
#   5. check_golden.py: a second, float64 gather-based reading of SPEC.md against the golden files
#   6. convert_tokenizer.py: tokenizers/kjv1000.json, the spm vocabulary as a tokenizer.json
# Usage: testdata/scripts/regenerate.sh [budget_seconds (default 240)] [gated_budget_seconds (default 90)]
# Env: PYTHON (default python3), OFFICIAL_GOLDEN (default ../shared/official-golden).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
BUDGET="${1:-240}"
GATED="${2:-90}"
mkdir -p testdata/models
"$PY" testdata/scripts/check_official.py
"$PY" testdata/scripts/train_tokenizer.py
"$PY" testdata/scripts/train.py --models rope,switchall,gated --budget "$BUDGET" --gated-budget "$GATED" \
    > testdata/models/train-a.log 2>&1 &
A=$!
"$PY" testdata/scripts/train.py --models xl,dense,spm --budget "$BUDGET" --gated-budget "$GATED" \
    > testdata/models/train-b.log 2>&1 &
B=$!
wait "$A"
wait "$B"
grep -h "bpb" testdata/models/train-a.log testdata/models/train-b.log
"$PY" testdata/scripts/make_golden.py
"$PY" testdata/scripts/check_golden.py
"$PY" testdata/scripts/convert_tokenizer.py
