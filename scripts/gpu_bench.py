"""PyTorch eager baselines and device ceilings for the GPU check.

For each model dir (a `switchhead synth` checkpoint): testdata/scripts/reference.py's LM on the
device, weights in --dtype, timed with CUDA events (wall clock on CPU):
  prefill: one chunk of B x T tokens (XL models with empty memory);
  decode:  one token per batch row; XL with a T-token memory, RoPE models re-run (no KV cache
           in reference.py: eager full recompute is what the eager code offers).
FLOPs and bytes are analytic estimates (active matmul parameters, attention scores, weights
read once per step). Ceilings: a large bf16 (and fp32 without TF32) GEMM through torch and a
device-to-device copy. Writes one JSON.

Usage: python3 gpu_bench.py --reference PATH/reference.py --out bench.json [--device cuda]
       [--dtype bf16] [--batch 8] [--iters 10] [--ceilings] MODEL_DIR...
"""
import argparse
import importlib.util
import json
import os
import sys
import time


def load_reference(path):
    spec = importlib.util.spec_from_file_location("reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timer(torch, device, fn, iters, warmup=2):
    for _ in range(warmup):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def active_flops_per_token(c, tk):
    D, H, dh, L, V = c["d_model"], c["n_heads"], c["d_head"], c["n_layers"], c["vocab_size"]
    E, k = c["n_experts"], c["moe_k"]
    attn = 2 * H * dh * D + 2 * k * H * dh * D + 2 * H * E * D  # q,k; active v,o; routers
    if c.get("pos_encoding") == "xl":
        attn += H * dh * D  # position keys, amortised over the chunk (upper bound)
    scores = 2 * 2 * H * dh * tk  # q.k and p.v
    if c.get("ffn", "dense") == "sigma_moe":
        ffn = 2 * c["ffn_k"] * c["ffn_expert_size"] * D + c["ffn_n_experts"] * D
    else:
        ffn = 2 * D * c["d_ff"]
    return 2 * (L * (attn + ffn) + D * V) + L * scores


def weight_bytes(model, itemsize):
    return sum(p.numel() for p in model.parameters()) * itemsize


def bench_model(args, torch, ref, model_dir):
    from safetensors.torch import load_file
    cfg = ref.load_config(os.path.join(model_dir, "config.json"))
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]
    model = ref.load_state(ref.LM(cfg), load_file(os.path.join(model_dir, "model.safetensors")))
    model = model.to(device=args.device, dtype=dtype).eval()
    B, T, V = args.batch, args.seq or cfg["chunk_size"], cfg["vocab_size"]
    xl = cfg["pos_encoding"] == "xl"
    g = torch.Generator(device="cpu").manual_seed(0)
    tokens = torch.randint(0, V, (B, T), generator=g).to(args.device)
    one = tokens[:, :1]
    res = {"model": os.path.basename(model_dir.rstrip("/")), "batch": B, "seq": T, "dtype": args.dtype}
    with torch.inference_mode():
        _, mems = model(tokens, None)
        prefill = timer(torch, args.device, lambda: model(tokens, None), args.iters)
        if xl:
            decode = timer(torch, args.device, lambda: model(one, mems), args.iters)
        else:
            decode = timer(torch, args.device, lambda: model(tokens, None), args.iters)
    itemsize = 2 if args.dtype == "bf16" else 4
    wbytes = weight_bytes(model, itemsize)
    pf_flops = B * T * active_flops_per_token(cfg, T)
    dec_flops = B * active_flops_per_token(cfg, 2 * T if xl else T)
    mem_bytes = (cfg["n_layers"] * B * T * cfg["d_model"] * itemsize) if xl else 0
    res["prefill"] = {"seconds": prefill, "tokens_per_s": B * T / prefill,
                      "tflops": pf_flops / prefill / 1e12, "gbps_weights": wbytes / prefill / 1e9}
    res["decode"] = {"seconds": decode, "tokens_per_s": B / decode, "tflops": dec_flops / decode / 1e12,
                     "gbps": (wbytes + mem_bytes) / decode / 1e9,
                     "mode": "xl memory" if xl else "full recompute (no KV cache in eager reference)"}
    res["weight_bytes"] = wbytes
    del model
    return res


def ceilings(torch, device, n, iters):
    out = {}
    for name, dt in (("bf16", torch.bfloat16), ("f32", torch.float32)):
        torch.backends.cuda.matmul.allow_tf32 = False
        a = torch.randn(n, n, device=device, dtype=dt)
        b = torch.randn(n, n, device=device, dtype=dt)
        s = timer(torch, device, lambda: a @ b, iters)
        out[f"gemm_{name}_tflops"] = 2 * n ** 3 / s / 1e12
        del a, b
    nbytes = (1 << 31) if device.startswith("cuda") else (1 << 24)
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    s = timer(torch, device, lambda: dst.copy_(src), iters)
    out["memcpy_gbps_read_plus_write"] = 2 * nbytes / s / 1e9
    out["gemm_n"] = n
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--reference", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=0, help="tokens per chunk (0: the config's chunk_size)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--ceilings", action="store_true")
    ap.add_argument("--gemm-n", type=int, default=8192)
    args = ap.parse_args()
    report = {"device": args.device}
    try:
        import torch
    except ImportError as e:
        report["skipped"] = f"no torch: {e}"
        print(f"gpu_bench: SKIPPED, no torch ({e})")
        json.dump(report, open(args.out, "w"), indent=1)
        return 0
    report["torch"] = torch.__version__
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(0)
    ref = load_reference(args.reference)
    if args.ceilings:
        report["ceilings"] = ceilings(torch, args.device, args.gemm_n, args.iters)
        print("ceilings:", json.dumps(report["ceilings"]))
    report["models"] = []
    for m in args.models:
        r = bench_model(args, torch, ref, m)
        c = report.get("ceilings")
        if c:
            peak = c[f"gemm_{args.dtype}_tflops"]
            r["prefill"]["frac_of_gemm_peak"] = r["prefill"]["tflops"] / peak
            r["decode"]["frac_of_memcpy"] = r["decode"]["gbps"] / c["memcpy_gbps_read_plus_write"]
        report["models"].append(r)
        print(json.dumps(r))
    json.dump(report, open(args.out, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
