#!/usr/bin/env python3
"""Check emitted ONNX files with the ONNX checker and ONNX Runtime against the golden logits.

For every testdata model (rope, xl, switchall, dense, gated) and every form (default:
`ai.switchhead` nodes backed by model-local functions; `decompose`: standard ops only, routed
experts computed densely (`--experts dense`); `gather`: standard ops only, each token's k
selected expert matrices gathered (`--decompose --experts gather`)):
  1. onnx.checker.check_model(path, full_check=True)
  2. ONNX Runtime (CPUExecutionProvider) on every golden file of the model:
     golden_long / golden_short (XL models: empty memory [B, 0, D] per layer), and for XL
     models golden_mem: chunk 0 with empty memory, chunk 1 with memory = chunk 0's
     memory_out.{i}. Each run asserts max|a-b| / max|b| <= --tol (default 1e-4) on logits.
For RoPE models (config pos_encoding "rope": rope, dense, gated) the KV-cache files of every
form are checked too (unless --no-kv):
  3. checker(full_check) and the interface (past_key_values.{i}.key/value in,
     present.{i}.key/value out, switchhead.kv_cache metadata "1");
  4. golden_long / golden_short with an empty past [B, H, 0, dh] against the golden logits;
  5. incremental decoding of golden_long: prefill the first --prefill (20) tokens with an empty
     past, then one token at a time passing present.{i}.* as past_key_values.{i}.*; the
     worst per-position max|a-b| / max|b| against the golden logits must be <= --tol, and the
     final present length must equal the sequence length.
One line per check is printed; the exit status is non-zero if any check failed.

Usage (from the repository root):
  python scripts/onnx_check.py --compile-cmd "CMD"      # CMD MODEL_DIR OUT.onnx [--decompose] [--kv-cache]
  python scripts/onnx_check.py --dir DIR                # DIR/{model}.onnx, DIR/{model}.{decompose,gather}.onnx,
                                                        # RoPE: DIR/{model}.kv.onnx, DIR/{model}.kv.{decompose,gather}.onnx
  python scripts/onnx_check.py                          # default --compile-cmd: the emit_onnx example
Options: --models-root testdata/models, --models rope,xl,..., --forms default,decompose,gather, --tol.
The compile command is split with shlex and run with MODEL_DIR, OUT and, for the decompose
form, --decompose (gather: --decompose --experts gather) appended (then --kv-cache for the KV-cache files). Needs scripts/requirements-ci.txt.
"""

import argparse
import json
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
FORMS = ["default", "decompose", "gather"]
FORM_FLAGS = {"default": [], "decompose": ["--decompose"], "gather": ["--decompose", "--experts", "gather"]}
DEFAULT_CMD = "cargo run -q -p switchhead-compiler --example emit_onnx --"


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def file_name(model, form, kv=False):
    stem = f"{model}.kv" if kv else model
    return f"{stem}.onnx" if form == "default" else f"{stem}.{form}.onnx"


def is_rope(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)["pos_encoding"] == "rope"


def check_structure(path, form, kv=False):
    m = onnx.load(path)
    domains = {n.domain for n in m.graph.node}
    if form != "default":
        assert "ai.switchhead" not in domains and not m.functions, "custom domain in decompose form"
    else:
        assert "ai.switchhead" in domains and m.functions, "no ai.switchhead nodes/functions"
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta.get("switchhead.format_version") == "1", f"metadata {meta}"
    assert meta.get("switchhead.kv_cache") == ("1" if kv else "0"), f"metadata {meta}"
    if kv:
        n = int(meta["switchhead.n_layers"])
        ins = [i.name for i in m.graph.input]
        outs = [o.name for o in m.graph.output]
        want_in = ["tokens"] + [f"past_key_values.{i}.{kv}" for i in range(n) for kv in ("key", "value")]
        want_out = ["logits"] + [f"present.{i}.{kv}" for i in range(n) for kv in ("key", "value")]
        assert ins == want_in and outs == want_out, f"kv interface {ins} -> {outs}"


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


class KvRunner:
    """A KV-cache model: tokens plus past_key_values.{i}.key/value -> logits, present.*."""

    def __init__(self, path):
        self.sess = ort.InferenceSession(path, ort.SessionOptions(), providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.sess.get_inputs()}
        self.past_names = [n for n in self.inputs if n.startswith("past_key_values.")]
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def empty_past(self, batch):
        past = {}
        for name in self.past_names:
            _, h, _, dh = self.inputs[name].shape
            past[name] = np.zeros((batch, h, 0, dh), dtype=np.float32)
        return past

    def run(self, tokens, past):
        feeds = {"tokens": tokens.astype(np.int64), **past}
        out = dict(zip(self.outputs, self.sess.run(self.outputs, feeds)))
        present = {n: out[n.replace("past_key_values.", "present.")] for n in self.past_names}
        return out["logits"], present


def kv_runs(runner, model_dir, prefill):
    """Yields (label, rel_err) for the KV-cache checks (empty past; incremental decoding)."""
    for g in ["golden_long", "golden_short"]:
        gold = load_file(os.path.join(model_dir, f"{g}.safetensors"))
        tokens = gold["tokens"]
        logits, _ = runner.run(tokens, runner.empty_past(tokens.shape[0]))
        yield f"{g}.empty_past", rel_err(logits, gold["logits"])
    gold = load_file(os.path.join(model_dir, "golden_long.safetensors"))
    tokens, want = gold["tokens"], gold["logits"]
    n = tokens.shape[1]
    assert n > prefill, f"golden_long has {n} tokens, prefill {prefill}"
    logits, past = runner.run(tokens[:, :prefill], runner.empty_past(tokens.shape[0]))
    steps = [logits]
    for t in range(prefill, n):
        logits, past = runner.run(tokens[:, t : t + 1], past)
        steps.append(logits)
    got = np.concatenate(steps, axis=1)
    assert got.shape == want.shape, f"incremental logits {got.shape} vs {want.shape}"
    lens = {v.shape[2] for v in past.values()}
    assert lens == {n}, f"present lengths {lens}, want {n}"
    worst = max(rel_err(got[:, t], want[:, t]) for t in range(n))
    yield f"incremental({prefill}+1x{n - prefill})", worst


def check_one(model, form, path, model_dir, tol, report, kv=False, prefill=20):
    label = f"{model:<10} {form + ('+kv' if kv else ''):<13}"
    try:
        onnx.checker.check_model(path, full_check=True)
        check_structure(path, form, kv)
        report(True, f"{label} checker(full_check)            ok")
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        report(False, f"{label} checker(full_check)            FAIL {type(e).__name__}: {e}")
        return
    try:
        runs = kv_runs(KvRunner(path), model_dir, prefill) if kv else golden_runs(Runner(path), model_dir)
        for name, err in runs:
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
    ap.add_argument("--no-kv", action="store_true", help="skip the KV-cache files of RoPE models")
    ap.add_argument("--prefill", type=int, default=20, help="prefill length of the incremental check")
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
        kvs = [False] if args.no_kv or not is_rope(model_dir) else [False, True]
        for kv in kvs:
            for form in args.forms.split(","):
                path = os.path.join(out_dir, file_name(model, form, kv))
                if args.dir is None:
                    extra = list(FORM_FLAGS[form])
                    extra += ["--kv-cache"] if kv else []
                    r = subprocess.run(cmd + [model_dir, path] + extra, capture_output=True, text=True)
                    if r.returncode != 0:
                        what = f"{form}{'+kv' if kv else ''}"
                        report(False, f"{model:<10} {what:<13} compile FAIL rc={r.returncode}: {r.stderr.strip()[-2000:]}")
                        continue
                check_one(model, form, path, model_dir, args.tol, report, kv, args.prefill)
    print(f"{'FAILED' if failures else 'PASSED'}: {len(failures)} failing check(s)")
    if tmp is not None:
        tmp.cleanup()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
