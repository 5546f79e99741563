"""A compact PyTorch eager SwitchHead LM for timing (inference only, fp32, SPEC.md semantics).

Loads a checkpoint directory like `switchhead synth` writes (config.json + model.safetensors,
training-code key names, SPEC.md section 4). Two formulations of the routed experts (attention
V/O experts and the σ-MoE FFN), both exact:
  - "dense":  every expert of every token in one big matmul, weighted by the top-k gates
              scattered into a dense [.., E] tensor (zeros elsewhere); E/k times the expert FLOPs.
  - "sorted": one matmul per expert over exactly the (token, slot) pairs routed to it (sort by
              expert id, slice, matmul, scale by the gate, index_add back); the needed FLOPs.
Attention uses F.scaled_dot_product_attention (an additive float mask carries the XL position
term and the causal -inf). XL models run with empty memory (as `switchhead bench` does). RoPE
models support a KV cache (`forward(tokens, cache)`), keys cached after RoPE, values after the
expert mixture, queries at positions P..P+T-1.

Every weight product goes through a per-layer table of callables (`lay["mm"]`). In fp32 they
are the plain matmuls; with `quant="int8"` each is an `nn.Linear` (the fused q|k projection,
the routers, the V/O experts: one Linear over all experts in the dense form, one per expert in
the sorted form, the FFN, the XL position projection and the output head), all passed through
PyTorch's dynamic int8 quantization (`torch.ao.quantization.quantize_dynamic`, weights per
output channel, activations quantized per tensor at run time). Embeddings, LayerNorm, the
attention core (scores, softmax, P @ V), RoPE and the top-k stay fp32.
"""
import collections
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

FORMS = ("dense", "sorted")
QUANTS = (None, "int8")


def load(ckpt_dir, form="dense", quant=None):
    with open(os.path.join(ckpt_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("rotate_fraction", 0.5)
    cfg.setdefault("rope_base", 10000.0)
    cfg.setdefault("layer_norm_eps", 1e-5)
    cfg.setdefault("attention", "switchhead")
    cfg.setdefault("ffn", "dense")
    sd = load_file(os.path.join(ckpt_dir, "model.safetensors"))
    sd = {k: v.float() for k, v in sd.items() if ".kv_sel_counts" not in k}
    return LM(cfg, sd, form, quant)


def router(x, sel, groups, experts, k):
    """Sigmoid top-k per group: gates and flat ids (group*E + e), both [N, groups, k].
    `sel` is the router's product (x -> [N, groups*experts] logits)."""
    g = torch.sigmoid(sel(x)).view(x.shape[0], groups, experts)
    w, idx = torch.topk(g, k, dim=-1)
    return w, idx + (torch.arange(groups) * experts).view(1, groups, 1)


def dense_gate(w, ids, groups, experts):
    """[N, groups, k] gates + flat ids -> dense [N, groups*experts] (zeros unselected)."""
    out = torch.zeros(w.shape[0], groups * experts)
    return out.scatter_(1, ids.reshape(w.shape[0], -1), w.reshape(w.shape[0], -1))


def sorted_experts(w, ids, n_experts, fn, out):
    """out[n] += w * fn(e, n, slot) over all routed (token n, slot) pairs, one call per expert e.
    fn(e, rows, group) returns [len(rows), out_cols]."""
    flat_ids = ids.reshape(-1)
    order = torch.argsort(flat_ids, stable=True)
    counts = torch.bincount(flat_ids, minlength=n_experts).tolist()
    per_token = ids.shape[1] * ids.shape[2]
    rows_all = order // per_token
    gates_all = w.reshape(-1)[order]
    start = 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        rows = rows_all[start : start + c]
        y = fn(e, rows) * gates_all[start : start + c, None]
        out.index_add_(0, rows, y)
        start += c
    return out


def product(w, bias=None):
    """x -> x @ w (+ bias): an fp32 product by `w` stored [in, out]."""
    if bias is None:
        return lambda x: x @ w
    return lambda x: torch.addmm(bias, x, w)


def linear(w_in_out, bias=None):
    """An `nn.Linear` computing x @ w_in_out (+ bias), its weight the [out, in] transpose."""
    inp, out = w_in_out.shape
    m = torch.nn.utils.skip_init(torch.nn.Linear, inp, out, bias=bias is not None)
    m.weight = torch.nn.Parameter(w_in_out.t().contiguous(), requires_grad=False)
    if bias is not None:
        m.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
    return m


def products(weights, quant):
    """{key: fp32 product} for `weights` ({key: [in, out] tensor, or (tensor, bias), or a list
    of them}); with quant="int8" the same as dynamically quantized `nn.Linear` modules."""
    if quant is None:
        one = lambda w: product(*w) if isinstance(w, tuple) else product(w)  # noqa: E731
        return {k: [one(x) for x in w] if isinstance(w, list) else one(w) for k, w in weights.items()}
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    one = lambda w: linear(*w) if isinstance(w, tuple) else linear(w)  # noqa: E731
    mods = torch.nn.ModuleDict({k: torch.nn.ModuleList([one(x) for x in w]) if isinstance(w, list) else one(w)
                                for k, w in weights.items()})
    quantize_dynamic(mods, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return {k: list(mods[k]) if isinstance(w, list) else mods[k] for k, w in weights.items()}


class LM:
    def __init__(self, cfg, sd, form, quant=None):
        if form not in FORMS:
            raise ValueError(f"form {form!r} not in {FORMS}")
        if quant not in QUANTS:
            raise ValueError(f"quant {quant!r} not in {QUANTS}")
        self.cfg, self.sd, self.form, self.quant = cfg, sd, form, quant
        self.D, self.H, self.dh = cfg["d_model"], cfg["n_heads"], cfg["d_head"]
        self.E, self.k = cfg["n_experts"], cfg["moe_k"]
        self.xl = cfg["pos_encoding"] == "xl"
        if cfg["attention"] != "switchhead" or self.E < 2:
            raise ValueError("torch_model covers SwitchHead attention with E >= 2 only")
        self.scale = self.dh ** -0.25
        self.n_rot = int(cfg["rotate_fraction"] * self.dh)
        self.eps = cfg["layer_norm_eps"]
        self.L = cfg["n_layers"]
        self._prep()
        self.head = products({"out": (self.sd["output.weight"].t(), self.sd["output.bias"])}, quant)["out"]

    def _prep(self):
        """Stacked/transposed weight views, made once."""
        D, H, E, dh = self.D, self.H, self.E, self.dh
        self.layers = []
        for i in range(self.L):
            p = f"unique_layers.{i}."
            g = lambda n: self.sd[p + n]  # noqa: E731
            lay = {
                "qk_t": torch.cat([g("self_attn.projections.q"), g("self_attn.projections.k")]).t().contiguous(),
                "v": g("self_attn.projections.v"),
                "o": g("self_attn.projections.o"),
                "v_all": g("self_attn.projections.v").permute(1, 0, 2).reshape(D, H * E * dh).contiguous(),
                "o_all": g("self_attn.projections.o").reshape(H * E * dh, D),
                "sel_v": g("self_attn.selections.v"),
                "sel_o": g("self_attn.selections.o"),
                "n1": (g("norm1.weight"), g("norm1.bias")),
                "n2": (g("norm2.weight"), g("norm2.bias")),
            }
            if self.xl:
                lay["pos_to_pk"] = g("self_attn.pos_to_pk")
            if self.cfg["ffn"] == "dense":
                lay["l1"] = (g("linear1.weight"), g("linear1.bias"))
                lay["l2"] = (g("linear2.weight"), g("linear2.bias"))
            else:
                ne, gs = self.cfg["ffn_n_experts"], self.cfg["ffn_expert_size"]
                lay["sel_f"] = g("pkm.expert_sel")
                lay["keys"], lay["values"] = g("pkm.keys"), g("pkm.values")
                lay["keys_all"] = g("pkm.keys").permute(1, 0, 2).reshape(D, ne * gs).contiguous()
                lay["values_all"] = g("pkm.values").reshape(ne * gs, D)
            lay["mm"] = products(self._weights(lay), self.quant)
            self.layers.append(lay)

    def _weights(self, lay):
        """The layer's weight products as [in, out] tensors ((tensor, bias) with a bias; a list
        per expert in the sorted form): what `lay["mm"]` computes."""
        t = lambda n: lay[n].t()  # noqa: E731 - routers and pos_to_pk are stored [out, in]
        w = {"qk": lay["qk_t"], "sel_v": t("sel_v"), "sel_o": t("sel_o")}
        if self.form == "dense":
            w |= {"v": lay["v_all"], "o": lay["o_all"]}
        else:
            w |= {"v": list(lay["v"]), "o": list(lay["o"])}
        if self.xl:
            w["pos_to_pk"] = t("pos_to_pk")
        if self.cfg["ffn"] == "dense":
            (w1, b1), (w2, b2) = lay["l1"], lay["l2"]
            w |= {"l1": (w1.t(), b1), "l2": (w2.t(), b2)}
        else:
            w["sel_f"] = t("sel_f")
            if self.form == "dense":
                w |= {"keys": lay["keys_all"], "values": lay["values_all"]}
            else:
                w |= {"keys": list(lay["keys"]), "values": list(lay["values"])}
        return w

    def product_kinds(self):
        """How many weight products of each kind the model runs: "fp32 matmul", or the class
        of the module (with quant="int8", `torch.ao.nn.quantized.dynamic.Linear`)."""
        c = collections.Counter()
        for mm in [lay["mm"] for lay in self.layers] + [{"out": self.head}]:
            for p in mm.values():
                for f in p if isinstance(p, list) else [p]:
                    t = type(f)
                    c["fp32 matmul" if t.__name__ == "function" else f"{t.__module__.split('.modules')[0]}.{t.__name__}"] += 1
        return c

    # ------------------------------------------------------------------ pieces
    def values(self, lay, x):
        """x [N, D] -> V [N, H, dh]."""
        H, E, dh, k = self.H, self.E, self.dh, self.k
        mm = lay["mm"]
        w, ids = router(x, mm["sel_v"], H, E, k)
        if self.form == "dense":
            gate = dense_gate(w, ids, H, E).view(-1, H, E, 1)
            return (mm["v"](x).view(-1, H, E, dh) * gate).sum(2)
        out = torch.zeros(x.shape[0], H * dh)
        fn = lambda e, rows: mm["v"][e](x[rows])  # noqa: E731
        # Each expert writes into its head's dh columns: run per head on a [N, dh] slice.
        for h in range(H):
            hw, hids = w[:, h : h + 1], ids[:, h : h + 1] - h * E
            fh = lambda e, rows, h=h: fn(h * E + e, rows)  # noqa: E731
            sorted_experts(hw, hids, E, fh, out[:, h * dh : (h + 1) * dh])
        return out.view(-1, H, dh)

    def outputs(self, lay, x, r):
        """x [N, D] (router input), R [N, H, dh] -> y [N, D]."""
        H, E, dh, k = self.H, self.E, self.dh, self.k
        mm = lay["mm"]
        w, ids = router(x, mm["sel_o"], H, E, k)
        if self.form == "dense":
            gate = dense_gate(w, ids, H, E).view(-1, H, E, 1)
            return mm["o"]((r.unsqueeze(2) * gate).reshape(-1, H * E * dh))
        out = torch.zeros(x.shape[0], self.D)
        fn = lambda e, rows: mm["o"][e](r[rows, e // E].contiguous())  # noqa: E731
        return sorted_experts(w, ids, H * E, fn, out)

    def ffn(self, lay, f):
        mm = lay["mm"]
        if self.cfg["ffn"] == "dense":
            return mm["l2"](torch.relu(mm["l1"](f)))
        ne, gs, kf = self.cfg["ffn_n_experts"], self.cfg["ffn_expert_size"], self.cfg["ffn_k"]
        w, ids = router(f, mm["sel_f"], 1, ne, kf)
        if self.form == "dense":
            gate = dense_gate(w, ids, 1, ne).view(-1, ne, 1)
            h = torch.relu(mm["keys"](f)).view(-1, ne, gs) * gate
            return mm["values"](h.view(-1, ne * gs))
        out = torch.zeros_like(f)
        fn = lambda e, rows: mm["values"][e](torch.relu(mm["keys"][e](f[rows])))  # noqa: E731
        return sorted_experts(w, ids, ne, fn, out)

    def rope(self, x, pos):
        """x [B, H, T, dh], pos [T]: half-split RoPE on the first n_rot channels."""
        n, half = self.n_rot, self.n_rot // 2
        inv = 1.0 / (self.cfg["rope_base"] ** (torch.arange(0, half, dtype=torch.float32) * 2.0 / n))
        ang = pos.float()[:, None] * inv[None]
        ang = torch.cat([ang, ang], -1)
        xr, xp = x[..., :n], x[..., n:]
        rot = torch.cat([-xr[..., half:], xr[..., :half]], -1)
        return torch.cat([xr * ang.cos() + rot * ang.sin(), xp], -1)

    def xl_bias(self, lay, q, T):
        """Position term [B, H, T, T] plus the causal -inf (no memory: offset 0)."""
        D, H, dh = self.D, self.H, self.dh
        rel = torch.arange(-(T - 1), 1, dtype=torch.float32)  # key minus query position
        i2 = torch.arange(0, D, 2, dtype=torch.float32)
        ang = rel[:, None] * torch.exp(i2 * (-math.log(10000.0) / D))[None]
        pe = torch.stack([ang.sin(), ang.cos()], -1).view(T, D) * self.scale
        kp = lay["mm"]["pos_to_pk"](pe).view(T, H, dh).permute(1, 2, 0)  # [H, dh, P]
        qk = q @ kp  # [B, H, T, P]; column j is relative position j - (T-1)
        r, c = torch.arange(T)[:, None], torch.arange(T)[None]
        idx = (c - r + T - 1).clamp(0, T - 1)
        bias = torch.gather(qk, 3, idx.expand(q.shape[0], H, T, T))
        return bias.masked_fill(c > r, float("-inf"))

    def attention(self, lay, a, B, T, cache_i):
        H, dh = self.H, self.dh
        x = a.view(B * T, self.D)
        qk = lay["mm"]["qk"](x) * self.scale
        q = qk[:, : H * dh].view(B, T, H, dh).transpose(1, 2)
        kk = qk[:, H * dh :].view(B, T, H, dh).transpose(1, 2)
        v = self.values(lay, x).view(B, T, H, dh).transpose(1, 2)
        past = 0 if cache_i is None else cache_i[0].shape[2]
        if self.xl:
            bias = self.xl_bias(lay, q, T)
            r = F.scaled_dot_product_attention(q, kk, v, attn_mask=bias, scale=1.0)
            new = None
        else:
            pos = torch.arange(past, past + T)
            q, kk = self.rope(q, pos), self.rope(kk, pos)
            if cache_i is not None:
                kk = torch.cat([cache_i[0], kk], 2)
                v = torch.cat([cache_i[1], v], 2)
            new = (kk, v)
            if T == 1:
                r = F.scaled_dot_product_attention(q, kk, v, scale=1.0)
            elif past == 0:
                r = F.scaled_dot_product_attention(q, kk, v, is_causal=True, scale=1.0)
            else:
                c, rr = torch.arange(past + T)[None], torch.arange(T)[:, None]
                mask = (c <= rr + past)
                r = F.scaled_dot_product_attention(q, kk, v, attn_mask=mask, scale=1.0)
        r = r.transpose(1, 2).reshape(B * T, H, dh)
        return self.outputs(lay, x, r).view(B, T, self.D), new

    # ------------------------------------------------------------------ model
    @torch.inference_mode()
    def forward(self, tokens, cache=None):
        """tokens int64 [B, T] -> logits [B, T, V] (and the new cache for RoPE models)."""
        B, T = tokens.shape
        x = F.embedding(tokens, self.sd["embedding.weight"])
        new_cache = []
        for i, lay in enumerate(self.layers):
            a = F.layer_norm(x, (self.D,), *lay["n1"], self.eps)
            y, kv = self.attention(lay, a, B, T, None if cache is None else cache[i])
            new_cache.append(kv)
            x = x + y
            f = F.layer_norm(x, (self.D,), *lay["n2"], self.eps).view(B * T, self.D)
            x = x + self.ffn(lay, f).view(B, T, self.D)
        x = F.layer_norm(x, (self.D,), self.sd["out_norm.weight"], self.sd["out_norm.bias"], self.eps)
        logits = self.head(x.reshape(B * T, self.D)).view(B, T, -1)
        return logits, (None if self.xl else new_cache)
