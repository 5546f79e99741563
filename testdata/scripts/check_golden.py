"""Second, literal reading of SPEC.md in float64 (functional, gather-based: only the selected experts
are evaluated, per token) checked against the committed golden files of testdata/models.

Asserts logits rel err < 1e-5 and identical selected expert SETS (order ignored) and gates.
Usage: check_golden.py [--root testdata/models]
"""
import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = {"rotate_fraction": 0.5, "rope_base": 10000.0, "layer_norm_eps": 1e-5, "attention": "switchhead"}


def ln(x, p, name, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * p[name + ".weight"] + p[name + ".bias"]


def rope(x, pos, n_rot, base):  # x [B,T,H,dh]
    half = n_rot // 2
    out = x.clone()
    for i in range(half):
        th = pos.double() * base ** (-2.0 * i / n_rot)  # [T]
        c, s = torch.cos(th)[None, :, None], torch.sin(th)[None, :, None]
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * c - b * s
        out[..., i + half] = b * c + a * s
    return out


def pe(p, d):
    v = torch.zeros(d, dtype=torch.float64)
    for i in range(0, d, 2):
        ang = p * 10000.0 ** (-i / d)
        v[i] = math.sin(ang)
        v[i + 1] = math.cos(ang)
    return v


def route(x, S, H, E, k):  # -> ids [.., H, k] (flat), gates
    g = torch.sigmoid(x @ S.t()).view(*x.shape[:-1], H, E)
    w, i = torch.topk(g, k, -1)
    return i + torch.arange(H).view(H, 1) * E, w


def attention(c, p, pre, xq, xkv):
    B, T, D = xq.shape
    Tk = xkv.shape[1]
    off = Tk - T
    H, dh = c["n_heads"], c["d_head"]
    s = dh ** -0.25
    q = (xq @ p[pre + "projections.q"].t() * s).view(B, T, H, dh)
    kk = (xkv @ p[pre + "projections.k"].t() * s).view(B, Tk, H, dh)
    if c["pos_encoding"] == "rope":
        n_rot = int(c["rotate_fraction"] * dh)
        q = rope(q, torch.arange(off, off + T), n_rot, c["rope_base"])
        kk = rope(kk, torch.arange(Tk), n_rot, c["rope_base"])
    L = torch.einsum("bthd,bshd->bhts", q, kk)
    if c["pos_encoding"] == "xl":
        W = p[pre + "pos_to_pk"]
        for r in range(T):
            for col in range(Tk):
                kp = (s * pe(col - r - off, D)) @ W.t()
                L[:, :, r, col] += torch.einsum("bhd,hd->bh", q[:, r], kp.view(H, dh))
    for r in range(T):
        L[:, :, r, off + r + 1:] = float("-inf")
    A = torch.softmax(L, -1)
    sel = {}
    gated = c["attention"] == "switchhead" and c["n_experts"] == 1
    if c["attention"] == "dense" or gated:
        v = (xkv @ p[pre + "projections.v"].t()).view(B, Tk, H, dh)
        R = torch.einsum("bhts,bshd->bthd", A, v)
        if gated:
            R = R * torch.sigmoid(xq @ p[pre + "selections.o"].t())[..., None]
        return R.reshape(B, T, H * dh) @ p[pre + "projections.o"].t(), sel
    E, k = c["n_experts"], c["moe_k"]
    iv, wv = route(xkv, p[pre + "selections.v"], H, E, k)
    Wv = p[pre + "projections.v"][iv]  # [B,Tk,H,k,D,dh]
    v = torch.einsum("bsd,bshjde,bshj->bshe", xkv, Wv, wv)
    R = torch.einsum("bhts,bshd->bthd", A, v)
    io, wo = route(xq, p[pre + "selections.o"], H, E, k)
    Wo = p[pre + "projections.o"][io]  # [B,T,H,k,dh,D]
    y = torch.einsum("bthe,bthjeo,bthj->bto", R, Wo, wo)
    return y, {"v": (iv, wv), "o": (io, wo)}


def forward(c, p, tokens, mems=None):
    x = p["embedding.weight"][tokens]
    eps = c["layer_norm_eps"]
    new_mems, sels = [], []
    for i in range(c["n_layers"]):
        pre = f"unique_layers.{i}."
        new_mems.append(x)
        full = torch.cat([mems[i], x], 1) if mems is not None else x
        a_all = ln(full, p, pre + "norm1", eps)
        a = a_all[:, full.shape[1] - x.shape[1]:]
        y, sel = attention(c, p, pre + "self_attn.", a, a_all)
        x = x + y
        f = ln(x, p, pre + "norm2", eps)
        if c["ffn"] == "dense":
            h = torch.relu(f @ p[pre + "linear1.weight"].t() + p[pre + "linear1.bias"])
            x = x + h @ p[pre + "linear2.weight"].t() + p[pre + "linear2.bias"]
        else:
            g = torch.sigmoid(f @ p[pre + "pkm.expert_sel"].t())
            w, idx = torch.topk(g, c["ffn_k"], -1)
            h = torch.relu(torch.einsum("btd,btjdg->btjg", f, p[pre + "pkm.keys"][idx]))
            x = x + torch.einsum("btjg,btjgd,btj->btd", h, p[pre + "pkm.values"][idx], w)
            sel["ffn"] = (idx, w)
        sels.append(sel)
    logits = ln(x, p, "out_norm", eps) @ p["output.weight"].t() + p["output.bias"]
    return logits, new_mems, sels


def compare(tag, logits, sels, g, chunk):
    lk = "logits" if chunk is None else f"logits{chunk}"
    ref = g[lk].double()
    err = ((logits - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-5, f"{tag}: logits rel err {err}"
    n = 0
    cc = 0 if chunk is None else chunk
    for i, sel in enumerate(sels):
        for kind, (idx, w) in sel.items():
            gi, gw = g[f"sel.{cc}.{i}.{kind}.idx"], g[f"sel.{cc}.{i}.{kind}.gate"].double()
            assert gi.shape == idx.shape, (tag, kind, gi.shape, idx.shape)
            assert torch.equal(torch.sort(gi, -1).values, torch.sort(idx, -1).values), f"{tag}: {kind} sets differ"
            assert (gw - w).abs().max().item() < 1e-5, f"{tag}: {kind} gates differ"
            n += 1
    extra = [k for k in g if k.startswith(f"sel.{cc}.")]
    assert len(extra) == 2 * n, f"{tag}: unexpected selection keys {sorted(extra)}"
    return err, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(os.path.dirname(HERE), "models"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    worst = 0.0
    for name in sorted(os.listdir(args.root)):
        d = os.path.join(args.root, name)
        if not os.path.isfile(os.path.join(d, "golden_long.safetensors")):
            continue
        c = dict(DEFAULTS)
        c.update(json.load(open(os.path.join(d, "config.json"))))
        p = {k: v.double() for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
        for f in ("golden_long", "golden_short", "golden_mem"):
            path = os.path.join(d, f + ".safetensors")
            if not os.path.exists(path):
                continue
            g = load_file(path)
            with torch.no_grad():
                if "tokens" in g:
                    lg, _, sels = forward(c, p, g["tokens"])
                    e, n = compare(f"{name}/{f}", lg, sels, g, None)
                    errs = [e]
                else:
                    l0, mems, s0 = forward(c, p, g["tokens0"])
                    l1, _, s1 = forward(c, p, g["tokens1"], mems)
                    e0, n = compare(f"{name}/{f}", l0, s0, g, 0)
                    e1, _ = compare(f"{name}/{f}", l1, s1, g, 1)
                    errs = [e0, e1]
            worst = max([worst] + errs)
            print(f"{name}/{f}: float64 literal vs golden logits rel err {max(errs):.2e}, {n} routers/chunk match")
    print(f"worst {worst:.2e}")


if __name__ == "__main__":
    main()
