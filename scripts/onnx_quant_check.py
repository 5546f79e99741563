#!/usr/bin/env python3
"""Check quantized ONNX files (switchhead-compile --quantize) with the ONNX checker and stock
ONNX Runtime, against our runtime's logits on the same file and the f32 golden logits.

For every DIR/{stem}.onnx named on the command line (--files stem:model,...):
  1. onnx.checker.check_model(path, full_check=True); the file has DequantizeLinear nodes;
  2. ONNX Runtime (CPUExecutionProvider) on golden_long / golden_short of the model (KV-cache
     files: an empty past), compared with DIR/{stem}.{golden}.ours.safetensors (`logits`, what
     `switchhead logits` wrote for the same file): max|a-b| / max|b| <= --tol (default 1e-4),
     since both dequantize the same weights;
  3. the same logits against the golden (f32) logits: reported, and checked against
     --f32-tol (default 1.0, a sanity bound: quantization error is the point).
One line per check; exit status non-zero if any failed. Needs scripts/requirements-ci.txt.
"""

import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def ort_logits(path, tokens):
    sess = ort.InferenceSession(path, ort.SessionOptions(), providers=["CPUExecutionProvider"])
    feeds = {"tokens": tokens.astype(np.int64)}
    for i in sess.get_inputs():
        if i.name.startswith("past_key_values."):
            _, h, _, dh = i.shape
            feeds[i.name] = np.zeros((tokens.shape[0], h, 0, dh), dtype=np.float32)
        elif i.name.startswith("memory."):
            feeds[i.name] = np.zeros((tokens.shape[0], 0, i.shape[2]), dtype=np.float32)
    return sess.run(["logits"], feeds)[0]


def check(stem, model, args, report):
    path = os.path.join(args.dir, f"{stem}.onnx")
    try:
        onnx.checker.check_model(path, full_check=True)
        m = onnx.load(path)
        n = sum(1 for node in m.graph.node if node.op_type == "DequantizeLinear")
        assert n > 0, "no DequantizeLinear nodes"
        report(True, f"{stem:<22} checker(full_check) ok, {n} DequantizeLinear, opset {m.opset_import[0].version}")
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        report(False, f"{stem:<22} checker FAIL {type(e).__name__}: {e}")
        return
    for g in ["golden_long", "golden_short"]:
        gold = load_file(os.path.join(args.models_root, model, f"{g}.safetensors"))
        try:
            got = ort_logits(path, gold["tokens"])
        except Exception as e:  # noqa: BLE001
            report(False, f"{stem:<22} {g} onnxruntime FAIL {type(e).__name__}: {e}")
            continue
        ours = load_file(os.path.join(args.dir, f"{stem}.{g}.ours.safetensors"))["logits"]
        e_ours = rel_err(got, ours)
        e_f32 = rel_err(got, gold["logits"])
        ok = e_ours <= args.tol and e_f32 <= args.f32_tol
        report(
            ok,
            f"{stem:<22} {g:<12} ORT vs ours {e_ours:.3e} (tol {args.tol:g}), "
            f"vs f32 golden {e_f32:.3e} {'ok' if ok else 'FAIL'}",
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--files", required=True, help="stem:model,... (DIR/stem.onnx compiled from models-root/model)")
    ap.add_argument("--models-root", default="testdata/models")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--f32-tol", type=float, default=1.0)
    args = ap.parse_args()
    failures = []

    def report(ok, line):
        print(line, flush=True)
        if not ok:
            failures.append(line)

    for item in args.files.split(","):
        stem, model = item.split(":")
        check(stem, model, args, report)
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failing check(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
