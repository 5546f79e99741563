//! The ops on packed (quantized) weights against the same ops on the f32 weights those stand
//! for: Linear (row and column splits), the dense FFN, `MoEAttention` (projections, XL
//! position keys, grouped V/O experts; whole passes and KV-cache steps) and σ-MoE. The
//! packed products quantize their activations (VNNI) or round them to bf16, so they agree
//! to about 1e-2 of the output's scale, not bit for bit.

mod common;

use common::{assert_close, packed, random, rng};
use switchhead_kernels::moe_attention::Dims;
use switchhead_kernels::quant::PackedWeight;
use switchhead_kernels::{
    DenseFfnWeights, KvPast, MoeAttentionWeights, Projections, SigmaMoeWeights, WeightRef,
    dense_ffn, linear_with, moe_attention, moe_attention_kv, sigma_moe,
};
use switchhead_ops::Tensor;
use switchhead_ops::op::{AttentionVariant, Merge, MoeAttentionAttrs, PosEncoding};
use switchhead_ops::plan::QuantBits::{self, Int4, Int8};

/// Tolerance relative to the output's largest magnitude.
const TOL: f32 = 3e-2;

fn rm(t: &Tensor) -> WeightRef<'_> {
    WeightRef::row_major(t.data())
}

#[test]
fn linear_and_ffn_on_packed_weights_match_f32() {
    let mut g = rng(21);
    for (bits, group) in [(Int8, 0), (Int4, 32), (Int4, 7)] {
        for (rows, inp, out) in [(1, 412, 100), (3, 37, 33), (37, 130, 70)] {
            let x = random(&mut g, &[rows, inp], 1.0);
            let w = random(&mut g, &[out, inp], 0.1);
            let b = random(&mut g, &[out], 0.1);
            let (p, f) = packed(bits, &w, group);
            for threads in [1, 2] {
                let got = linear_with(
                    x.data(),
                    rows,
                    inp,
                    WeightRef::Packed(&p),
                    Some(b.data()),
                    out,
                    threads,
                )
                .expect("packed");
                let want = linear_with(x.data(), rows, inp, rm(&f), Some(b.data()), out, threads)
                    .expect("f32");
                assert_close(&got, &want, TOL);
            }
        }
    }
    let (rows, d, ff) = (20, 48, 130);
    let x = random(&mut g, &[rows, d], 1.0);
    let (w1, w2) = (random(&mut g, &[ff, d], 0.2), random(&mut g, &[d, ff], 0.1));
    let (b1, b2) = (random(&mut g, &[ff], 0.1), random(&mut g, &[d], 0.1));
    let ((p1, f1), (p2, f2)) = (packed(Int8, &w1, 0), packed(Int8, &w2, 0));
    let ffn = |w1, w2| DenseFfnWeights {
        w1,
        b1: b1.data(),
        w2,
        b2: b2.data(),
        d_ff: ff,
    };
    let got = dense_ffn(
        &ffn(WeightRef::Packed(&p1), WeightRef::Packed(&p2)),
        x.data(),
        rows,
        d,
        2,
    );
    let want = dense_ffn(&ffn(rm(&f1), rm(&f2)), x.data(), rows, d, 2);
    assert_close(&got.expect("packed"), &want.expect("f32"), TOL);
}

/// One SwitchHead layer's weights, each packed and as the f32 it stands for; routers f32
/// in both (their gates decide the experts: the comparison needs the same choices).
struct Layer {
    q: (PackedWeight, Tensor),
    k: (PackedWeight, Tensor),
    v: (PackedWeight, Tensor),
    o: (PackedWeight, Tensor),
    pk: (PackedWeight, Tensor),
    sel_v: Tensor,
    sel_o: Tensor,
}

const H: usize = 2;
const E: usize = 5;
const DH: usize = 12;
const D: usize = 40;

fn layer(bits: QuantBits, group: usize) -> Layer {
    let mut g = rng(22);
    let s = 1.0 / (D as f32).sqrt();
    let mut w = |shape: &[usize]| packed(bits, &random(&mut g, shape, s), group);
    Layer {
        q: w(&[H * DH, D]),
        k: w(&[H * DH, D]),
        v: w(&[H * E, D, DH]),
        o: w(&[H * E, DH, D]),
        pk: w(&[H * DH, D]),
        sel_v: random(&mut rng(23), &[H * E, D], s),
        sel_o: random(&mut rng(24), &[H * E, D], s),
    }
}

fn attrs(pos: PosEncoding) -> MoeAttentionAttrs {
    MoeAttentionAttrs {
        heads: H,
        experts: E,
        k: 3,
        d_head: DH,
        pos,
        causal: true,
        variant: AttentionVariant::ExpertsVO,
        merged: Merge::None,
    }
}

/// The layer's weights, packed or f32.
fn weights(l: &Layer, pack: bool) -> MoeAttentionWeights<'_> {
    let pick = |w| pick(w, pack);
    MoeAttentionWeights {
        proj: Projections::Separate {
            q: pick(&l.q),
            k: pick(&l.k),
            sel_v: Some(rm(&l.sel_v)),
            sel_o: Some(rm(&l.sel_o)),
        },
        v: pick(&l.v),
        o: pick(&l.o),
        pos_to_pk: Some(pick(&l.pk)),
        pos_keys: None,
    }
}

/// The packed weight or the f32 it stands for.
fn pick((p, f): &(PackedWeight, Tensor), pack: bool) -> WeightRef<'_> {
    match pack {
        true => WeightRef::Packed(p),
        false => WeightRef::row_major(f.data()),
    }
}

#[test]
fn attention_on_packed_weights_matches_f32() {
    for (bits, group) in [(Int8, 0), (Int4, 32)] {
        let l = layer(bits, group);
        let (batch, t, mem) = (2, 37, 5);
        let xkv = random(&mut rng(25), &[batch, t + mem, D], 1.0);
        let xq: Vec<f32> = (0..batch)
            .flat_map(|b| xkv.data()[(b * (t + mem) + mem) * D..(b + 1) * (t + mem) * D].to_vec())
            .collect();
        let dims = Dims {
            batch,
            t,
            tk: t + mem,
            d: D,
        };
        let a = attrs(PosEncoding::Xl);
        let got = moe_attention(&a, &weights(&l, true), &xq, xkv.data(), dims, 2).expect("packed");
        let want = moe_attention(&a, &weights(&l, false), &xq, xkv.data(), dims, 2).expect("f32");
        assert_close(&got, &want, TOL);
    }
}

/// RoPE decoding on packed weights: a prompt then single-token steps through the KV cache
/// equal (to the tolerance) the full pass on the f32 weights.
#[test]
fn kv_steps_on_packed_weights_match_the_f32_full_pass() {
    let l = layer(Int8, 0);
    let a = attrs(PosEncoding::Rope {
        rotate_fraction: 0.5,
        base: 10000.0,
    });
    let (n, prompt) = (9, 6);
    let x = random(&mut rng(26), &[1, n, D], 1.0);
    let dims = |t| Dims {
        batch: 1,
        t,
        tk: t,
        d: D,
    };
    let want = moe_attention(&a, &weights(&l, false), x.data(), x.data(), dims(n), 2).expect("f32");
    let w = weights(&l, true);
    let (mut key, mut value, mut got, mut at) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for t in std::iter::once(prompt).chain(std::iter::repeat_n(1, n - prompt)) {
        let xs = &x.data()[at * D..(at + t) * D];
        let past = KvPast {
            key: &key,
            value: &value,
            past: at,
        };
        let step = moe_attention_kv(&a, &w, xs, dims(t), past, 2).expect("packed step");
        got.extend(step.y);
        (key, value, at) = (step.key, step.value, at + t);
    }
    assert_close(&got, &want, TOL);
}

#[test]
fn sigma_moe_on_packed_experts_matches_f32() {
    let mut g = rng(27);
    let (n_e, d, gs, k, rows) = (8, 24, 12, 3, 57);
    let s = 1.0 / (d as f32).sqrt();
    let x = random(&mut g, &[rows, d], 1.0);
    let router = random(&mut g, &[n_e, d], s);
    let (pk, fk) = packed(Int4, &random(&mut g, &[n_e, d, gs], s), 32);
    let (pv, fv) = packed(Int4, &random(&mut g, &[n_e, gs, d], s), 32);
    let w = |keys, values| SigmaMoeWeights {
        router: rm(&router),
        keys,
        values,
        experts: n_e,
        expert_size: gs,
        k,
    };
    for (threads, rows) in [(1, rows), (2, rows), (2, 1)] {
        let xs = &x.data()[..rows * d];
        let got = sigma_moe(
            &w(WeightRef::Packed(&pk), WeightRef::Packed(&pv)),
            xs,
            rows,
            d,
            threads,
        );
        let want = sigma_moe(&w(rm(&fk), rm(&fv)), xs, rows, d, threads);
        assert_close(&got.expect("packed"), &want.expect("f32"), TOL);
    }
}
