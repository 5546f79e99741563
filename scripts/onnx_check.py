#!/usr/bin/env python3
"""Check emitted ONNX files with the ONNX checker and ONNX Runtime against the golden logits.

For every testdata model (rope, xl, switchall, dense, gated) and both forms (default:
`ai.switchhead` nodes backed by model-local functions; `decompose`: standard ops only):
  1. onnx.checker.check_model(path, full_check=True)
  2. ONNX Runtime (CPUExecutionProvider) on every golden file of the model:
     golden_long / golden_short (XL models: empty memory [B, 0, D] per layer), and for XL
     models golden_mem: chunk 0 with empty memory, chunk 1 with memory = chunk 0's
     memory_out.{i}. Each run asserts max|a-b| / max|b| <= --tol (default 1e-4) on logits.
One line per check is printed; the exit status is non-zero if any check failed.

Usage (from the repository root):
  python scripts/onnx_check.py --compile-cmd "CMD"      # CMD MODEL_DIR OUT.onnx [--decompose]
  python scripts/onnx_check.py --dir DIR                # DIR/{model}.onnx, DIR/{model}.decompose.onnx
  python scripts/onnx_check.py                          # default --compile-cmd: the emit_onnx example
Options: --models-root testdata/models, --models rope,xl,..., --forms default,decompose, --tol.
The compile command is split with shlex and run with MODEL_DIR, OUT and, for the decompose
form, --decompose appended. Needs scripts/requirements-ci.txt.
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

MODELS = ["rope", "xl", "switchall", "dense", "gated"]
FORMS = ["default", "decompose"]
DEFAULT_CMD = "cargo run -q -p switchhead-compiler --example emit_onnx --"


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def file_name(model, form):
    return f"{model}.onnx" if form == "default" else f"{model}.{form}.onnx"


def check_structure(path, form):
    m = onnx.load(path)
    domains = {n.domain for n in m.graph.node}
    if form == "decompose":
        assert "ai.switchhead" not in domains and not m.functions, "custom domain in decompose form"
    else:
        assert "ai.switchhead" in domains and m.functions, "no ai.switchhead nodes/functions"


class Runner:
    def __init__(self, path):
        opts = ort.SessionOptions()
        self.sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.sess.get_inputs()}
        self.outputs = [o.name for o in self.sess.get_outputs()]
        self.mem_names = sorted((n for n in self.inputs if n.startswith("memory.")), key=lambda n: int(n.split(".")[1]))

    def run(self, tokens, memory=None):
        feeds = {"tokens": tokens.astype(np.int64)}
        for i, name in enumerate(self.mem_names):
            if memory is None:
                d = self.inputs[name].shape[2]
                feeds[name] = np.zeros((tokens.shape[0], 0, d), dtype=np.float32)
            else:
                feeds[name] = memory[i]
        out = dict(zip(self.outputs, self.sess.run(self.outputs, feeds)))
        mem_out = [out[f"memory_out.{i}"] for i in range(len(self.mem_names))]
        return out["logits"], mem_out


def golden_runs(runner, model_dir):
    """Yields (label, rel_err) for every golden file of the model."""
    for g in ["golden_long", "golden_short"]:
        gold = load_file(os.path.join(model_dir, f"{g}.safetensors"))
        logits, _ = runner.run(gold["tokens"])
        yield g, rel_err(logits, gold["logits"])
    mem_path = os.path.join(model_dir, "golden_mem.safetensors")
    if os.path.exists(mem_path):
        gold = load_file(mem_path)
        logits0, mem = runner.run(gold["tokens0"])
        yield "golden_mem.chunk0", rel_err(logits0, gold["logits0"])
        logits1, _ = runner.run(gold["tokens1"], mem)
        yield "golden_mem.chunk1", rel_err(logits1, gold["logits1"])


def check_one(model, form, path, model_dir, tol, report):
    label = f"{model:<10} {form:<10}"
    try:
        onnx.checker.check_model(path, full_check=True)
        check_structure(path, form)
        report(True, f"{label} checker(full_check)            ok")
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        report(False, f"{label} checker(full_check)            FAIL {type(e).__name__}: {e}")
        return
    try:
        runner = Runner(path)
        for name, err in golden_runs(runner, model_dir):
            ok = err <= tol
            report(ok, f"{label} {name:<22} max_rel_err {err:.3e} {'ok' if ok else 'FAIL'} (tol {tol:g})")
    except Exception as e:  # noqa: BLE001
        report(False, f"{label} onnxruntime                  FAIL {type(e).__name__}: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="directory of pre-emitted files")
    ap.add_argument("--compile-cmd", help="command taking MODEL OUT [--decompose]")
    ap.add_argument("--models-root", default="testdata/models")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    failures = []

    def report(ok, line):
        print(line, flush=True)
        if not ok:
            failures.append(line)

    tmp = None
    out_dir = args.dir
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="onnx_check_")
        out_dir = tmp.name
    cmd = shlex.split(args.compile_cmd or DEFAULT_CMD)
    for model in args.models.split(","):
        model_dir = os.path.join(args.models_root, model)
        for form in args.forms.split(","):
            path = os.path.join(out_dir, file_name(model, form))
            if args.dir is None:
                extra = ["--decompose"] if form == "decompose" else []
                r = subprocess.run(cmd + [model_dir, path] + extra, capture_output=True, text=True)
                if r.returncode != 0:
                    report(False, f"{model:<10} {form:<10} compile FAIL rc={r.returncode}: {r.stderr.strip()[-2000:]}")
                    continue
            check_one(model, form, path, model_dir, args.tol, report)
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failing check(s)")
    if tmp is not None:
        tmp.cleanup()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
