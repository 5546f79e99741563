"""Benchmarks of the GPU check: our device executor against PyTorch eager on the same device,
with the device's ceilings measured in the same run. Writes one JSON (rewritten after every
stage, so a run cut short keeps what it measured) and prints a summary.

Stages (each one's failure is recorded and the next still runs):
  1. ours: `switchhead bench MODEL --executor E --dtype D --json` for each dtype, prefill
     (--batch B --seq T) and decode (--batch 1 --seq CTX --decode N: N single-token steps after
     a CTX-token prompt);
  2. ceilings (torch): a large square GEMM in bf16 and f32 (TF32 off) in TFLOP/s, and a
     device-to-device copy in GB/s (bytes read + bytes written per second);
  3. PyTorch eager (testdata/scripts/reference.py's LM on the same weights, torch's default
     f32 matmul, no TF32): prefill of the same B x T tokens (XL models with empty memory),
     timed on the device (CUDA events) and with the logits copied to the host as ours returns
     them; decode: one token per step after a CTX-token prompt, XL memory = the prompt (RoPE:
     full recompute, reference.py has no KV cache), each step synchronised and its last
     logits copied to the host.
Summary: ours vs PyTorch at prefill (target: ours >= 2x faster) and ours' decode ms/step vs
the time to read the weights once at the measured copy bandwidth (target <= 2x).

No torch: stages 2 and 3 are recorded as skipped. `--summary-only` prints the summary of an
existing JSON.

Usage: python3 gpu_bench.py --switchhead BIN --executor cuda --reference reference.py
       --out bench.json MODEL_DIR [--dtypes f32,bf16] [--batch 8 --seq 512]
       [--decode-context 256 --decode-steps 32] [--torch-device cuda] [--budget S]
       python3 gpu_bench.py --summary-only --out bench.json
"""
import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_compare import numel, read_header  # noqa: E402

PREFILL_TARGET = 2.0  # ours at least this many times faster than PyTorch eager
DECODE_TARGET = 2.0  # ours' decode step at most this many times the weight read time


class Terminated(Exception):
    pass


def on_term(signum, frame):
    raise Terminated(f"signal {signum}")


def model_file(model_dir):
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors") and not f.startswith("golden"):
            return os.path.join(model_dir, f)
    raise FileNotFoundError(f"{model_dir}: no .safetensors checkpoint")


def parameter_count(model_dir):
    header, _ = read_header(model_file(model_dir))
    return sum(numel(v["shape"]) for k, v in header.items() if ".kv_sel_counts" not in k)


def active_flops_per_token(c, tk):
    """Analytic FLOPs per token: active matmul parameters, attention scores against tk keys."""
    D, H, dh, L, V = c["d_model"], c["n_heads"], c["d_head"], c["n_layers"], c["vocab_size"]
    E, k = c["n_experts"], c["moe_k"]
    if c.get("attention", "switchhead") == "dense":
        attn = 4 * H * dh * D
    else:
        attn = 2 * H * dh * D + 2 * k * H * dh * D + 2 * H * E * D  # q,k; active v,o; routers
    if c.get("pos_encoding") == "xl":
        attn += H * dh * D  # position keys, amortised over the chunk (upper bound)
    scores = 2 * 2 * H * dh * tk  # q.k and p.v
    if c.get("ffn", "dense") == "sigma_moe":
        ffn = 2 * c["ffn_k"] * c["ffn_expert_size"] * D + c["ffn_n_experts"] * D
    else:
        ffn = 2 * D * c["d_ff"]
    return 2 * (L * (attn + ffn) + D * V) + L * scores


# ----------------------------------------------------------------------------- ours

def bench_ours(args, dtype, mode):
    cmd = [args.switchhead, "bench", args.model, "--executor", args.executor, "--dtype", dtype, "--json"]
    if mode == "prefill":
        cmd += ["--batch", str(args.batch), "--seq", str(args.seq), "--runs", str(args.runs),
                "--warmup", str(args.warmup)]
    else:
        cmd += ["--batch", "1", "--seq", str(args.decode_context), "--decode", str(args.decode_steps),
                "--runs", str(args.decode_runs), "--warmup", "1"]
    res = {"cmd": " ".join(cmd)}
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**res, "error": f"timed out after {args.timeout}s"}
    res["seconds"] = round(time.monotonic() - t0, 1)
    if p.returncode != 0:
        err = (p.stderr.strip() or p.stdout.strip()).splitlines()
        return {**res, "error": " | ".join(err[-3:]) or f"exit {p.returncode}"}
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if len(r.get("times_ms", [])) > 64:
                del r["times_ms"]
            return {**res, **r}
    return {**res, "error": f"no JSON in the output: {p.stdout.strip()[-300:]}"}


# ----------------------------------------------------------------------------- torch

def load_reference(path):
    spec = importlib.util.spec_from_file_location("reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_state_dict(torch, path):
    """The checkpoint's tensors (safetensors package if present, else the header by hand)."""
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    header, base = read_header(path)
    dts = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
           "I32": torch.int32, "F64": torch.float64, "U8": torch.uint8}
    with open(path, "rb") as f:
        data = bytearray(f.read())
    sd = {}
    for k, v in header.items():
        s, e = v["data_offsets"]
        if e == s:
            sd[k] = torch.zeros(v["shape"], dtype=dts[v["dtype"]])
            continue
        t = torch.frombuffer(data, dtype=dts[v["dtype"]], count=(e - s) // dts[v["dtype"]].itemsize, offset=base + s)
        sd[k] = t.reshape(v["shape"]).clone()
    return sd


def sync(torch, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(torch, device, fn, iters, warmup):
    """Median seconds per call of fn over iters calls (after warmup), each synchronised."""
    for _ in range(warmup):
        fn()
    sync(torch, device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(torch, device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed_events(torch, device, fn, iters, warmup):
    """Mean device seconds per call over iters back-to-back calls (CUDA events; wall clock on CPU)."""
    if not device.startswith("cuda"):
        return timed(torch, device, fn, iters, warmup)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def ceilings(torch, device, n, copy_bytes, iters):
    out = {"gemm_n": n, "copy_bytes": copy_bytes, "tf32": False}
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        a = torch.randn(n, n, device=device, dtype=dt)
        b = torch.randn(n, n, device=device, dtype=dt)
        c = torch.empty(n, n, device=device, dtype=dt)
        s = timed_events(torch, device, lambda: torch.matmul(a, b, out=c), iters, 2)
        out[f"gemm_{name}_tflops"] = 2 * n ** 3 / s / 1e12
        del a, b, c
    src = torch.empty(copy_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    s = timed_events(torch, device, lambda: dst.copy_(src), iters, 2)
    out["copy_gbps"] = 2 * copy_bytes / s / 1e9  # read + write
    del src, dst
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def patch_reference(ref):
    """reference.py computes, per router call, the smallest top-k gate gap with `.item()`: a
    diagnostic that forces a host sync mid-forward, which eager code meant for speed would not
    do. Disabled here (it changes no output)."""
    ref.topk_margin = lambda g, k: 0.0


def bench_torch(args, torch, ref, model, cfg, dtype):
    """Prefill and decode timings of reference.py's LM in `dtype`: f32 weights as they are
    (no TF32), or bf16 weights run under autocast(bf16) (reference.py mixes f32 router gates
    into its products, which plain bf16 tensors cannot multiply)."""
    import contextlib
    device = args.torch_device
    V = cfg["vocab_size"]
    xl = cfg["pos_encoding"] == "xl"
    g = torch.Generator(device="cpu").manual_seed(0)
    tokens = torch.randint(0, V, (args.batch, args.seq), generator=g, device="cpu").to(device)
    ctx = torch.randint(0, V, (1, args.decode_context), generator=g, device="cpu").to(device)
    steps = torch.randint(0, V, (1, args.decode_steps), generator=g, device="cpu").to(device)
    res = {"dtype": dtype, "batch": args.batch, "seq": args.seq, "tf32": torch.backends.cuda.matmul.allow_tf32,
           "weights": "bf16 + autocast(bf16)" if dtype == "bf16" else "f32",
           "note": "reference.py's LM: every attention expert's values computed densely, then gated"}
    amp = (torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16) if dtype == "bf16"
           else contextlib.nullcontext())
    # reference.py makes its index and position tensors with the default device
    with torch.inference_mode(), torch.device(device), amp:
        dev = timed_events(torch, device, lambda: model(tokens, None), args.runs, args.warmup)
        host = timed(torch, device, lambda: model(tokens, None)[0].float().cpu(), max(args.runs // 2, 1), 1)
        res["prefill"] = {"median_ms": dev * 1e3, "tokens_per_s": args.batch * args.seq / dev,
                          "with_host_copy_ms": host * 1e3,
                          "tflops": args.batch * args.seq * active_flops_per_token(cfg, args.seq) / dev / 1e12}
        _, mems = model(ctx, None)
        it = iter(range(10 ** 9))

        def step():
            i = next(it) % args.decode_steps
            one = steps[:, i:i + 1]
            if xl:
                logits, _ = model(one, mems)
            else:  # no KV cache in reference.py: the eager model recomputes the context
                logits, _ = model(torch.cat([ctx, one], dim=1), None)
            return logits[:, -1].float().cpu()

        s = timed(torch, device, step, args.decode_steps, 2)
        res["decode"] = {"median_ms": s * 1e3, "tokens_per_s": 1 / s, "context": args.decode_context,
                         "mode": "xl memory of the prompt" if xl else "full recompute (no KV cache in reference.py)"}
    return res


# ----------------------------------------------------------------------------- summary

def fmt(x, unit="", p=3):
    return "n/a" if x is None else f"{x:.{p}f}{unit}"


def summarize(rep):
    lines = []
    if rep.get("interrupted"):
        lines.append(f"bench: INTERRUPTED ({rep['interrupted']}); what follows is partial")
    if rep.get("error"):
        lines.append(f"bench: ERROR {rep['error']}")
    c = rep.get("ceilings") or {}
    if "error" in c or "skipped" in c:
        lines.append(f"ceilings: {c.get('error') or c.get('skipped')}")
    elif c:
        lines.append(f"ceilings ({rep.get('gpu') or rep.get('torch_device')}): GEMM {c['gemm_n']}^3 bf16 "
                     f"{c['gemm_bf16_tflops']:.1f} TFLOP/s, f32 (no TF32) {c['gemm_f32_tflops']:.1f} TFLOP/s; "
                     f"device copy {c['copy_gbps']:.0f} GB/s (read + write)")
    params = rep.get("parameters")
    for dtype in rep.get("dtypes", []):
        ours = rep.get("ours", {}).get(dtype, {})
        th = rep.get("torch", {}).get(dtype, {})
        pf, dc = ours.get("prefill", {}), ours.get("decode", {})
        tag = f"{dtype:<4}"
        # prefill
        if "median_ms" in pf:
            o = pf["median_ms"]
            s = f"prefill b{rep['batch']}/s{rep['seq']} {tag}: ours {o:.2f} ms ({pf['tokens_per_s']:.0f} tok/s)"
            tp = th.get("prefill") if isinstance(th, dict) else None
            if tp:
                r_dev, r_host = tp["median_ms"] / o, tp["with_host_copy_ms"] / o
                s += (f"; torch eager {tp['median_ms']:.2f} ms on device, {tp['with_host_copy_ms']:.2f} ms with "
                      f"the logits to the host -> ours {r_dev:.2f}x / {r_host:.2f}x faster (target >= "
                      f"{PREFILL_TARGET:g}x: {'MET' if r_dev >= PREFILL_TARGET else 'MISSED'} vs device-only, "
                      f"{'MET' if r_host >= PREFILL_TARGET else 'MISSED'} vs with copy)")
            else:
                s += f"; torch: {th.get('error') or ('skipped' if rep.get('torch_skipped') else 'not measured')}"
            lines.append(s)
        else:
            lines.append(f"prefill b{rep.get('batch')}/s{rep.get('seq')} {tag}: ours FAILED: {pf.get('error', 'not run')}")
        # decode
        if "median_ms" in dc:
            o = dc["median_ms"]
            s = f"decode b1/ctx{rep['decode_context']} {tag}: ours {o:.3f} ms/step"
            td = th.get("decode") if isinstance(th, dict) else None
            if td:
                s += f" (torch eager {td['median_ms']:.3f} ms/step, {td['median_ms'] / o:.2f}x)"
            if c.get("copy_gbps") and params:
                wb = params * (2 if dtype == "bf16" else 4)
                read_ms = wb / (c["copy_gbps"] * 1e9) * 1e3
                r = o / read_ms
                s += (f"; reading the {wb / 1e6:.0f} MB of weights once at {c['copy_gbps']:.0f} GB/s: "
                      f"{read_ms:.3f} ms -> {r:.2f}x (target <= {DECODE_TARGET:g}x: "
                      f"{'MET' if r <= DECODE_TARGET else 'MISSED'})")
            else:
                s += "; no bandwidth measured, no weight-read ratio"
            lines.append(s)
        else:
            lines.append(f"decode b1/ctx{rep.get('decode_context')} {tag}: ours FAILED: {dc.get('error', 'not run')}")
        if isinstance(th, dict) and ("error" in th) and "median_ms" not in pf:
            lines.append(f"torch {dtype}: {th['error']}")
    if rep.get("torch_skipped"):
        lines.append(f"torch: SKIPPED ({rep['torch_skipped']})")
    return lines


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--switchhead")
    ap.add_argument("--executor", default="cuda")
    ap.add_argument("--reference")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--decode-context", type=int, default=256)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--decode-runs", type=int, default=2)
    ap.add_argument("--torch-device", default="cuda")
    ap.add_argument("--gemm-n", type=int, default=8192)
    ap.add_argument("--copy-mib", type=int, default=2048)
    ap.add_argument("--ceiling-iters", type=int, default=10)
    ap.add_argument("--timeout", type=int, default=120, help="seconds per switchhead call")
    ap.add_argument("--budget", type=float, default=0, help="start no stage after this many seconds (0: none)")
    ap.add_argument("--no-ours", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--require-torch", action="store_true", help="no torch is a failure (the device run)")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    if args.summary_only:
        try:
            rep = json.load(open(args.out))
        except (OSError, ValueError) as e:
            print(f"bench: no report ({e})")
            return 1
        print("\n".join(summarize(rep)))
        return 0
    if not args.model or not args.reference or (not args.no_ours and not args.switchhead):
        ap.error("MODEL, --reference and --switchhead are required")
    signal.signal(signal.SIGTERM, on_term)
    dtypes = [d for d in args.dtypes.split(",") if d]
    t0 = time.monotonic()
    rep = {"model": os.path.basename(args.model.rstrip("/")), "executor": args.executor, "dtypes": dtypes,
           "batch": args.batch, "seq": args.seq, "decode_context": args.decode_context,
           "decode_steps": args.decode_steps, "torch_device": args.torch_device, "ours": {}, "torch": {},
           "interrupted": None}

    def write():
        rep["seconds"] = round(time.monotonic() - t0, 1)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rep, f, indent=1)
        os.replace(tmp, args.out)

    def over_budget():
        return bool(args.budget) and time.monotonic() - t0 > args.budget

    ok = True
    try:
        try:
            rep["config"] = json.load(open(os.path.join(args.model, "config.json")))
            rep["parameters"] = parameter_count(args.model)
        except Exception as e:
            rep["config_error"] = str(e)
        write()
        # 1. ours
        if not args.no_ours:
            for dtype in dtypes:
                for mode in ("prefill", "decode"):
                    slot = rep["ours"].setdefault(dtype, {})
                    slot[mode] = {"error": "interrupted while running"}
                    write()
                    r = ({"error": "skipped: time budget spent"} if over_budget() else bench_ours(args, dtype, mode))
                    slot[mode] = r
                    ok &= "error" not in r
                    print(f"ours {dtype} {mode}: " + (r.get("error") or
                          f"{r['median_ms']:.3f} ms, {r['tokens_per_s']:.0f} tok/s, backend {r.get('backend')}"),
                          flush=True)
                    write()
        # 2. + 3. torch
        torch = None
        if args.no_torch:
            rep["torch_skipped"] = "--no-torch"
        else:
            try:
                import torch
            except ImportError as e:
                rep["torch_skipped"] = f"torch not importable: {e}"
                ok &= not args.require_torch
        if torch is not None:
            dev = args.torch_device
            rep["torch_version"] = torch.__version__
            if dev.startswith("cuda"):
                if not torch.cuda.is_available():
                    raise RuntimeError("torch: CUDA not available")
                rep["gpu"] = torch.cuda.get_device_name(0)
            write()
            try:
                rep["ceilings"] = ceilings(torch, dev, args.gemm_n, args.copy_mib << 20, args.ceiling_iters)
                print("ceilings:", json.dumps(rep["ceilings"]), flush=True)
            except Exception as e:
                rep["ceilings"] = {"error": f"{type(e).__name__}: {e}"}
                ok = False
            write()
            ref = load_reference(args.reference)
            patch_reference(ref)
            cfg = ref.load_config(os.path.join(args.model, "config.json"))
            with torch.device(dev):  # build on the device: no 1 GB of random init on the CPU
                model = ref.LM(cfg)
            model = ref.load_state(model, load_state_dict(torch, model_file(args.model))).eval()
            for dtype in dtypes:
                if over_budget():
                    rep["torch"][dtype] = {"error": "skipped: time budget spent"}
                    continue
                try:
                    model = model.to(device=dev, dtype={"bf16": torch.bfloat16, "f32": torch.float32}[dtype])
                    rep["torch"][dtype] = bench_torch(args, torch, ref, model, cfg, dtype)
                    print(f"torch {dtype}: {json.dumps(rep['torch'][dtype])}", flush=True)
                except Exception as e:
                    rep["torch"][dtype] = {"error": f"{type(e).__name__}: {e}"}
                    ok = False
                    print(f"torch {dtype}: {rep['torch'][dtype]['error']}", flush=True)
                write()
    except (Terminated, KeyboardInterrupt) as e:
        rep["interrupted"] = str(e) or "interrupted"
        ok = False
    except Exception as e:
        rep["error"] = f"{type(e).__name__}: {e}"
        print(f"bench: {rep['error']}", flush=True)
        ok = False
    finally:
        write()
    print("\n".join(summarize(rep)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
