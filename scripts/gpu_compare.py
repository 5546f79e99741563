"""Cross-backend check: every testdata model's logits from `switchhead logits --executor E`
against its golden files (fp32 weights: max|a-b|/max|b| <= 1e-3; the same model stored in bf16:
<= 1e-2 against the fp32 golden). Expert agreement needs the routing from the backend, which
the CLI does not expose yet: reported as pending. Writes one JSON report.

Usage: python3 gpu_compare.py --switchhead BIN --models DIR --executor cuda --out report.json
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

TOL = {"f32": 1e-3, "bf16": 1e-2}


def rel_err(a, b):
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def to_bf16_copy(model_dir, work):
    """The model with its weights rounded to bf16 (needs torch), or None and why."""
    try:
        import torch
        from safetensors.torch import load_file as tload, save_file as tsave
    except ImportError as e:
        return None, f"no torch for the bf16 copy ({e})"
    dst = os.path.join(work, os.path.basename(model_dir) + "-bf16")
    os.makedirs(dst, exist_ok=True)
    shutil.copy(os.path.join(model_dir, "config.json"), dst)
    sd = tload(os.path.join(model_dir, "model.safetensors"))
    tsave({k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}, os.path.join(dst, "model.safetensors"))
    return dst, None


def run_case(args, model, golden, dtype, work):
    out = os.path.join(work, f"out-{os.path.basename(model)}-{os.path.basename(golden)}")
    cmd = [args.switchhead, "logits", model, "--tokens", golden, "-o", out, "--executor", args.executor]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    case = {"model": os.path.basename(model), "golden": os.path.basename(golden), "dtype": dtype}
    if p.returncode != 0:
        case.update(status="error", error=p.stderr.strip())
        return case
    ours, ref = load_file(out), load_file(golden)
    errs = {k: rel_err(ours[k], ref[k]) for k in ours if k.startswith("logits")}
    worst = max(errs.values())
    case.update(status="pass" if worst <= TOL[dtype] else "fail", tol=TOL[dtype], rel_err=errs,
                experts="pending: the backend does not expose its routing yet")
    return case


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchhead", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--executor", default="cuda")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=int, default=120)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sh-compare-")
    cases = []
    for name in sorted(os.listdir(args.models)):
        model = os.path.join(args.models, name)
        goldens = sorted(f for f in os.listdir(model) if f.startswith("golden_")) if os.path.isdir(model) else []
        if not goldens:
            continue
        bf16, why = to_bf16_copy(model, work)
        for g in goldens:
            cases.append(run_case(args, model, os.path.join(model, g), "f32", work))
            if bf16:
                cases.append(run_case(args, bf16, os.path.join(model, g), "bf16", work))
            else:
                cases.append({"model": name, "golden": g, "dtype": "bf16", "status": "skipped", "why": why})
    counts = {s: sum(c["status"] == s for c in cases) for s in ("pass", "fail", "error", "skipped")}
    report = {"executor": args.executor, "counts": counts, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"cross-backend ({args.executor}): {counts}")
    for c in cases:
        detail = c.get("error") or c.get("why") or max(c.get("rel_err", {0: 0}).values())
        print(f"  {c['model']:<14} {c['golden']:<24} {c['dtype']:<5} {c['status']:<7} {detail}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
