"""Trains small SwitchHead LMs on the KJV corpus (CPU) and evaluates held-out bits per byte.

Usage: train.py [--models rope,xl,switchall,dense,gated,spm] [--budget 240] [--gated-budget 90]
                [--steps N] [--threads 1] [--out testdata/models]
Models are independent: several train.py processes with disjoint --models can run in parallel.
All read bytes except `spm`, which reads the tokens of the SentencePiece model
models/spm/tokenizer.model (train_tokenizer.py makes it; the text is encoded as one string).

Split: data = bytes of testdata/corpus/kjv.txt, N = len(data); train = data[:int(0.9*N)],
held-out = data[int(0.9*N):]. testdata/corpus/heldout-eval.txt = first 32768 held-out bytes.

Evaluation (bits per byte = summed cross-entropy in bits of the predicted tokens / the number of
text bytes those tokens cover; for bytes, the mean over the predicted bytes). Token i of an
encoded text covers the bytes from the end of token i-1's span to the end of its own (token 0 from
the start of the text), so the tokens of a text cover all of it. The windows below count tokens:
  rope/dense (no memory): non-overlapping windows of chunk_size bytes; each window predicts its
    bytes 1..n-1 from bytes 0..n-2 of the same window (the first byte of each window is not
    predicted); a final partial window is evaluated too if its length >= 2.
  xl (memory): one stream; inputs = bytes 0..n-2, targets = bytes 1..n-1, cut into consecutive
    chunks of chunk_size inputs (the last chunk may be shorter); each chunk attends to the previous
    chunk through the XL memory (the previous chunk's layer inputs; empty for the first chunk).
    So every byte except the first is predicted from all bytes before it in the stream.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.dirname(HERE)
CORPUS = os.path.join(TESTDATA, "corpus", "kjv.txt")
HELDOUT_EVAL = os.path.join(TESTDATA, "corpus", "heldout-eval.txt")
HELDOUT_EVAL_BYTES = 32768

EVAL_METHOD = {
    "bpb": "mean cross-entropy in bits (natural-log CE / ln 2) over all predicted bytes",
    "bpb_tokens": "summed cross-entropy in bits (natural-log CE / ln 2) of the predicted tokens / the UTF-8 bytes "
                  "they cover (token i covers the bytes from the end of token i-1's span to the end of its own); "
                  "token_perplexity = exp(mean natural-log CE per predicted token); windows count tokens",
    "split": "data = kjv.txt bytes, N = len(data); train = data[:int(0.9*N)]; heldout = data[int(0.9*N):]; "
             "heldout-eval.txt = heldout[:32768]",
    "rope_dense": "non-overlapping windows of chunk_size bytes; each window predicts its bytes 1..n-1 from bytes "
                  "0..n-2 of that window only (first byte of each window not predicted); a final partial window "
                  "is evaluated if its length >= 2",
    "xl": "one stream, batch 1; inputs bytes 0..n-2, targets bytes 1..n-1, cut into consecutive chunks of "
          "chunk_size inputs (last chunk may be shorter); chunk j attends to chunk j-1 through the XL memory "
          "(previous chunk's layer inputs, empty for chunk 0); every byte but the first is predicted",
}

BASE = {
    "vocab_size": 256,
    "rotate_fraction": 0.5,
    "rope_base": 10000.0,
    "layer_norm_eps": 1e-5,
}

MODELS = {
    # SwitchHead RoPE: D not a power of two, E=5, k=3, n_rot = 18
    "rope": dict(config=dict(d_model=132, n_layers=3, n_heads=2, n_experts=5, moe_k=3, d_head=36, d_ff=300,
                             pos_encoding="rope", ffn="dense", attention="switchhead", chunk_size=160),
                 batch=16, lr=2e-3, seed=1001, memory=False),
    # SwitchHead XL, trained with XL memory
    "xl": dict(config=dict(d_model=120, n_layers=3, n_heads=2, n_experts=4, moe_k=2, d_head=30, d_ff=264,
                           pos_encoding="xl", ffn="dense", attention="switchhead", chunk_size=128),
               batch=16, lr=2e-3, seed=1002, memory=True),
    # SwitchAll: SwitchHead XL attention + sigma-MoE FFN, trained with XL memory
    "switchall": dict(config=dict(d_model=128, n_layers=2, n_heads=2, n_experts=4, moe_k=2, d_head=32,
                                  pos_encoding="xl", ffn="sigma_moe", ffn_n_experts=8, ffn_expert_size=48,
                                  ffn_k=3, attention="switchhead", chunk_size=128),
                      batch=16, lr=2e-3, seed=1003, memory=True),
    # dense multi-head attention baseline with RoPE
    "dense": dict(config=dict(d_model=128, n_layers=3, n_heads=4, n_experts=1, moe_k=1, d_head=32, d_ff=288,
                              pos_encoding="rope", ffn="dense", attention="dense", chunk_size=128),
                  batch=16, lr=2e-3, seed=1004, memory=False),
    # E = 1 gated variant (RoPE), tiny; rotate_fraction 0.25 -> n_rot = 6
    "gated": dict(config=dict(d_model=72, n_layers=2, n_heads=3, n_experts=1, moe_k=1, d_head=24, d_ff=168,
                              pos_encoding="rope", rotate_fraction=0.25, ffn="dense", attention="switchhead",
                              chunk_size=128),
                  batch=16, lr=3e-3, seed=1005, memory=False),
    # SwitchHead RoPE over the 1,000-piece SentencePiece vocabulary of models/spm/tokenizer.model
    "spm": dict(config=dict(vocab_size=1000, d_model=96, n_layers=2, n_heads=2, n_experts=4, moe_k=2, d_head=32,
                            d_ff=256, pos_encoding="rope", ffn="dense", attention="switchhead", chunk_size=64),
                batch=16, lr=2e-3, seed=1006, memory=False, tokenizer="tokenizer.model"),
}

KEY_ORDER = ["vocab_size", "d_model", "n_layers", "n_heads", "n_experts", "moe_k", "d_head", "d_ff",
             "pos_encoding", "rotate_fraction", "rope_base", "ffn", "ffn_n_experts", "ffn_expert_size", "ffn_k",
             "layer_norm_eps", "chunk_size", "attention"]


def model_config(name):
    c = dict(BASE)
    c.update(MODELS[name]["config"])
    return {k: c[k] for k in KEY_ORDER if k in c}


def load_data():
    with open(CORPUS, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    cut = int(0.9 * len(data))
    return data[:cut], data[cut:]


def tokenize(model_file, data):
    """Encodes the UTF-8 bytes `data` as one string with a SentencePiece model. Returns the token ids
    and the text bytes each token covers (from the end of the previous token's span to the end of its
    own), both int64 arrays."""
    import sentencepiece as spm  # only the tokenized models need it

    sp = spm.SentencePieceProcessor(model_file=model_file)
    pieces = sp.encode(bytes(data).decode("utf-8"), out_type="immutable_proto").pieces
    ids = np.array([p.id for p in pieces], dtype=np.int64)
    ends = np.maximum.accumulate(np.array([p.end for p in pieces], dtype=np.int64))
    return ids, np.diff(ends, prepend=0)


def write_heldout_eval(held):
    b = bytes(held[:HELDOUT_EVAL_BYTES])
    if not os.path.exists(HELDOUT_EVAL) or open(HELDOUT_EVAL, "rb").read() != b:
        with open(HELDOUT_EVAL, "wb") as f:
            f.write(b)
    return np.frombuffer(b, dtype=np.uint8)


@torch.no_grad()
def eval_bpb(model, data, covered=None, batch=64):
    """Returns (bpb, n_predicted, predicted_bytes, token_perplexity) following EVAL_METHOD for the model's
    pos_encoding. `data` holds token ids; `covered` the text bytes each token covers (None: one each)."""
    model.eval()
    cfg = model.cfg
    T = cfg["chunk_size"]
    t = torch.from_numpy(data.astype(np.int64))
    c = torch.ones_like(t) if covered is None else torch.from_numpy(covered.astype(np.int64))
    total, count, n_bytes = 0.0, 0, 0
    if cfg["pos_encoding"] == "xl":
        # Exact, but batched: with one chunk of memory, layer i of chunk j only needs layer i's input of
        # chunk j-1, so the stream is run layer by layer over all chunks at once (see eval_xl_sequential
        # for the plain chunk-by-chunk loop, which gives the same numbers).
        x, y = t[:-1], t[1:]
        n = x.shape[0]
        nfull = n // T
        pieces = [x[:nfull * T].view(nfull, T)] if nfull else []
        tail = x[nfull * T:]
        h = model.embedding(pieces[0]) if nfull else None
        ht = model.embedding(tail[None]) if tail.shape[0] else None
        for layer in model.unique_layers:
            outs = []
            if nfull:
                outs.append(layer(h[:1])[0])
                for s in range(1, nfull, batch):
                    e = min(nfull, s + batch)
                    outs.append(layer(h[s:e], h[s - 1:e - 1])[0])
            if ht is not None:
                ht = layer(ht, h[-1:] if nfull else None)[0]
            h = torch.cat(outs, 0) if nfull else None
        parts = []
        if nfull:
            parts.append(h.reshape(-1, h.shape[-1]))
        if ht is not None:
            parts.append(ht[0])
        hs = torch.cat(parts, 0)
        for s in range(0, hs.shape[0], 8192):
            logits = model.output(model.out_norm(hs[s:s + 8192]))
            total += F.cross_entropy(logits, y[s:s + 8192], reduction="sum").item()
        count += y.numel()
        n_bytes += int(c[1:].sum())
    else:
        nfull = t.shape[0] // T
        full = t[:nfull * T].view(nfull, T)
        for s in range(0, nfull, batch):
            w = full[s:s + batch]
            logits, _ = model(w[:, :-1])
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                     reduction="sum").item()
            count += w[:, 1:].numel()
            n_bytes += int(c[:nfull * T].view(nfull, T)[s:s + batch, 1:].sum())
        rest = t[nfull * T:]
        if rest.shape[0] >= 2:
            logits, _ = model(rest[None, :-1])
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rest[1:], reduction="sum").item()
            count += rest.shape[0] - 1
            n_bytes += int(c[nfull * T + 1:].sum())
    return total / n_bytes / math.log(2), count, n_bytes, math.exp(total / count)


@torch.no_grad()
def eval_xl_sequential(model, data):
    """Plain chunk-by-chunk XL evaluation (reference for the batched path in eval_bpb)."""
    model.eval()
    T = model.cfg["chunk_size"]
    t = torch.from_numpy(data.astype(np.int64))
    x, y = t[:-1], t[1:]
    mems, total = None, 0.0
    for s in range(0, x.shape[0], T):
        logits, mems = model(x[s:s + T][None], mems=mems)
        total += F.cross_entropy(logits[0], y[s:s + T], reduction="sum").item()
    return total / y.numel() / math.log(2), y.numel()


def lr_at(step, progress, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, max(0.0, progress))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def model_data(name, out_root, train, held, held_eval):
    """The model's token streams: (train ids, (held ids, covered), (held_eval ids, covered)). Bytes for
    byte-level models (covered None: one byte each); SentencePiece ids for a model with a tokenizer."""
    tok = MODELS[name].get("tokenizer")
    if tok is None:
        return train, (held, None), (held_eval, None)
    path = os.path.join(out_root, name, tok)
    return tokenize(path, train)[0], tokenize(path, held), tokenize(path, held_eval)


def eval_record(data, result_untrained, result_trained, n_text_bytes):
    """The metrics.json record of one evaluated text."""
    (un, n, n_bytes, un_ppl), (tr, _, _, tr_ppl) = result_untrained, result_trained
    rec = {"bytes": n_text_bytes, "predicted": n, "untrained_bpb": round(un, 6), "trained_bpb": round(tr, 6)}
    if data[1] is not None:
        rec.update({"tokens": int(data[0].shape[0]), "predicted_bytes": n_bytes,
                    "untrained_token_perplexity": round(un_ppl, 6), "trained_token_perplexity": round(tr_ppl, 6)})
    return rec


def train_one(name, budget, steps_override, out_root, train, held, held_eval):
    spec = MODELS[name]
    n_held_bytes, n_eval_bytes = int(held.shape[0]), int(held_eval.shape[0])
    train, held, held_eval = model_data(name, out_root, train, held, held_eval)
    unit = "bytes" if held[1] is None else "tokens"
    cfg = model_config(name)
    T = cfg["chunk_size"]
    B = spec["batch"]
    torch.manual_seed(spec["seed"])
    np.random.seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    model = ref.LM(cfg)
    params = sum(p.numel() for p in model.state_dict().values())
    print(f"[{name}] config {json.dumps(cfg)}", flush=True)
    print(f"[{name}] params {params}", flush=True)

    t0 = time.time()
    un_held, un_eval = eval_bpb(model, *held), eval_bpb(model, *held_eval)
    print(f"[{name}] untrained bpb heldout {un_held[0]:.6f} heldout-eval {un_eval[0]:.6f} "
          f"({time.time() - t0:.1f}s)", flush=True)

    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"], betas=(0.9, 0.98), eps=1e-9)
    warmup = 30
    tt = torch.from_numpy(train.astype(np.int64))
    if spec["memory"]:
        S = tt.shape[0] // B
        streams = tt[:S * B].view(B, S)
        n_chunks = (S - 1) // T
    mems = None
    chunk = 0
    # Schedule: linear warmup over `warmup` steps, then cosine to 10% of the peak. With --steps the
    # cosine runs over the step count; otherwise over the wall-clock budget (progress = elapsed/budget),
    # and training stops when the budget is spent.
    step = 0
    losses = []
    start = time.time()
    model.train()
    while True:
        elapsed = time.time() - start
        if steps_override:
            if step >= steps_override:
                break
            progress = max(0.0, (step - warmup) / max(1, steps_override - warmup))
        else:
            if elapsed >= budget:
                break
            progress = elapsed / budget
        if spec["memory"]:
            if chunk >= n_chunks:
                chunk, mems = 0, None
            seg = streams[:, chunk * T: chunk * T + T + 1]
            x, y = seg[:, :-1], seg[:, 1:]
            chunk += 1
        else:
            starts = rng.integers(0, tt.shape[0] - T - 1, size=B)
            seg = torch.stack([tt[s:s + T + 1] for s in starts])
            x, y = seg[:, :-1], seg[:, 1:]
        lr = lr_at(step, progress, spec["lr"], warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        logits, new_mems = model(x, mems=mems if spec["memory"] else None)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if spec["memory"]:
            mems = [m.detach() for m in new_mems]
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            print(f"[{name}] step {step} loss {np.mean(losses[-100:]) / math.log(2):.4f} bits "
                  f"lr {lr:.2e} {time.time() - start:.0f}s", flush=True)
    seconds = time.time() - start
    model.eval()

    t1 = time.time()
    tr_held, tr_eval = eval_bpb(model, *held), eval_bpb(model, *held_eval)
    print(f"[{name}] trained bpb heldout {tr_held[0]:.6f} heldout-eval {tr_eval[0]:.6f} "
          f"({time.time() - t1:.1f}s)", flush=True)

    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    sd = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    metrics = {
        "model": name,
        "params": params,
        "steps": step,
        "seconds": round(seconds, 1),
        "train": {
            "corpus": "testdata/corpus/kjv.txt (first 90% of bytes)" + (
                "" if unit == "bytes" else f", encoded with {spec['tokenizer']} as one string"),
            "seed": spec["seed"],
            "batch": B,
            "context": T,
            "xl_memory": spec["memory"],
            "data_order": ("B parallel contiguous streams of the training bytes, consecutive chunks per step, "
                           "memory carried across steps (detached)") if spec["memory"]
            else f"random windows of context+1 {unit}",
            "optimizer": "Adam(betas=(0.9,0.98), eps=1e-9), grad clip 1.0",
            "lr_peak": spec["lr"],
            "lr_schedule": f"linear warmup {warmup} steps, then cosine to 10% of peak over the wall-clock budget "
                           "(progress = elapsed/budget; or over --steps when given)",
            "threads": torch.get_num_threads(),
            "steps_override": steps_override or None,
            "budget_seconds": budget,
            "final_train_loss_bits": round(float(np.mean(losses[-100:])) / math.log(2), 6),
        },
        "eval_method": EVAL_METHOD["xl" if cfg["pos_encoding"] == "xl" else "rope_dense"] + (
            "" if unit == "bytes" else "; " + EVAL_METHOD["bpb_tokens"]),
        "eval_definitions": EVAL_METHOD,
        "heldout": eval_record(held, un_held, tr_held, n_held_bytes),
        "heldout_eval_txt": eval_record(held_eval, un_eval, tr_eval, n_eval_bytes),
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
        f.write("\n")
    print(f"[{name}] wrote {out}", flush=True)
    return metrics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="rope,xl,switchall,dense,gated,spm")
    ap.add_argument("--budget", type=float, default=240.0, help="training wall seconds per model")
    ap.add_argument("--gated-budget", type=float, default=90.0, help="training wall seconds for 'gated'")
    ap.add_argument("--steps", type=int, default=0, help="fixed number of steps (overrides the budgets)")
    ap.add_argument("--out", default=os.path.join(TESTDATA, "models"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is much faster than 2 on a shared 2-core box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, held = load_data()
    held_eval = write_heldout_eval(held)
    for name in args.models.split(","):
        budget = args.gated_budget if name == "gated" else args.budget
        train_one(name, budget, args.steps, args.out, train, held, held_eval)


if __name__ == "__main__":
    main()
