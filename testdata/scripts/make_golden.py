"""Writes golden files for the trained test models (see testdata/README.md for the schema).

Usage: make_golden.py [--models rope,xl,switchall,dense,gated,spm] [--root testdata/models]

For each model: golden_long.safetensors (T=37), golden_short.safetensors (T=5), and for XL models
golden_mem.safetensors (two consecutive chunks of T=19, the second attending to the first through
the XL memory). Also writes rope-pth/ (torch.save({"model": state_dict}) + config.json) and
xl-standalone/model.safetensors (standalone-module attention key names, config in the metadata).
Every written file is reloaded and checked against the reference. Tokens are held-out bytes, or for a
model with a tokenizer (`spm`) held-out token ids (the held-out split encoded as one string).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402
import train as tr  # noqa: E402

T_LONG, T_SHORT, T_MEM = 37, 5, 19
BATCH = 2
MIN_MARGIN = 5e-6  # smallest accepted gap (in sigmoid-gate units) between the k-th and (k+1)-th gate of any router


def load_model(d):
    cfg = ref.load_config(os.path.join(d, "config.json"))
    model = ref.load_state(ref.LM(cfg), load_file(os.path.join(d, "model.safetensors"))).eval()
    return cfg, model


def held_tokens(name, root, held):
    """The held-out split as the model reads it: bytes, or the ids of the model's tokenizer."""
    tok = tr.MODELS.get(name, {}).get("tokenizer")
    return held if tok is None else tr.tokenize(os.path.join(root, name, tok), held)[0]


def draw_tokens(held, seed, length):
    """BATCH contiguous slices of `length` held-out tokens at seeded random offsets."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, held.shape[0] - length, size=BATCH)
    return torch.from_numpy(np.stack([held[s:s + length] for s in starts]).astype(np.int64))


def sel_tensors(sels, chunk):
    out, margin = {}, float("inf")
    for i, s in enumerate(sels):
        for key, v in s.items():
            if key.startswith("_margin."):
                margin = min(margin, v)
                continue
            t = v.to(torch.int64) if key.endswith(".idx") else v.to(torch.float32)
            out[f"sel.{chunk}.{i}.{key}"] = t.contiguous()
    return out, margin


@torch.no_grad()
def golden_single(model, held, seed, T):
    for attempt in range(100):
        tokens = draw_tokens(held, seed + 1000 * attempt, T)
        logits, _, sels = model(tokens, return_sel=True)
        sel, margin = sel_tensors(sels, 0)
        if margin >= MIN_MARGIN:
            break
    else:
        raise RuntimeError(f"no token draw with top-k margin >= {MIN_MARGIN}")
    out = {"tokens": tokens, "logits": logits.contiguous()}
    out.update(sel)
    return out, margin, seed + 1000 * attempt


@torch.no_grad()
def golden_mem(model, held, seed, T):
    for attempt in range(100):
        s = seed + 1000 * attempt
        both = draw_tokens(held, s, 2 * T)
        t0, t1 = both[:, :T].contiguous(), both[:, T:].contiguous()
        l0, mems, s0 = model(t0, return_sel=True)
        l1, _, s1 = model(t1, mems=mems, return_sel=True)
        sel0, m0 = sel_tensors(s0, 0)
        sel1, m1 = sel_tensors(s1, 1)
        if min(m0, m1) >= MIN_MARGIN:
            break
    else:
        raise RuntimeError(f"no token draw with top-k margin >= {MIN_MARGIN}")
    out = {"tokens0": t0, "logits0": l0.contiguous(), "tokens1": t1, "logits1": l1.contiguous()}
    out.update(sel0)
    out.update(sel1)
    return out, min(m0, m1), s


@torch.no_grad()
def verify_golden(model, path):
    g = load_file(path)
    if "tokens" in g:
        logits, _, sels = model(g["tokens"], return_sel=True)
        errs = [ref.rel_err(logits, g["logits"])]
        chunks = [sels]
    else:
        l0, mems, s0 = model(g["tokens0"], return_sel=True)
        l1, _, s1 = model(g["tokens1"], mems=mems, return_sel=True)
        errs = [ref.rel_err(l0, g["logits0"]), ref.rel_err(l1, g["logits1"])]
        chunks = [s0, s1]
    for c, sels in enumerate(chunks):
        got, _ = sel_tensors(sels, c)
        for k, v in got.items():
            assert torch.equal(v, g[k]), f"{path}: {k} differs on reload"
    n_sel = sum(1 for k in g if k.startswith("sel."))
    assert max(errs) < 1e-6, f"{path}: reload rel err {errs}"
    return errs, n_sel


STANDALONE = {
    "projections.q": "q.weight",
    "projections.k": "k.weight",
    "projections.v": "v",
    "projections.o": "o",
    "selections.v": "sel_v",
    "selections.o": "sel_o",
    "pos_to_pk": "pos_to_pk",
}


def to_standalone(sd):
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if len(parts) > 3 and parts[0] == "unique_layers" and parts[2] == "self_attn":
            rest = ".".join(parts[3:])
            out[f"blocks.{parts[1]}.mixer.attn.{STANDALONE[rest]}"] = v
        else:
            out[k] = v
    return out


def from_standalone(sd):
    inv = {v: k for k, v in STANDALONE.items()}
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "blocks" and parts[2:4] == ["mixer", "attn"]:
            out[f"unique_layers.{parts[1]}.self_attn.{inv['.'.join(parts[4:])]}"] = v
        else:
            out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="rope,xl,switchall,dense,gated,spm")
    ap.add_argument("--root", default=os.path.join(tr.TESTDATA, "models"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    _, held = tr.load_data()
    names = args.models.split(",")
    for n, name in enumerate(names):
        d = os.path.join(args.root, name)
        cfg, model = load_model(d)
        tokens = held_tokens(name, args.root, held)
        seed = 7000 + 100 * list(tr.MODELS).index(name) if name in tr.MODELS else 7000 + n
        jobs = [("golden_long", T_LONG), ("golden_short", T_SHORT)]
        for fname, T in jobs:
            g, margin, used = golden_single(model, tokens, seed + T, T)
            path = os.path.join(d, fname + ".safetensors")
            save_file(g, path, metadata={"token_seed": str(used), "T": str(T)})
            errs, n_sel = verify_golden(model, path)
            print(f"{name}/{fname}: T={T} token seed {used} sel keys {n_sel} min top-k margin {margin:.2e} reload err {errs}")
        if cfg["pos_encoding"] == "xl":
            g, margin, used = golden_mem(model, tokens, seed + 500, T_MEM)
            path = os.path.join(d, "golden_mem.safetensors")
            save_file(g, path, metadata={"token_seed": str(used), "T": str(T_MEM)})
            errs, n_sel = verify_golden(model, path)
            print(f"{name}/golden_mem: T={T_MEM} x 2 chunks token seed {used} sel keys {n_sel} min top-k margin {margin:.2e} "
                  f"reload err {errs}")

    if "rope" in names:
        src = os.path.join(args.root, "rope")
        cfg, model = load_model(src)
        d = os.path.join(args.root, "rope-pth")
        os.makedirs(d, exist_ok=True)
        sd = {k: v.clone().contiguous() for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
        torch.save({"model": sd}, os.path.join(d, "model.pth"))
        with open(os.path.join(src, "config.json")) as f:
            cfg_text = f.read()
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(cfg_text)
        ck = torch.load(os.path.join(d, "model.pth"), map_location="cpu", weights_only=True)
        m2 = ref.load_state(ref.LM(ref.load_config(os.path.join(d, "config.json"))), ck["model"]).eval()
        g = load_file(os.path.join(src, "golden_long.safetensors"))
        with torch.no_grad():
            e = ref.rel_err(m2(g["tokens"])[0], g["logits"])
        assert e < 1e-6, e
        print(f"rope-pth/model.pth: reload vs rope golden_long rel err {e:.2e}")

    if "xl" in names:
        src = os.path.join(args.root, "xl")
        d = os.path.join(args.root, "xl-standalone")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(src, "config.json")) as f:
            cfg = json.load(f)
        sd = to_standalone(load_file(os.path.join(src, "model.safetensors")))
        path = os.path.join(d, "model.safetensors")
        save_file(sd, path, metadata={"config": json.dumps(cfg)})
        with safe_open(path, "pt") as f:
            cfg2 = json.loads(f.metadata()["config"])
        m2 = ref.load_state(ref.LM(cfg2), from_standalone(load_file(path))).eval()
        worst = 0.0
        with torch.no_grad():
            for fname in ("golden_long", "golden_short"):
                g = load_file(os.path.join(src, fname + ".safetensors"))
                worst = max(worst, ref.rel_err(m2(g["tokens"])[0], g["logits"]))
            g = load_file(os.path.join(src, "golden_mem.safetensors"))
            l0, mems = m2(g["tokens0"])
            l1, _ = m2(g["tokens1"], mems=mems)
            worst = max(worst, ref.rel_err(l0, g["logits0"]), ref.rel_err(l1, g["logits1"]))
        assert worst < 1e-6, worst
        print(f"xl-standalone/model.safetensors: {len(sd)} tensors, reload vs xl golden rel err {worst:.2e}")


if __name__ == "__main__":
    main()
