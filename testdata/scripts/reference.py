"""Independent PyTorch reference implementation of ../shared/SPEC.md (SwitchHead LMs).

Written from the spec, not from the official code. fp32 throughout; routers in float32.

Config schema (same as the official-golden config.json files):
  vocab_size, d_model, n_layers, n_heads, n_experts, moe_k, d_head, d_ff,
  pos_encoding ("rope"|"xl"), rotate_fraction (0.5), rope_base (10000),
  ffn ("dense"|"sigma_moe"), ffn_n_experts, ffn_expert_size, ffn_k,
  layer_norm_eps (1e-5), chunk_size, attention ("switchhead"|"dense", default "switchhead")

attention == "switchhead" and n_experts == 1 selects the E = 1 gated variant.

state_dict() keys follow the training code (SPEC.md section 4).
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = {
    "rotate_fraction": 0.5,
    "rope_base": 10000.0,
    "layer_norm_eps": 1e-5,
    "attention": "switchhead",
    "ffn": "dense",
}


def full_config(cfg):
    c = dict(DEFAULTS)
    c.update(cfg)
    return c


def load_config(path):
    with open(path) as f:
        return full_config(json.load(f))


# ----------------------------------------------------------------------------- positions

def rope_n_rot(cfg):
    n_rot = int(cfg["rotate_fraction"] * cfg["d_head"])
    if n_rot % 2 != 0:
        raise ValueError(f"RoPE: n_rot = int({cfg['rotate_fraction']} * {cfg['d_head']}) = {n_rot} is odd")
    return n_rot


def rope_apply(x, pos, n_rot, base):
    """x: [B,H,T,dh]; pos: [T] (float64 -> computed then cast). Half-split NeoX on first n_rot channels."""
    if n_rot == 0:
        return x
    half = n_rot // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, half, dtype=torch.float32) * 2.0 / n_rot))
    ang = pos.to(torch.float32)[:, None] * inv_freq[None, :]  # [T, half]
    ang = torch.cat([ang, ang], dim=-1)  # [T, n_rot]
    cos, sin = ang.cos(), ang.sin()
    xr, xp = x[..., :n_rot], x[..., n_rot:]
    x1, x2 = xr[..., :half], xr[..., half:]
    rot = torch.cat([-x2, x1], dim=-1)
    xr = xr * cos + rot * sin
    return torch.cat([xr, xp], dim=-1)


def sinusoid(pos, d):
    """Interleaved sinusoid: pe(p)[2i] = sin(p * 10000^(-2i/d)), pe(p)[2i+1] = cos(...). pos: [P]."""
    if d % 2 != 0:
        raise ValueError("XL sinusoid needs an even d_model")
    i2 = torch.arange(0, d, 2, dtype=torch.float32)
    freq = torch.exp(i2 * (-math.log(10000.0) / d))  # 10000^(-2i/d)
    ang = pos.to(torch.float32)[:, None] * freq[None, :]
    pe = torch.zeros(pos.shape[0], d)
    pe[:, 0::2] = ang.sin()
    pe[:, 1::2] = ang.cos()
    return pe


def xl_position_logits(q, pos_to_pk, scale, T, Tk, d_model, n_heads, d_head):
    """q: [B,H,T,dh] (already scaled). Returns [B,H,T,Tk] with term q_r . Kp(c - r - offset)."""
    offset = Tk - T
    # relative positions needed: c - r - offset for c in [0,Tk), r in [0,T): from -(Tk-1) .. T-1
    rel = torch.arange(-(Tk - 1), T, dtype=torch.float32)  # index j -> rel = j - (Tk-1)
    pe = sinusoid(rel, d_model) * scale  # [P, D]
    kp = pe @ pos_to_pk.t()  # [P, H*dh]
    kp = kp.view(-1, n_heads, d_head).permute(1, 0, 2)  # [H, P, dh]
    qk = torch.einsum("bhtd,hpd->bhtp", q, kp)  # [B,H,T,P]
    r = torch.arange(T)[:, None]
    c = torch.arange(Tk)[None, :]
    idx = (c - r - offset) + (Tk - 1)  # [T,Tk]
    idx = idx.clamp(0, qk.shape[-1] - 1)
    B, H = q.shape[0], q.shape[1]
    return torch.gather(qk, 3, idx[None, None].expand(B, H, T, Tk))


def causal_mask(T, Tk):
    """True where blocked. Query r sits at key position offset + r; memory is always visible."""
    offset = Tk - T
    r = torch.arange(T)[:, None]
    c = torch.arange(Tk)[None, :]
    return c > (r + offset)


# ----------------------------------------------------------------------------- routers

def sigmoid_router(x, sel, n_heads, n_experts, k):
    """x [..., D], sel [H*E, D] -> flat ids [..., H, k] (h*E+e), gates [..., H, k], dense weights [..., H, E]."""
    g = torch.sigmoid((x.float() @ sel.float().t()))
    g = g.view(*x.shape[:-1], n_heads, n_experts)
    w, idx = torch.topk(g, k, dim=-1)
    dense = torch.zeros_like(g).scatter(-1, idx, w)
    flat = idx + (torch.arange(n_heads) * n_experts).view(*([1] * (idx.dim() - 2)), n_heads, 1)
    return flat, w, dense, topk_margin(g, k)


def topk_margin(g, k):
    """Smallest gap between the k-th and (k+1)-th largest gate (inf when k == number of experts)."""
    if k >= g.shape[-1]:
        return float("inf")
    s = torch.topk(g, k + 1, dim=-1).values
    return (s[..., k - 1] - s[..., k]).min().item()


# ----------------------------------------------------------------------------- attention

class AttentionBase(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.D = cfg["d_model"]
        self.H = cfg["n_heads"]
        self.dh = cfg["d_head"]
        self.scale = self.dh ** -0.25
        self.pos = cfg["pos_encoding"]
        if self.pos not in ("rope", "xl"):
            raise ValueError(f"unknown pos_encoding {self.pos}")
        if self.pos == "rope":
            self.n_rot = rope_n_rot(cfg)
        self.projections = nn.ParameterDict()
        self.projections["q"] = nn.Parameter(torch.randn(self.H * self.dh, self.D) * self.D ** -0.5)
        self.projections["k"] = nn.Parameter(torch.randn(self.H * self.dh, self.D) * self.D ** -0.5)
        if self.pos == "xl":
            self.pos_to_pk = nn.Parameter(torch.randn(self.H * self.dh, self.D) * self.D ** -0.5)

    def qk_logits(self, xq, xkv):
        """Returns logits [B,H,T,Tk] (masked) for query xq [B,T,D], keys xkv [B,Tk,D]."""
        B, T, _ = xq.shape
        Tk = xkv.shape[1]
        offset = Tk - T
        q = (xq @ self.projections["q"].t()) * self.scale
        kk = (xkv @ self.projections["k"].t()) * self.scale
        q = q.view(B, T, self.H, self.dh).transpose(1, 2)
        kk = kk.view(B, Tk, self.H, self.dh).transpose(1, 2)
        if self.pos == "rope":
            base = float(self.cfg["rope_base"])
            q = rope_apply(q, torch.arange(offset, offset + T), self.n_rot, base)
            kk = rope_apply(kk, torch.arange(0, Tk), self.n_rot, base)
        L = q @ kk.transpose(-1, -2)
        if self.pos == "xl":
            L = L + xl_position_logits(q, self.pos_to_pk, self.scale, T, Tk, self.D, self.H, self.dh)
        L = L.masked_fill(causal_mask(T, Tk)[None, None], float("-inf"))
        return L


class SwitchHeadAttention(AttentionBase):
    """V and O experts, per-head sigmoid top-k routers."""

    def __init__(self, cfg):
        super().__init__(cfg)
        H, E, D, dh = self.H, cfg["n_experts"], self.D, self.dh
        self.E = E
        self.k = cfg["moe_k"]
        if not (1 <= self.k <= E):
            raise ValueError("moe_k must be in 1..n_experts")
        self.projections["v"] = nn.Parameter(torch.randn(H * E, D, dh) * D ** -0.5)
        self.projections["o"] = nn.Parameter(torch.randn(H * E, dh, D) * (H * self.k * dh) ** -0.5)
        self.selections = nn.ParameterDict()
        self.selections["v"] = nn.Parameter(torch.randn(H * E, D) * D ** -0.5)
        self.selections["o"] = nn.Parameter(torch.randn(H * E, D) * D ** -0.5)

    def forward(self, xq, xkv):
        B, T, D = xq.shape
        Tk = xkv.shape[1]
        H, E, dh = self.H, self.E, self.dh
        iv, wv, dv, mv = sigmoid_router(xkv, self.selections["v"], H, E, self.k)
        # all experts' values, then the gate-weighted sum over the chosen ones
        wv_all = self.projections["v"].permute(1, 0, 2).reshape(D, H * E * dh)
        vall = (xkv @ wv_all).view(B, Tk, H, E, dh)
        v = (vall * dv.unsqueeze(-1)).sum(3)  # [B,Tk,H,dh]
        v = v.transpose(1, 2)  # [B,H,Tk,dh]
        L = self.qk_logits(xq, xkv)
        R = torch.softmax(L, dim=-1) @ v  # [B,H,T,dh]
        io, wo, do, mo = sigmoid_router(xq, self.selections["o"], H, E, self.k)
        Rt = R.transpose(1, 2)  # [B,T,H,dh]
        Rw = Rt.unsqueeze(3) * do.unsqueeze(-1)  # [B,T,H,E,dh]
        y = Rw.reshape(B, T, H * E * dh) @ self.projections["o"].reshape(H * E * dh, D)
        return y, {"v.idx": iv, "v.gate": wv, "o.idx": io, "o.gate": wo, "_margin.v": mv, "_margin.o": mo}


class GatedAttention(AttentionBase):
    """E = 1: dense attention with a per-head sigmoid output gate."""

    def __init__(self, cfg):
        super().__init__(cfg)
        H, D, dh = self.H, self.D, self.dh
        self.projections["v"] = nn.Parameter(torch.randn(H * dh, D) * D ** -0.5)
        self.projections["o"] = nn.Parameter(torch.randn(D, H * dh) * (H * dh) ** -0.5)
        self.selections = nn.ParameterDict()
        self.selections["o"] = nn.Parameter(torch.randn(H, D) * D ** -0.5)

    def forward(self, xq, xkv):
        B, T, D = xq.shape
        Tk = xkv.shape[1]
        H, dh = self.H, self.dh
        v = (xkv @ self.projections["v"].t()).view(B, Tk, H, dh).transpose(1, 2)
        L = self.qk_logits(xq, xkv)
        R = torch.softmax(L, dim=-1) @ v  # [B,H,T,dh]
        gate = torch.sigmoid(xq.float() @ self.selections["o"].float().t())  # [B,T,H]
        R = R.transpose(1, 2) * gate.unsqueeze(-1)  # [B,T,H,dh]
        y = R.reshape(B, T, H * dh) @ self.projections["o"].t()
        return y, {}


class DenseAttention(AttentionBase):
    """Plain multi-head attention baseline (no biases, same q/k scaling)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        H, D, dh = self.H, self.D, self.dh
        self.projections["v"] = nn.Parameter(torch.randn(H * dh, D) * D ** -0.5)
        self.projections["o"] = nn.Parameter(torch.randn(D, H * dh) * (H * dh) ** -0.5)

    def forward(self, xq, xkv):
        B, T, D = xq.shape
        Tk = xkv.shape[1]
        H, dh = self.H, self.dh
        v = (xkv @ self.projections["v"].t()).view(B, Tk, H, dh).transpose(1, 2)
        L = self.qk_logits(xq, xkv)
        R = torch.softmax(L, dim=-1) @ v
        y = R.transpose(1, 2).reshape(B, T, H * dh) @ self.projections["o"].t()
        return y, {}


# ----------------------------------------------------------------------------- FFN

class SigmaMoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["d_model"]
        self.NE = cfg["ffn_n_experts"]
        self.G = cfg["ffn_expert_size"]
        self.K = cfg["ffn_k"]
        if not (1 <= self.K <= self.NE):
            raise ValueError("ffn_k must be in 1..ffn_n_experts")
        self.expert_sel = nn.Parameter(torch.randn(self.NE, D) * D ** -0.5)
        self.keys = nn.Parameter(torch.randn(self.NE, D, self.G) * D ** -0.5)
        self.values = nn.Parameter(torch.randn(self.NE, self.G, D) * (self.K * self.G) ** -0.5)

    def forward(self, f):
        B, T, D = f.shape
        g = torch.sigmoid(f.float() @ self.expert_sel.float().t())  # [B,T,NE]
        w, idx = torch.topk(g, self.K, dim=-1)
        dense = torch.zeros_like(g).scatter(-1, idx, w)
        h = torch.relu(f @ self.keys.permute(1, 0, 2).reshape(D, self.NE * self.G)).view(B, T, self.NE, self.G)
        h = h * dense.unsqueeze(-1)
        y = h.reshape(B, T, self.NE * self.G) @ self.values.reshape(self.NE * self.G, D)
        return y, {"ffn.idx": idx, "ffn.gate": w, "_margin.ffn": topk_margin(g, self.K)}


# ----------------------------------------------------------------------------- LM

class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg["d_model"]
        eps = cfg["layer_norm_eps"]
        att = cfg["attention"]
        if att == "switchhead":
            self.self_attn = GatedAttention(cfg) if cfg["n_experts"] == 1 else SwitchHeadAttention(cfg)
        elif att == "dense":
            self.self_attn = DenseAttention(cfg)
        else:
            raise ValueError(f"unknown attention {att}")
        self.norm1 = nn.LayerNorm(D, eps=eps)
        self.norm2 = nn.LayerNorm(D, eps=eps)
        self.ffn_kind = cfg["ffn"]
        if self.ffn_kind == "dense":
            self.linear1 = nn.Linear(D, cfg["d_ff"])
            self.linear2 = nn.Linear(cfg["d_ff"], D)
        elif self.ffn_kind == "sigma_moe":
            self.pkm = SigmaMoE(cfg)
        else:
            raise ValueError(f"unknown ffn {self.ffn_kind}")

    def forward(self, x, mem=None):
        T = x.shape[1]
        if mem is not None and mem.shape[1] > 0:
            a_all = self.norm1(torch.cat([mem, x], dim=1))
            a = a_all[:, -T:]
        else:
            a_all = a = self.norm1(x)
        y, sel = self.self_attn(a, a_all)
        x = x + y
        f = self.norm2(x)
        if self.ffn_kind == "dense":
            x = x + self.linear2(torch.relu(self.linear1(f)))
        else:
            y2, s2 = self.pkm(f)
            sel.update(s2)
            x = x + y2
        return x, sel


class LM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg = full_config(cfg)
        self.cfg = cfg
        V, D = cfg["vocab_size"], cfg["d_model"]
        self.embedding = nn.Embedding(V, D)
        self.unique_layers = nn.ModuleList([Layer(cfg) for _ in range(cfg["n_layers"])])
        self.out_norm = nn.LayerNorm(D, eps=cfg["layer_norm_eps"])
        self.output = nn.Linear(D, V)

    def forward(self, tokens, mems=None, return_sel=False):
        """tokens [B,T]; mems: None or list (per layer) of [B,M,D] previous layer inputs.
        Returns logits [B,T,V], new_mems (list of this chunk's layer inputs), [sel per layer].
        sel per layer: "v.idx"/"v.gate" [B,Tk,H,k] (flat ids h*E+e, descending gate), "o.idx"/"o.gate"
        [B,T,H,k], "ffn.idx"/"ffn.gate" [B,T,K_ff]; "_margin.*": smallest top-k gap (float)."""
        x = self.embedding(tokens)
        new_mems, sels = [], []
        for i, layer in enumerate(self.unique_layers):
            new_mems.append(x)
            m = mems[i] if (mems is not None and self.cfg["pos_encoding"] == "xl") else None
            if mems is not None and self.cfg["pos_encoding"] != "xl" and mems[i] is not None and mems[i].shape[1] > 0:
                raise ValueError("memory is only supported for XL models")
            x, sel = layer(x, m)
            sels.append(sel)
        logits = self.output(self.out_norm(x))
        if return_sel:
            return logits, new_mems, sels
        return logits, new_mems


def load_state(model, sd):
    """Loads a training-code state dict, ignoring σ-MoE statistics buffers; strict otherwise."""
    sd = {k: v for k, v in sd.items() if ".kv_sel_counts" not in k}
    model.load_state_dict(sd, strict=True)
    return model


def rel_err(a, b):
    a = torch.as_tensor(a).double()
    b = torch.as_tensor(b).double()
    return ((a - b).abs().max() / b.abs().max()).item()
