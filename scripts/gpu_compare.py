"""Golden check of a device executor: every testdata model and every official-golden model
through `switchhead logits MODEL --tokens GOLDEN -o OUT --executor E --dtype D`, every
`logits*` tensor of the golden file against ours: max|ours - golden| / max|golden| <= 1e-4 with
f32 weights, <= 1e-2 with bf16 weights (`--dtype bf16`; same golden). Writes one JSON report
and prints one line per case; exits 0 when every case ran and passed, 1 otherwise.

Needs only the Python standard library (a small safetensors reader is below; numpy is used for
speed when importable).

Cases:
  testdata: rope, xl, switchall, dense, gated with their own golden_*.safetensors; rope-pth and
            xl-standalone (the .pth / standalone-layout copies) with rope's and xl's goldens;
            any other model directory with golden_* files too.
  official: every folder of --official holding golden.safetensors.

Usage: python3 gpu_compare.py --switchhead BIN --models testdata/models [--official DIR]
       --executor cuda [--dtypes f32,bf16] --out compare.json [--timeout 60] [--budget S]
       [--list]
"""
import argparse
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from array import array

TOL = {"f32": 1e-4, "bf16": 1e-2}
# Models without goldens of their own: the golden files of the model they copy.
GOLDEN_OF = {"rope-pth": "rope", "xl-standalone": "xl"}
# The testdata order the Rust test uses (others follow, sorted).
ORDER = ["rope", "xl", "switchall", "dense", "gated", "rope-pth", "xl-standalone"]

try:
    import numpy as np
except ImportError:  # the dry run's hosts may lack it
    np = None


# ----------------------------------------------------------------------------- safetensors

def read_header(path):
    """(header dict without __metadata__, data offset) of a .safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def read_tensor(path, name):
    """(shape, flat values as a numpy array or a list of floats) of one f32/bf16/f16 tensor."""
    header, base = read_header(path)
    if name not in header:
        raise KeyError(f"{path}: no tensor {name}")
    info = header[name]
    start, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(base + start)
        raw = f.read(end - start)
    dt, shape = info["dtype"], info["shape"]
    if np is not None:
        if dt == "F32":
            vals = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            vals = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dt == "BF16":
            vals = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raise ValueError(f"{path}: {name} has dtype {dt}, not a float type")
        return shape, vals
    if dt == "F32":
        a = array("f")
        a.frombytes(raw)
    elif dt == "BF16":
        u = array("H")
        u.frombytes(raw)
        a = array("f")
        a.frombytes(struct.pack(f"<{len(u)}I", *[x << 16 for x in u]))
    elif dt == "F16":
        a = list(struct.unpack(f"<{len(raw) // 2}e", raw))
    else:
        raise ValueError(f"{path}: {name} has dtype {dt}, not a float type")
    if sys.byteorder != "little" and isinstance(a, array):
        a.byteswap()
    return shape, a


def max_rel_err(ours, golden):
    """max|ours - golden| / max|golden|; inf if ours has a NaN or an infinity."""
    if np is not None:
        if not np.all(np.isfinite(ours)):
            return math.inf
        scale = max(float(np.abs(golden).max()) if golden.size else 0.0, 1e-30)
        return float(np.abs(ours - golden).max()) / scale if golden.size else 0.0
    scale, worst = 1e-30, 0.0
    for a, b in zip(ours, golden):
        if not math.isfinite(a):
            return math.inf
        d = abs(a - b)
        worst = d if d > worst else worst
        scale = abs(b) if abs(b) > scale else scale
    return worst / scale


def logits_names(path):
    header, _ = read_header(path)
    return sorted(k for k in header if k.startswith("logits"))


# ----------------------------------------------------------------------------- cases

def is_model_dir(d):
    return os.path.isdir(d) and any(f.endswith((".safetensors", ".pth", ".pt")) and not f.startswith("golden")
                                    for f in os.listdir(d))


def goldens_in(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if f.startswith("golden") and f.endswith(".safetensors")) if os.path.isdir(d) else []


def discover(models_dir, official_dir):
    """[(suite, model name, model dir, [golden files])]."""
    out = []
    if models_dir and os.path.isdir(models_dir):
        names = [n for n in os.listdir(models_dir) if is_model_dir(os.path.join(models_dir, n))]
        names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
        for n in names:
            g = goldens_in(os.path.join(models_dir, n)) or goldens_in(os.path.join(models_dir, GOLDEN_OF.get(n, n)))
            out.append(("testdata", n, os.path.join(models_dir, n), g))
    if official_dir and os.path.isdir(official_dir):
        for n in sorted(os.listdir(official_dir)):
            d = os.path.join(official_dir, n)
            g = os.path.join(d, "golden.safetensors")
            if is_model_dir(d):
                out.append(("official", n, d, [g] if os.path.exists(g) else []))
    return out


class Terminated(Exception):
    pass


def on_term(signum, frame):
    raise Terminated(f"signal {signum}")


def run_case(args, model_dir, golden, dtype, out):
    cmd = [args.switchhead, "logits", model_dir, "--tokens", golden, "-o", out,
           "--executor", args.executor, "--dtype", dtype]
    t0 = time.monotonic()
    case = {"dtype": dtype, "golden": os.path.basename(golden), "tol": TOL[dtype], "cmd": " ".join(cmd)}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        case.update(status="error", error=f"timed out after {args.timeout}s", seconds=round(time.monotonic() - t0, 2))
        return case
    case["seconds"] = round(time.monotonic() - t0, 2)
    if p.returncode != 0:
        err = (p.stderr.strip() or p.stdout.strip()).splitlines()
        case.update(status="error", error=" | ".join(err[-3:]) if err else f"exit {p.returncode}")
        return case
    try:
        names = logits_names(golden)
        if not names:
            raise ValueError(f"{golden}: no logits* tensor")
        theirs = set(logits_names(out))
        errs = {}
        for n in names:
            if n not in theirs:
                raise KeyError(f"our output has no {n} (has {sorted(theirs)})")
            gs, gv = read_tensor(golden, n)
            os_, ov = read_tensor(out, n)
            if gs != os_:
                raise ValueError(f"{n}: shape {os_}, golden {gs}")
            errs[n] = max_rel_err(ov, gv)
    except Exception as e:  # a malformed output is this case's failure, not the run's
        case.update(status="error", error=f"comparison: {e}")
        return case
    worst = max(errs.values())
    case.update(status="pass" if worst <= TOL[dtype] else "fail", rel_err=errs, worst=worst)
    return case


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--switchhead", required=True)
    ap.add_argument("--models", help="testdata/models")
    ap.add_argument("--official", help="the official-golden folder")
    ap.add_argument("--executor", default="cuda")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=int, default=60, help="seconds per switchhead call")
    ap.add_argument("--budget", type=float, default=0, help="start no case after this many seconds (0: no limit)")
    ap.add_argument("--list", action="store_true", help="list the cases, run nothing")
    args = ap.parse_args()
    dtypes = [d for d in args.dtypes.split(",") if d]
    for d in dtypes:
        if d not in TOL:
            ap.error(f"unknown dtype {d}")
    models = discover(args.models, args.official)
    if args.list:
        for suite, name, _, goldens in models:
            for g in goldens or ["(no golden)"]:
                print(f"{suite:<9} {name:<30} {os.path.basename(g):<26} {' '.join(dtypes)}")
        return 0
    signal.signal(signal.SIGTERM, on_term)
    work = tempfile.mkdtemp(prefix="sh-compare-")
    t0 = time.monotonic()
    cases, interrupted = [], None

    def write():
        counts = {s: sum(c["status"] == s for c in cases) for s in ("pass", "fail", "error", "skipped")}
        report = {"executor": args.executor, "dtypes": dtypes, "tolerance": TOL, "counts": counts,
                  "seconds": round(time.monotonic() - t0, 1), "interrupted": interrupted, "cases": cases}
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, args.out)
        return counts

    try:
        for suite, name, model_dir, goldens in models:
            if not goldens:
                cases.append({"suite": suite, "model": name, "status": "error", "error": "no golden file"})
                continue
            for g in goldens:
                for dtype in dtypes:
                    base = {"suite": suite, "model": name}
                    if args.budget and time.monotonic() - t0 > args.budget:
                        cases.append({**base, "golden": os.path.basename(g), "dtype": dtype, "status": "skipped",
                                      "why": f"time budget of {args.budget:.0f}s spent"})
                        continue
                    c = {**base, **run_case(args, model_dir, g, dtype, os.path.join(work, "out.safetensors"))}
                    cases.append(c)
                    detail = f"{c['worst']:.3e}" if "worst" in c else c.get("error", "")
                    print(f"  {suite:<8} {name:<30} {c['golden']:<24} {dtype:<4} {c['status']:<5} "
                          f"{c.get('seconds', 0):6.1f}s {detail}", flush=True)
                    write()
    except (Terminated, KeyboardInterrupt) as e:
        interrupted = str(e) or "interrupted"
    finally:
        counts = write()
        shutil.rmtree(work, ignore_errors=True)
    worst = {}
    for c in cases:
        if "worst" in c:
            worst[c["dtype"]] = max(worst.get(c["dtype"], 0.0), c["worst"])
    w = ", ".join(f"worst {d} {v:.2e} (tol {TOL[d]:.0e})" for d, v in sorted(worst.items()))
    print(f"golden ({args.executor}): {len(cases)} cases: {counts['pass']} pass, {counts['fail']} fail, "
          f"{counts['error']} error, {counts['skipped']} skipped; {w or 'no comparison'}"
          + (f"; INTERRUPTED ({interrupted})" if interrupted else ""))
    # failures, one line each; errors with the same message in one line
    by_error = {}
    for c in cases:
        what = f"{c['suite']}/{c['model']} {c.get('golden', '')} {c.get('dtype', '')}".rstrip()
        if c["status"] == "fail":
            print(f"  FAIL {what}: " + ", ".join(f"{k} {v:.3e}" for k, v in c["rel_err"].items())
                  + f" (tol {c['tol']:.0e})")
        elif c["status"] == "error":
            by_error.setdefault(c["error"], []).append(what)
    for err, whats in by_error.items():
        print(f"  ERROR {whats[0]}" + (f" (and {len(whats) - 1} more cases)" if len(whats) > 1 else "") + f": {err}")
    ok = not interrupted and counts["pass"] == len(cases)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
