#!/usr/bin/env python3
"""The race: our runtime against ONNX Runtime, plain tract and PyTorch eager, side by side.

One run, one machine, the same synthetic weights and the same tokens for every engine, the same
thread count (default 2), engines run one after another (never concurrently), in rounds: each
engine takes its turn once per round with its share of the timed runs (`--rounds`, default 3),
so a change in the machine's speed during a case (this VM's speed moves by up to 2x between
minutes) hits every engine alike instead of whichever ran then. Per case:

  ours        `switchhead bench` on the default ONNX file (ai.switchhead custom ops)
  ours-plan   `switchhead bench` on a `.shplan` native plan, if `switchhead-compile -o x.shplan`
              is supported by the build (detected from `switchhead-compile --help`)
  tract       `switchhead bench` on the `--decompose` file (standard ops only: plain tract)
  ort         ONNX Runtime CPU on `--decompose --experts gather` and `--experts dense`
              (both reported; the faster one races)
  torch       PyTorch eager (scripts/bench/torch_model.py), experts `sorted` (one matmul per
              expert over its routed tokens) and `dense` (all experts, masked gates); both
              reported, the faster one races. Its logits are checked against our runtime's
              (`switchhead logits`, same tokens) to 1e-3 max relative error before timing.
  ORT's logits are checked against ours the same way.

Forward cases time `batch x seq` full forward passes (XL models with empty memory). The decode
case (a RoPE variant of c4-47m, `switchhead synth --pos-encoding rope`) times single-token steps
after a `seq`-token prompt (prompt not timed): ours via `switchhead bench --decode` on a
`--kv-cache` file (no context limit, so no cache restart), ORT via a
`--decompose --kv-cache` file (gather and dense), PyTorch with its own KV cache.

Two more cases measure our plans alone: `attention-262m` (the SwitchHead attention's time
against the dense baseline's, from `switchhead bench --profile`) and `memory-c4-262m` (a plan
session's peak resident memory against its weights).

Reported: median with spread (p10-p90, min-max), tokens/s, ratio engine/ours (>1: ours is
faster), achieved GFLOP/s of the whole pass (`forward_flops`: only the needed FLOPs) and its
share of a large fp32 GEMM ceiling measured in the same run, at its start and at its end (the
best of ONNX Runtime MatMul, torch.matmul and numpy.matmul at the same thread count).

Usage (repository root; needs a release build and a Python with torch, onnxruntime, onnx,
numpy, safetensors):
  cargo build --release -p switchhead-cli
  python scripts/bench/race.py [--cases c4-47m-b1,c4-47m-b8,...] [--quick] [--threads 2]
      [--runs 10] [--warmup 2] [--rounds 3] [--bin-dir target/release] [--cache DIR] [--keep]
      [--out FILE.md]
Checkpoints and compiled files go to --cache (default: a temp dir, removed per case unless
--keep): c4-262m is about 1 GB per copy.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import quant_peers  # noqa: E402 - next to this file

# name -> (synth args, batch, seq, mode)
CASES = {
    "c4-47m-b1": (["--preset", "c4-47m"], 1, 256, "forward"),
    "c4-47m-b8": (["--preset", "c4-47m"], 8, 256, "forward"),
    "c4-262m-b1": (["--preset", "c4-262m"], 1, 512, "forward"),
    "switchall-259m-b1": (["--preset", "switchall-259m"], 1, 512, "forward"),
    "dense-c4-262m-b1": (["--preset", "dense-c4-262m"], 1, 512, "forward-ours"),
    # our plans only: MoEAttention time per pass, c4-262m against its dense baseline
    "attention-262m": (None, 1, 512, "attention"),
    # our plan only: the peak resident memory of a c4-262m session against its weight bytes
    "memory-c4-262m": (None, 1, 512, "memory"),
    "c4-47m-rope-decode": (["--preset", "c4-47m", "--pos-encoding", "rope"], 1, 256, "decode"),
    # quantized (issue 18): our f32, int8, int4 and bf16 plans against the peers' own quantized forms
    "c4-262m-decode": (["--preset", "c4-262m", "--pos-encoding", "rope"], 1, 256, "quant-decode"),
    "c4-47m-prefill-b8": (["--preset", "c4-47m"], 8, 256, "quant-forward"),
}
QUICK_CASES = ["c4-47m-b1", "c4-47m-rope-decode"]


# ----------------------------------------------------------------------------- FLOPs

def forward_flops(cfg, batch, t_new, t_keys):
    """FLOPs (2 per multiply-add) of one pass over `t_new` new tokens per sequence attending to
    `t_keys` keys, counting only what the model needs:
      - routed experts: k of E per head (attention V and O), K_ff of N_E (σ-MoE), not all E;
      - attention scores and P@V over the full T x Tk rectangle (what every engine here computes;
        the causal half is not subtracted), plus the XL position term (q . Kp over Tk positions
        and the Kp projection of Tk sinusoids, once per batch: what the other engines compute
        on every pass; our sessions keep it per layer and compute it once per key count);
      - projections, routers, FFN, output layer; embedding lookups, LayerNorm, softmax and
        elementwise work are not counted."""
    D, L, V = cfg["d_model"], cfg["n_layers"], cfg["vocab_size"]
    H, dh = cfg["n_heads"], cfg["d_head"]
    n = batch * t_new  # new tokens
    mm = lambda rows, inner, cols: 2 * rows * inner * cols  # noqa: E731
    att = mm(n, D, H * dh) * 2  # q and k projections
    if cfg.get("attention", "switchhead") == "dense":
        att += mm(n, D, H * dh) * 2  # v and o projections
    else:
        E, k = cfg["n_experts"], cfg["moe_k"]
        att += mm(n, D, H * E) * 2  # value and output routers
        att += mm(n, D, dh) * H * k  # k value experts per head
        att += mm(n, dh, D) * H * k  # k output experts per head
    att += mm(batch * H * t_new, dh, t_keys) * 2  # scores and P @ V
    if cfg["pos_encoding"] == "xl":
        att += mm(batch * H * t_new, dh, t_keys) + mm(t_keys, D, H * dh)
    if cfg.get("ffn", "dense") == "sigma_moe":
        ne, g, kf = cfg["ffn_n_experts"], cfg["ffn_expert_size"], cfg["ffn_k"]
        ffn = mm(n, D, ne) + kf * (mm(n, D, g) + mm(n, g, D))
    else:
        ffn = mm(n, D, cfg["d_ff"]) * 2
    return L * (att + ffn) + mm(n, D, V)


def decode_bytes(cfg, ctx):
    """Bytes one single-token decode step at batch 1 must read once: the f32 weights it touches
    (k of E experts per head for V and O, K_ff of N_E σ-MoE experts, one embedding row, the
    rest in full; biases and LayerNorm parameters ignored) and the KV cache of `ctx` positions."""
    D, L, V = cfg["d_model"], cfg["n_layers"], cfg["vocab_size"]
    H, dh = cfg["n_heads"], cfg["d_head"]
    att = 2 * D * H * dh  # q and k projections
    if cfg.get("attention", "switchhead") == "dense":
        att += 2 * D * H * dh
    else:
        att += 2 * D * H * cfg["n_experts"] + 2 * H * cfg["moe_k"] * D * dh
    if cfg.get("ffn", "dense") == "sigma_moe":
        ffn = D * cfg["ffn_n_experts"] + 2 * cfg["ffn_k"] * D * cfg["ffn_expert_size"]
    else:
        ffn = 2 * D * cfg["d_ff"]
    kv = 2 * H * dh * ctx
    return 4 * (L * (att + ffn + kv) + D * V + D)


def memory_bandwidth(threads, mib=1024, runs=5):
    """Read bandwidth in GB/s: `threads` threads reducing (max) disjoint parts of a large array
    (np.sum is compute-bound here; max is not)."""
    import concurrent.futures as cf
    a = np.ones(mib * (1 << 20) // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    with cf.ThreadPoolExecutor(threads) as ex:
        sweep = lambda: list(ex.map(np.max, parts))  # noqa: E731 - numpy releases the GIL
        sweep()
        best = min(timed_once(sweep) for _ in range(runs))
    return a.nbytes / best / 1e9


def timed_once(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- helpers

def bench_tokens(batch, seq, vocab, seed=0):
    """The token generator of `switchhead bench` (cli/src/bench.rs::bench_tokens)."""
    m = (1 << 64) - 1
    out = []
    for i in range(batch * seq):
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        out.append((z ^ (z >> 31)) % vocab)
    return np.array(out, dtype=np.int64).reshape(batch, seq)


def stats(times_ms):
    t = np.asarray(times_ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(t)),
        "min_ms": float(t.min()),
        "p10_ms": float(np.percentile(t, 10)),
        "p90_ms": float(np.percentile(t, 90)),
        "max_ms": float(t.max()),
        "times_ms": [float(x) for x in t],
    }


def timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        s = time.perf_counter()
        fn()
        times.append((time.perf_counter() - s) * 1e3)
    return stats(times)


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def mean_rel_err(a, b):
    """mean |a-b| / mean |b|: a quantized engine's distance from f32 (the max above is set by
    the few tokens whose expert selection flips)."""
    return float(np.mean(np.abs(a - b)) / np.mean(np.abs(b)))


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: {r.stderr.strip()[-1500:]}")
    return r.stdout


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Tools:
    def __init__(self, bin_dir):
        self.sh = os.path.join(bin_dir, "switchhead")
        self.compile = os.path.join(bin_dir, "switchhead-compile")
        for p in (self.sh, self.compile):
            if not os.path.exists(p):
                raise SystemExit(f"{p} not found: cargo build --release -p switchhead-cli (or pass --bin-dir)")
        usage = run([self.compile, "--help"])
        self.plan = "shplan" in usage
        self.quantize = "--quantize" in usage

    def bench(self, model, batch, seq, runs, warmup, threads, decode=None):
        cmd = [self.sh, "bench", model, "--batch", str(batch), "--seq", str(seq), "--runs", str(runs),
               "--warmup", str(warmup), "--threads", str(threads), "--json"]
        if decode:
            cmd += ["--decode", str(decode)]
        return json.loads(run(cmd))

    def logits(self, model, tokens, workdir, threads):
        from safetensors.numpy import load_file, save_file
        tin, tout = os.path.join(workdir, "tokens.safetensors"), os.path.join(workdir, "logits.safetensors")
        save_file({"tokens": tokens}, tin)
        run([self.sh, "logits", model, "--tokens", tin, "-o", tout, "--threads", str(threads)])
        out = load_file(tout)["logits"]
        os.remove(tin), os.remove(tout)
        return out


# ----------------------------------------------------------------------------- engines

def ort_session(path, threads):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def ort_feeds(sess, tokens):
    feeds = {"tokens": tokens}
    for i in sess.get_inputs():
        if i.name.startswith("memory."):
            feeds[i.name] = np.zeros((tokens.shape[0], 0, i.shape[2]), np.float32)
    return feeds


def memo_get(memo, key, make):
    """memo[key], made by make() the first time (memo None: always made anew)."""
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return memo[key]


def ort_forward(path, tokens, threads, runs, warmup, want, memo=None):
    sess = memo_get(memo, path, lambda: ort_session(path, threads))
    feeds = ort_feeds(sess, tokens)
    logits = sess.run(["logits"], feeds)[0]
    s = timed(lambda: sess.run(["logits"], feeds), runs, warmup)
    s["check"], s["check_mean"] = rel_err(logits, want), mean_rel_err(logits, want)
    return s


def ort_decode(path, prompt, nxt, threads, runs, warmup, memo=None):
    sess = memo_get(memo, path, lambda: ort_session(path, threads))
    past_names = [i.name for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    outs = ["logits"] + [n.replace("past_key_values.", "present.") for n in past_names]
    batch, steps = prompt.shape[0], nxt.shape[1]

    def one_run(times):
        past = {n: np.zeros((batch, shapes[n][1], 0, shapes[n][3]), np.float32) for n in past_names}
        res = sess.run(outs, {"tokens": prompt, **past})
        for s in range(steps):
            past = dict(zip(past_names, res[1:]))
            t0 = time.perf_counter()
            res = sess.run(outs, {"tokens": nxt[:, s : s + 1], **past})
            if times is not None:
                times.append((time.perf_counter() - t0) * 1e3)

    for _ in range(warmup):
        one_run(None)
    times = []
    for _ in range(runs):
        one_run(times)
    return stats(times)


def torch_lm(ckpt, form, threads, quant=None, memo=None):
    """torch_model's LM (`quant` "int8": PyTorch's dynamic int8 of it), kept in `memo`."""
    import torch
    import torch_model
    torch.set_num_threads(threads)
    return memo_get(memo, ("torch", form, quant), lambda: torch_model.load(ckpt, form, quant))


def torch_forward(ckpt, form, tokens, threads, runs, warmup, want, quant=None, memo=None):
    """Times the forward pass; its logits must match `want` to 1e-3 in fp32 (quantized: the
    difference is only reported)."""
    import torch
    lm = torch_lm(ckpt, form, threads, quant, memo)
    t = torch.from_numpy(tokens)
    logits = lm.forward(t)[0].numpy()
    err = rel_err(logits, want)
    if quant is None and err > 1e-3:
        raise RuntimeError(f"torch/{form} logits differ from our runtime's: max rel err {err:.2e}")
    s = timed(lambda: lm.forward(t), runs, warmup)
    s["check"], s["check_mean"] = err, mean_rel_err(logits, want)
    return s


def torch_decode(ckpt, form, prompt, nxt, threads, runs, warmup, quant=None, memo=None):
    import torch
    lm = torch_lm(ckpt, form, threads, quant, memo)
    p, nxt, steps = torch.from_numpy(prompt), torch.from_numpy(nxt), nxt.shape[1]

    def one_run(times):
        _, cache = lm.forward(p)
        for s in range(steps):
            t0 = time.perf_counter()
            _, cache = lm.forward(nxt[:, s : s + 1], cache)
            if times is not None:
                times.append((time.perf_counter() - t0) * 1e3)

    for _ in range(warmup):
        one_run(None)
    times = []
    for _ in range(runs):
        one_run(times)
    return stats(times)


def gemm_ceiling(n, threads, runs=5):
    """GFLOP/s of an n^3 fp32 matmul in ORT, torch and numpy (same thread count)."""
    import onnx
    from onnx import TensorProto, helper
    flops = 2 * n**3
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    res = {}
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    with tempfile.NamedTemporaryFile(suffix=".onnx", delete=False) as f:
        f.write(m.SerializeToString())
    sess = ort_session(f.name, threads)
    os.remove(f.name)
    res["onnxruntime MatMul"] = timed(lambda: sess.run(["c"], {"a": a, "b": b}), runs, 1)
    import torch
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    res["torch.matmul"] = timed(lambda: ta @ tb, runs, 1)
    res["numpy.matmul"] = timed(lambda: a @ b, runs, 1)  # BLAS threads: OMP/OPENBLAS_NUM_THREADS
    return {k: flops / (v["median_ms"] / 1e3) / 1e9 for k, v in res.items()}


# ----------------------------------------------------------------------------- cases

def model_key(case):
    """Cases of one checkpoint share a cache folder: the case name without its batch suffix."""
    stem, _, batch = case.rpartition("-b")
    return stem if stem and batch.isdigit() else case


# the cases that measure other cases' models: name -> the forward cases whose models they use
MEASURES = {"attention-262m": ["c4-262m-b1", "dense-c4-262m-b1"], "memory-c4-262m": ["c4-262m-b1"]}


def model_keys(case):
    """The cache folders a case reads."""
    return [model_key(c) for c in MEASURES.get(case, [case])]


def prepare(tools, name, synth_args, cache, kinds):
    """Synth checkpoint + the compiled files `kinds` needs; returns (ckpt dir, {kind: path})."""
    d = os.path.join(cache, model_key(name))
    ckpt = os.path.join(d, "ckpt")
    if not os.path.exists(os.path.join(ckpt, "model.safetensors")):
        log(f"[{name}] synth {' '.join(synth_args)}")
        run([tools.sh, "synth", *synth_args, "-o", ckpt])
    flags = {
        "custom": [], "plan": [], "decompose-dense": ["--decompose", "--experts", "dense"],
        "decompose-gather": ["--decompose", "--experts", "gather"],
        "kv-custom": ["--kv-cache"],
        "kv-dense": ["--decompose", "--kv-cache", "--experts", "dense"],
        "kv-gather": ["--decompose", "--kv-cache", "--experts", "gather"],
        "plan-int8": ["--quantize", "int8"],
        "plan-int4": ["--quantize", "int4", "--group-size", "32"],
        "plan-bf16": ["--dtype", "bf16"],
    }
    files = {}
    for kind in kinds:
        out = os.path.join(d, f"{kind}.shplan" if kind.startswith("plan") else f"{kind}.onnx")
        if not os.path.exists(out):
            log(f"[{name}] compile {kind}")
            run([tools.compile, ckpt, "-o", out, *flags[kind]])
        files[kind] = out
    return ckpt, files


def load_cfg(ckpt):
    with open(os.path.join(ckpt, "config.json")) as f:
        return json.load(f)


def race_engines(engines, a):
    """Runs `engines` ([(label, fn(runs) -> stats)]) in `a.rounds` rounds, each engine in turn
    once per round with its share of `a.runs` timed runs (after `a.warmup` untimed ones), so a
    change in the machine's speed during a case hits every engine alike. Stats over all the
    timed runs; an engine that fails is reported and not run again."""
    per = max(1, -(-a.runs // a.rounds))
    times, extra, failed = {}, {}, {}
    for rnd in range(a.rounds):
        for label, fn in engines:
            if label in failed:
                continue
            log(f"    {label} (round {rnd + 1}/{a.rounds}) ...")
            try:
                res = fn(per)
            except Exception as e:  # noqa: BLE001 - report every engine, go on
                text = (str(e).splitlines() or [type(e).__name__])[-1]
                failed[label] = {"error": text.rsplit("error: ", 1)[-1][:200]}
                log(f"    {label}: FAILED {failed[label]['error']}")
                continue
            times.setdefault(label, []).extend(res["times_ms"])
            extra[label] = {k: v for k, v in res.items() if k in ("check", "check_mean", "kernel_paths")}
    r = {}
    for label, _ in engines:
        if label in failed:
            r[label] = failed[label]
        else:
            r[label] = {**stats(times[label]), **extra[label]}
            log(f"    {label}: median {r[label]['median_ms']:.2f} ms")
    return r


def forward_case(tools, name, spec, a):
    synth_args, batch, seq, mode = spec
    kinds = ["custom"] + (["plan"] if tools.plan else [])
    if mode == "forward":
        kinds += ["decompose-dense", "decompose-gather"]
    ckpt, files = prepare(tools, name, synth_args, a.cache, kinds)
    cfg = load_cfg(ckpt)
    tokens = bench_tokens(batch, seq, cfg["vocab_size"])
    bench = lambda f: lambda n: tools.bench(f, batch, seq, n, a.warmup, a.threads)  # noqa: E731
    engines = [("ours", bench(files["custom"]))]
    if "plan" in files:
        engines.append(("ours-plan", bench(files["plan"])))
    if mode == "forward":
        want = tools.logits(files["custom"], tokens, a.cache, a.threads)
        engines.append(("tract (decompose, dense experts)", bench(files["decompose-dense"])))
        for form in ("gather", "dense"):
            f = files[f"decompose-{form}"]
            engines.append((f"ort ({form} experts)",
                            lambda n, f=f: ort_forward(f, tokens, a.threads, n, a.warmup, want)))
        for form in ("sorted", "dense"):
            engines.append((f"torch ({form} experts)",
                            lambda n, form=form: torch_forward(ckpt, form, tokens, a.threads, n, a.warmup, want)))
    r = race_engines(engines, a)
    flops = forward_flops(cfg, batch, seq, seq)
    return {"case": name, "mode": "forward", "batch": batch, "seq": seq, "tokens": batch * seq,
            "flops": flops, "results": r}


def decode_case(tools, name, spec, a):
    synth_args, batch, seq, _ = spec
    steps = a.decode_steps
    kinds = ["kv-custom", "kv-gather", "kv-dense"] + (["plan"] if tools.plan else [])
    ckpt, files = prepare(tools, name, synth_args, a.cache, kinds)
    cfg = load_cfg(ckpt)
    prompt = bench_tokens(batch, seq, cfg["vocab_size"])
    nxt = bench_tokens(batch, steps, cfg["vocab_size"], seed=1)  # the decoded tokens
    bench = lambda f: lambda n: tools.bench(f, batch, seq, n, a.warmup, a.threads, steps)  # noqa: E731
    engines = [("ours", bench(files["kv-custom"]))]
    if "plan" in files:  # a plan keeps its KV cache natively: no special compile
        engines.append(("ours-plan", bench(files["plan"])))
    for form in ("gather", "dense"):
        f = files[f"kv-{form}"]
        engines.append((f"ort ({form} experts, kv-cache)",
                        lambda n, f=f: ort_decode(f, prompt, nxt, a.threads, n, a.warmup)))
    for form in ("sorted", "dense"):
        engines.append((f"torch ({form} experts, own kv-cache)",
                        lambda n, form=form: torch_decode(ckpt, form, prompt, nxt, a.threads, n, a.warmup)))
    r = race_engines(engines, a)
    flops = forward_flops(cfg, batch, 1, seq + steps // 2)  # one step at the mean context
    return {"case": name, "mode": "decode", "batch": batch, "seq": seq, "steps": steps, "tokens": batch,
            "flops": flops, "bytes": decode_bytes(cfg, seq + steps // 2), "results": r}


# our plans in the quantized cases: label, compiled kind (`prepare`), precision
QUANT_OURS = [("ours-plan f32", "plan", "f32"), ("ours-plan int8", "plan-int8", "int8"),
              ("ours-plan int4 (g32)", "plan-int4", "int4"), ("ours-plan bf16", "plan-bf16", "bf16")]
ORT_SCHEMES = {"int8": "dynamic int8", "int4": f"MatMulNBits int4 b{quant_peers.ORT_INT4_BLOCK}"}


def unavailable(why):
    """An engine that fails with `why` (reported in its row)."""
    def fn(_runs):
        raise RuntimeError(why)
    return fn


def ort_quantized(files, kind, scheme, form):
    """The path of ORT's `scheme` quantization of the compiled file `files[kind]` (made once)."""
    src = files[kind]
    dst = src.replace(".onnx", f".ort-{scheme}.onnx")
    if not os.path.exists(dst):
        log(f"    ORT {scheme} quantization of {os.path.basename(src)} ...")
        quant_peers.ort_quantize(src, dst, scheme, form)
    return dst


def last_line(e):
    """The last line of an exception's text (what a failed engine's row shows)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]


def quant_ours(tools, files, spec, a, want, tokens):
    """Our plans' engines: [(label, fn)], their precisions and (forward) logits checks."""
    _, batch, seq, mode = spec
    steps = a.decode_steps if mode == "quant-decode" else None
    engines, checks = [], {}
    for label, kind, _ in QUANT_OURS:
        if not files.get(kind, "").endswith(".shplan"):  # absent, or why its compile failed
            engines.append((label, unavailable(files.get(kind) or "switchhead-compile has no --quantize")))
            continue
        if want is not None and kind != "plan":  # `want` is the f32 plan's
            try:
                got = tools.logits(files[kind], tokens, a.cache, a.threads)
                checks[label] = {"check": rel_err(got, want), "check_mean": mean_rel_err(got, want)}
            except RuntimeError as e:
                log(f"    {label}: switchhead logits failed: {last_line(e)}")
        fn = lambda n, f=files[kind], label=label: {  # noqa: E731
            **tools.bench(f, batch, seq, n, a.warmup, a.threads, steps), **checks.get(label, {})}
        engines.append((label, fn))
    return engines


def quant_peers_engines(files, ckpt, spec, a, want, inputs, paths):
    """ONNX Runtime's int8/int4 forms and PyTorch's dynamic int8: [(label, fn)]; fills `paths`."""
    _, _, _, mode = spec
    decode = mode == "quant-decode"
    engines = []
    # ORT's gather form at batch 8 x 256 ran 4.6x slower than its dense form in fp32: prefill races dense only
    for form in ("gather", "dense") if decode else ("dense",):
        kind = f"kv-{form}" if decode else f"decompose-{form}"
        for scheme, what in ORT_SCHEMES.items():
            label = f"ort {what} ({form} experts)"
            try:
                f = ort_quantized(files, kind, scheme, form)
                paths[label] = quant_peers.ort_paths(f, a.threads)
            except Exception as e:  # noqa: BLE001 - report the engine, go on
                engines.append((label, unavailable(f"ORT's {scheme} quantization or session failed: {last_line(e)}")))
                continue
            if decode:
                fn = lambda n, f=f: ort_decode(f, *inputs, a.threads, n, a.warmup, a.memo)  # noqa: E731
            else:
                fn = lambda n, f=f: ort_forward(f, *inputs, a.threads, n, a.warmup, want, a.memo)  # noqa: E731
            engines.append((label, fn))
    for form in ("dense", "sorted"):
        label = f"torch dynamic int8 ({form} experts)"
        run_fn = torch_decode if decode else torch_forward
        extra = () if decode else (want,)

        def fn(n, form=form, label=label, run_fn=run_fn, extra=extra):
            lm = torch_lm(ckpt, form, a.threads, "int8", a.memo)
            paths.setdefault(label, quant_peers.torch_paths(lm))
            return run_fn(ckpt, form, *inputs, a.threads, n, a.warmup, *extra, quant="int8", memo=a.memo)
        engines.append((label, fn))
    return engines


def precision_of(label):
    for p in ("int8", "int4", "bf16", "f32"):
        if p in label:
            return p
    return "f32"


def quant_case(tools, name, spec, a):
    """Our f32, int8, int4 (group 32) and bf16 plans beside ONNX Runtime's dynamic int8 and
    4-bit MatMul forms of the `--decompose` file and PyTorch's dynamic int8, in rounds."""
    synth_args, batch, seq, mode = spec
    decode = mode == "quant-decode"
    onnx = ["kv-gather", "kv-dense"] if decode else ["decompose-dense"]
    ckpt, files = prepare(tools, name, synth_args, a.cache, ["plan"] + onnx)
    for _, kind, _ in QUANT_OURS[1:]:  # a failed compile fails only its engine: {kind: why}
        if tools.quantize or not kind.endswith(("int8", "int4")):
            try:
                files |= prepare(tools, name, synth_args, a.cache, [kind])[1]
            except RuntimeError as e:
                files[kind] = f"switchhead-compile failed: {last_line(e)}"
    cfg = load_cfg(ckpt)
    tokens = bench_tokens(batch, seq, cfg["vocab_size"])
    if decode:
        want, inputs = None, (tokens, bench_tokens(batch, a.decode_steps, cfg["vocab_size"], seed=1))
    else:
        want = tools.logits(files["plan"], tokens, a.cache, a.threads)
        inputs = (tokens,)
    a.memo, paths = {}, {}
    engines = quant_ours(tools, files, spec, a, want, tokens)
    engines += quant_peers_engines(files, ckpt, spec, a, want, inputs, paths)
    try:
        r = race_engines(engines, a)
    finally:
        a.memo = None  # the sessions and models go
    for label, v in r.items():
        if label.startswith("ours"):
            kp = v.pop("kernel_paths", None)
            paths[label] = (kp if isinstance(kp, str) else json.dumps(kp)) if kp else \
                "not reported by this build's switchhead bench"
    out = {"case": name, "mode": mode, "batch": batch, "seq": seq, "tokens": batch if decode else batch * seq,
           "results": r, "paths": paths, "precision": {label: precision_of(label) for label in r}}
    if decode:
        ctx = seq + a.decode_steps // 2  # the mean context of a step
        out["steps"] = a.decode_steps
        out["step_bytes"] = {label: quant_peers.plan_step_bytes(files[kind], cfg, ctx)
                             for label, kind, _ in QUANT_OURS if isinstance(files.get(kind), str)
                             and files[kind].endswith(".shplan")}
    return out


def op_ms(profile, op):
    """Milliseconds per pass of `op` in a `switchhead bench --profile --json` report."""
    return sum(t["ms"] for t in profile.get("profile") or [] if t["op"] == op)


def plan_of(tools, case, a):
    """The `.shplan` of a forward case's model (compiled into the cache if missing)."""
    return prepare(tools, case, CASES[case][0], a.cache, ["plan"])[1]["plan"]


def attention_case(tools, name, spec, a):
    """MoEAttention's time per pass (`switchhead bench --profile`) in the SwitchHead plan and
    in its dense baseline, the two alternated in `a.rounds` rounds of `a.runs / a.rounds` runs."""
    _, batch, seq, _ = spec
    plans = {model_key(case): plan_of(tools, case, a) for case in MEASURES[name]}
    per = max(1, -(-a.runs // a.rounds))
    ms = {k: [] for k in plans}
    for rnd in range(a.rounds):
        for key, plan in plans.items():
            log(f"    {key} --profile (round {rnd + 1}/{a.rounds}) ...")
            out = json.loads(run([tools.sh, "bench", plan, "--batch", str(batch), "--seq", str(seq),
                                  "--runs", str(per), "--warmup", str(a.warmup),
                                  "--threads", str(a.threads), "--json", "--profile"]))
            ms[key].append(op_ms(out, "MoEAttention"))
    return {"case": name, "mode": "attention", "batch": batch, "seq": seq, "ms": ms}


def memory_case(tools, name, spec, a):
    """Peak RSS of a whole `switchhead bench` process on the plan (load, warmup, timed runs;
    reported by the process) against the plan file's bytes (a header and op list of a few
    KiB, the rest weights)."""
    _, batch, seq, _ = spec
    case = MEASURES[name][0]
    plan = plan_of(tools, case, a)
    log(f"    peak RSS of a {model_key(case)} plan session ...")
    # the process reports its own peak (`VmHWM`): a forked child's getrusage would count the
    # pages it shared with this Python process (torch and numpy loaded) before exec
    out = json.loads(run([tools.sh, "bench", plan, "--batch", str(batch), "--seq", str(seq), "--runs", "2",
                          "--warmup", "1", "--threads", str(a.threads), "--json"]))
    if out.get("peak_rss_kib") is None:
        raise RuntimeError("switchhead bench reported no peak RSS (not Linux?)")
    rss = out["peak_rss_kib"]
    return {"case": name, "mode": "memory", "batch": batch, "seq": seq, "model": model_key(case),
            "rss_kib": rss, "plan_bytes": os.path.getsize(plan)}


def measure_lines(cases):
    """The attention and memory targets' lines."""
    lines = []
    for c in cases:
        if c["mode"] == "attention":
            (moe, moe_ms), (dense, dense_ms) = c["ms"].items()
            ratios = [m / d for m, d in zip(moe_ms, dense_ms)]
            each = ", ".join(f"{m:.0f}/{d:.0f}" for m, d in zip(moe_ms, dense_ms))
            lines += [f"Attention, seq {c['seq']} (`MoEAttention` ms per pass from `switchhead bench --profile` "
                      f"on the plans, {len(ratios)} alternated rounds, {moe}/{dense}: {each}): sums "
                      f"{sum(moe_ms):.0f} against {sum(dense_ms):.0f} ms = {sum(moe_ms) / sum(dense_ms):.2f}x, "
                      f"per round {min(ratios):.2f}-{max(ratios):.2f}x (target <= 0.6x).", ""]
        if c["mode"] == "memory":
            rss, plan = c["rss_kib"] * 1024, c["plan_bytes"]
            lines += [f"Memory, {c['model']} plan session at batch {c['batch']}, seq {c['seq']}: peak RSS "
                      f"{rss / 2**20:,.0f} MiB (`VmHWM` of the `switchhead bench` process) for a "
                      f"{plan / 2**20:,.0f} MiB plan file = {rss / plan:.2f}x (target <= 1.3x).", ""]
    return lines


# ----------------------------------------------------------------------------- report

def race_pick(results, prefix):
    """The fastest of the engines whose label starts with prefix (None when all failed)."""
    ok = [(v["median_ms"], k) for k, v in results.items() if k.startswith(prefix) and "median_ms" in v]
    return min(ok)[1] if ok else None


def table(cases, ceiling):
    lines = ["| case | engine | median ms | p10-p90 ms | min-max ms | tokens/s | engine/ours | GFLOP/s | % ceiling | logits check |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        ours = c["results"].get("ours", {}).get("median_ms")
        raced = {race_pick(c["results"], p) for p in ("ort", "torch")}
        what = (f"{c['case']} [{c['batch']}x{c['seq']}]" if c["mode"] == "forward"
                else f"{c['case']} [{c['batch']}, ctx {c['seq']}, {c['steps']} steps]")
        for label, v in c["results"].items():
            if "median_ms" not in v:
                lines.append(f"| {what} | {label} | n/a: {v['error']} | | | | | | | |")
                continue
            med = v["median_ms"]
            star = " **(raced)**" if label in raced else ""
            tps = c["tokens"] / (med / 1e3)
            gflops = c["flops"] / (med / 1e3) / 1e9
            ratio = f"{med / ours:.2f}" if ours else "-"
            check = f"{v['check']:.1e}" if "check" in v else ""
            lines.append(
                f"| {what} | {label}{star} | {med:.2f} | {v['p10_ms']:.2f}-{v['p90_ms']:.2f} | "
                f"{v['min_ms']:.2f}-{v['max_ms']:.2f} | {tps:,.0f} | {ratio} | {gflops:.1f} | "
                f"{100 * gflops / ceiling:.1f}% | {check} |")
    return "\n".join(lines)


def decode_bounds(cases, bandwidth):
    """One line per decode case: our step time against reading its bytes once."""
    lines = []
    for c in cases:
        if c["mode"] != "decode":
            continue
        floor_ms = c["bytes"] / (bandwidth * 1e9) * 1e3
        ours = {k: v["median_ms"] for k, v in c["results"].items()
                if k.startswith("ours") and "median_ms" in v}
        txt = ", ".join(f"{k} {v:.2f} ms = {v / floor_ms:.2f}x" for k, v in ours.items())
        lines += [f"Decode bound, {c['case']}: one step reads {c['bytes'] / 1e6:.1f} MB of weights and "
                  f"KV cache; at the measured read bandwidth ({bandwidth:.1f} GB/s, "
                  f"numpy max over 1 GiB on the same threads) that takes {floor_ms:.2f} ms; {txt} (target <= 2x).", ""]
    return lines


def quant_table(cases, bandwidth):
    """The quantized cases' table: every engine against our f32 plan, and (decode) our plans
    against reading their own weights once."""
    lines = ["| case | engine | precision | median ms | p10-p90 ms | min-max ms | tokens/s | "
             "engine/ours-plan f32 | x reading its weights once | logits vs f32 plan, max / mean rel |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        base = c["results"].get("ours-plan f32", {}).get("median_ms")
        what = (f"{c['case']} [{c['batch']}, ctx {c['seq']}, {c['steps']} steps]" if c["mode"] == "quant-decode"
                else f"{c['case']} [{c['batch']}x{c['seq']}]")
        for label, v in c["results"].items():
            prec = c["precision"][label]
            if "median_ms" not in v:
                lines.append(f"| {what} | {label} | {prec} | n/a: {v['error']} | | | | | | |")
                continue
            med = v["median_ms"]
            ratio = f"{med / base:.2f}" if base else "-"
            floor = ""
            if label in c.get("step_bytes", {}):
                floor = f"{med / floor_ms(c['step_bytes'][label], bandwidth):.2f}"
            check = f"{v['check']:.1e} / {v['check_mean']:.1e}" if "check_mean" in v else ""
            lines.append(f"| {what} | {label} | {prec} | {med:.2f} | {v['p10_ms']:.2f}-{v['p90_ms']:.2f} | "
                         f"{v['min_ms']:.2f}-{v['max_ms']:.2f} | {c['tokens'] / (med / 1e3):,.0f} | {ratio} | "
                         f"{floor} | {check} |")
    return "\n".join(lines)


def floor_ms(step_bytes, bandwidth):
    """Milliseconds to read (weight bytes, KV bytes) once at `bandwidth` GB/s."""
    return sum(step_bytes) / (bandwidth * 1e9) * 1e3


def fastest(c, prec, prefix):
    """(label, median) of the fastest engine of `prec` whose label starts with / does not start
    with "ours" (prefix "ours" / "peer"); None when none ran."""
    ok = [(v["median_ms"], k) for k, v in c["results"].items() if "median_ms" in v and c["precision"][k] == prec
          and k.startswith("ours") == (prefix == "ours")]
    return (min(ok)[1], min(ok)[0]) if ok else None


def quant_lines(cases, bandwidth):
    """Per quantized case: each precision's speed against our f32 plan and the fastest peer of
    that precision, the decode bound, and the path each engine took."""
    lines = []
    for c in cases:
        f32 = c["results"].get("ours-plan f32", {}).get("median_ms")
        lines.append(f"**{c['case']}**:")
        for prec in ("int8", "int4", "bf16"):
            ours, peer = fastest(c, prec, "ours"), fastest(c, prec, "peer")
            if not ours:
                continue
            txt = f"our {prec} plan {ours[1]:.2f} ms"
            if f32:
                txt += f": speedup {f32 / ours[1]:.2f}x over our f32 plan ({f32:.2f} ms)"
            if peer:
                txt += f"; speedup {peer[1] / ours[1]:.2f}x over the fastest {prec} peer, {peer[0]} ({peer[1]:.2f} ms)"
            lines.append(f"- {txt}.")
        for label, (wb, kv) in c.get("step_bytes", {}).items():
            v = c["results"].get(label, {})
            if "median_ms" in v:
                fl = floor_ms((wb, kv), bandwidth)
                lines.append(f"- decode bound, {label}: a step reads {wb / 1e6:.1f} MB of its plan's weights "
                             f"(as stored) and {kv / 1e6:.1f} MB of f32 KV cache; at {bandwidth:.1f} GB/s that "
                             f"takes {fl:.2f} ms; the step took {v['median_ms']:.2f} ms = {v['median_ms'] / fl:.2f}x.")
        lines.append("- paths: " + "; ".join(f"{k}: `{p}`" for k, p in c["paths"].items()) + ".")
        lines.append("")
    return lines


def cpu_flags():
    """The CPU's flags that the int8/bf16 kernel paths depend on (Linux /proc/cpuinfo)."""
    want = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
            "amx_tile", "amx_int8", "amx_bf16")
    try:
        with open("/proc/cpuinfo") as f:
            have = next(line for line in f if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(w for w in want if w in have) or "none of the SIMD flags"


def machine():
    try:
        model = [l.split(":", 1)[1].strip() for l in run(["lscpu"]).splitlines() if l.startswith("Model name")][0]
    except Exception:  # noqa: BLE001
        model = platform.processor() or "unknown"
    return model, os.cpu_count()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", help=f"comma-separated subset of {','.join(CASES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="smoke run: c4-47m cases only, seq 64, 3 runs, 8 decode steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3,
                    help="run the engines of a case in turn this many times, the timed runs split among the rounds")
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--gemm-n", type=int, default=2048)
    ap.add_argument("--n-layers", type=int, help="override every synthesized model's layer count (smoke runs of big shapes)")
    ap.add_argument("--bin-dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release"))
    ap.add_argument("--cache", help="checkpoint/compiled-file dir (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the cache dir's files")
    ap.add_argument("--out", help="also write the markdown report here")
    ap.add_argument("--json", help="also write the raw results here")
    a = ap.parse_args()
    a.rounds = max(1, a.rounds)
    names = a.cases.split(",") if a.cases else list(QUICK_CASES if a.quick else CASES)
    if a.quick:
        a.runs, a.warmup, a.decode_steps, a.gemm_n = min(a.runs, 3), 1, 8, 1024
        a.rounds = 1
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {list(CASES)}")
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))
    tmp = None
    if a.cache is None:
        tmp = tempfile.mkdtemp(prefix="switchhead-race-")
        a.cache = tmp
    os.makedirs(a.cache, exist_ok=True)
    tools = Tools(a.bin_dir)
    load_before = os.getloadavg()[0]
    log(f"plan output (.shplan) supported: {tools.plan}; --quantize: {tools.quantize}")
    log("GEMM ceiling ...")
    ceilings = gemm_ceiling(a.gemm_n, a.threads)
    bandwidth = memory_bandwidth(a.threads)
    log(f"memory read bandwidth: {bandwidth:.1f} GB/s")
    cases = []
    try:
        for name in names:
            spec = CASES[name]
            if a.quick:
                spec = (spec[0], spec[1], 64, spec[3])
            log(f"[{name}]")
            if a.n_layers and spec[0]:
                spec = (spec[0] + ["--n-layers", str(a.n_layers)], *spec[1:])
            fn = {"decode": decode_case, "attention": attention_case, "memory": memory_case,
                  "quant-decode": quant_case, "quant-forward": quant_case}.get(spec[3], forward_case)
            cases.append(fn(tools, name, spec, a))
            later = {k for n in names[names.index(name) + 1 :] for k in model_keys(n)}
            for key in model_keys(name):
                if not a.keep and key not in later:
                    shutil.rmtree(os.path.join(a.cache, key), ignore_errors=True)
    finally:
        if tmp and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    model, cores = machine()
    plain = [c for c in cases if c["mode"] in ("forward", "forward-ours", "decode")]
    quant = [c for c in cases if c["mode"].startswith("quant")]
    load_after = os.getloadavg()[0]
    # again at the end: one measurement can fall in a slow minute and flatter every share
    log("GEMM ceiling again ...")
    at_end = gemm_ceiling(a.gemm_n, a.threads)
    ceil_txt = ", ".join(f"{k} {v:.0f} and {at_end[k]:.0f}" for k, v in ceilings.items())
    ceilings = {k: max(v, at_end[k]) for k, v in ceilings.items()}
    ceiling = max(ceilings.values())
    report = [
        f"Machine: {model}, {cores} logical CPUs; {a.threads} threads for every engine; "
        f"{a.rounds} rounds of {max(1, -(-a.runs // a.rounds))} timed runs after {a.warmup} warmup per engine; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"CPU flags: {cpu_flags()}.",
        f"Machine load (1-min load average) at start {load_before:.1f}, at end {load_after:.1f}.",
        f"GEMM ceiling (fp32 {a.gemm_n}^3, GFLOP/s, at the start and at the end): {ceil_txt}; "
        f"ceiling = the best, {ceiling:.0f}.",
        f"Command: `{' '.join([os.path.basename(sys.executable)] + sys.argv)}`",
        "",
        *([table(plain, ceiling), ""] if plain else []),
        *([quant_table(quant, bandwidth), ""] + quant_lines(quant, bandwidth) if quant else []),
        *decode_bounds(cases, bandwidth),
        *measure_lines(cases),
        "engine/ours: median time of the engine divided by ours (> 1: ours is faster). "
        "(raced): the faster form of that library. GFLOP/s: `forward_flops` (needed FLOPs only) "
        "over the median. Decode rows: per-step times, tokens/s = batch / median step. "
        "logits check: max |a-b| / max |b| against our runtime's logits for the same tokens.",
    ]
    text = "\n".join(report)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"ceilings": ceilings, "bandwidth_gbs": bandwidth, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
