//! Pairing tests: every kernel against its `switchhead_ops` reference on random inputs.

mod common;

use common::{assert_close, random};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use switchhead_kernels::moe_attention::Dims;
use switchhead_kernels::{
    KernelError, KvPast, KvSlab, MoeAttentionWeights, Projections, SigmaMoeWeights, WeightLayout,
    WeightRef, kv_with_capacity, moe_attention, moe_attention_kv, moe_attention_kv_in_place,
    moe_attention_kv_rows, sigma_moe,
};
use switchhead_ops::Tensor;
use switchhead_ops::moe_attention::{AttentionLayer, Positions, ValueOutput};
use switchhead_ops::op::{AttentionVariant, Merge, MoeAttentionAttrs, PosEncoding};
use switchhead_ops::plan::{to_expert_panels, to_panels};
use switchhead_ops::rope::Rope;

struct Case {
    variant: AttentionVariant,
    pos: PosEncoding,
    heads: usize,
    experts: usize,
    k: usize,
    dh: usize,
    d: usize,
}

struct Weights {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    sel_v: Option<Tensor>,
    sel_o: Option<Tensor>,
    pk: Option<Tensor>,
}

fn weights(c: &Case, rng: &mut ChaCha8Rng) -> Weights {
    let (h, e, dh, d) = (c.heads, c.experts, c.dh, c.d);
    let s = 1.0 / (d as f32).sqrt();
    let experts = c.variant == AttentionVariant::ExpertsVO;
    Weights {
        q: random(rng, &[h * dh, d], s),
        k: random(rng, &[h * dh, d], s),
        v: if experts {
            random(rng, &[h * e, d, dh], s)
        } else {
            random(rng, &[h * dh, d], s)
        },
        o: if experts {
            random(rng, &[h * e, dh, d], s)
        } else {
            random(rng, &[d, h * dh], s)
        },
        sel_v: experts.then(|| random(rng, &[h * e, d], s)),
        sel_o: match c.variant {
            AttentionVariant::ExpertsVO => Some(random(rng, &[h * e, d], s)),
            AttentionVariant::Gated => Some(random(rng, &[h, d], s)),
            AttentionVariant::Dense => None,
        },
        pk: (c.pos == PosEncoding::Xl).then(|| random(rng, &[h * dh, d], s)),
    }
}

fn reference(c: &Case, w: &Weights, xq: &Tensor, xkv: &Tensor, rope: Option<&Rope>) -> Vec<f32> {
    let value_output = match c.variant {
        AttentionVariant::ExpertsVO => ValueOutput::Experts {
            v: &w.v,
            o: &w.o,
            sel_v: w.sel_v.as_ref().expect("sel_v"),
            sel_o: w.sel_o.as_ref().expect("sel_o"),
            k: c.k,
        },
        AttentionVariant::Gated => ValueOutput::Gated {
            v: &w.v,
            o: &w.o,
            sel_o: w.sel_o.as_ref().expect("sel_o"),
        },
        AttentionVariant::Dense => ValueOutput::Dense { v: &w.v, o: &w.o },
    };
    let positions = match rope {
        Some(r) => Positions::Rope(r),
        None => Positions::Xl {
            pos_to_pk: w.pk.as_ref().expect("pk"),
        },
    };
    let layer = AttentionLayer {
        heads: c.heads,
        d_head: c.dh,
        q: &w.q,
        k: &w.k,
        value_output,
        positions,
    };
    switchhead_ops::moe_attention::moe_attention(&layer, xq, xkv)
        .expect("reference")
        .y
        .into_data()
}

fn attrs_of(c: &Case) -> MoeAttentionAttrs {
    MoeAttentionAttrs {
        heads: c.heads,
        experts: c.experts,
        k: c.k,
        d_head: c.dh,
        pos: c.pos,
        causal: true,
        variant: c.variant,
        merged: Merge::None,
    }
}

fn kernel_weights(w: &Weights) -> MoeAttentionWeights<'_> {
    MoeAttentionWeights {
        proj: Projections::Separate {
            q: rm(w.q.data()),
            k: rm(w.k.data()),
            sel_v: w.sel_v.as_ref().map(|t| rm(t.data())),
            sel_o: w.sel_o.as_ref().map(|t| rm(t.data())),
        },
        v: rm(w.v.data()),
        o: rm(w.o.data()),
        pos_to_pk: w.pk.as_ref().map(|t| rm(t.data())),
        pos_keys: None,
    }
}

fn rm(data: &[f32]) -> WeightRef<'_> {
    WeightRef::row_major(data)
}

fn pn(data: &[f32]) -> WeightRef<'_> {
    WeightRef::F32(data, WeightLayout::Panels)
}

/// Rows of the given weights stacked in order (absent ones skipped).
fn stack(parts: &[Option<&Tensor>]) -> Vec<f32> {
    parts
        .iter()
        .flatten()
        .flat_map(|t| t.data().iter().copied())
        .collect()
}

/// q, k and the routers as one merged `qkr` weight (rows q, k, sel_v, sel_o).
fn merged_qkr(w: &Weights) -> Vec<f32> {
    stack(&[Some(&w.q), Some(&w.k), w.sel_v.as_ref(), w.sel_o.as_ref()])
}

/// Merged projections give exactly the separate ones' result, row-major and in panels: by
/// sides always, all in one when xq is xkv (no memory).
fn check_merged(
    c: &Case,
    w: &Weights,
    (xq, xkv): (&[f32], &[f32]),
    dims: Dims,
    want: (&[f32], &[f32]),
) {
    let blocks = attrs_of(c).merged_blocks();
    let qkr = merged_qkr(w);
    let qo = stack(&[Some(&w.q), w.sel_o.as_ref()]);
    let kv = stack(&[Some(&w.k), w.sel_v.as_ref()]);
    let (wq, wk) = blocks.sides();
    let packed = |data: &[f32], rows| to_panels(data, rows, c.d);
    let (qkr_p, qo_p, kv_p) = (
        packed(&qkr, blocks.total()),
        packed(&qo, wq),
        packed(&kv, wk),
    );
    let pk =
        w.pk.as_ref()
            .map(|t| to_panels(t.data(), c.heads * c.dh, c.d));
    let mut forms = vec![
        (
            Merge::Sides,
            Projections::Sides {
                qo: rm(&qo),
                kv: rm(&kv),
            },
            WeightLayout::RowMajor,
            want.0,
        ),
        (
            Merge::Sides,
            Projections::Sides {
                qo: pn(&qo_p),
                kv: pn(&kv_p),
            },
            WeightLayout::Panels,
            want.1,
        ),
    ];
    if dims.t == dims.tk {
        forms.push((
            Merge::All,
            Projections::Merged(rm(&qkr)),
            WeightLayout::RowMajor,
            want.0,
        ));
        forms.push((
            Merge::All,
            Projections::Merged(pn(&qkr_p)),
            WeightLayout::Panels,
            want.1,
        ));
    }
    for (merge, proj, layout, want) in forms {
        let attrs = MoeAttentionAttrs {
            merged: merge,
            ..attrs_of(c)
        };
        let mut kw = kernel_weights(w);
        kw.proj = proj;
        if layout == WeightLayout::Panels {
            kw.pos_to_pk = pk.as_deref().map(pn);
        }
        let got = moe_attention(&attrs, &kw, xq, xkv, dims, 3).expect("kernel, merged");
        assert_eq!(
            got, want,
            "merged {merge:?} {layout:?} differs from separate projections"
        );
    }
}

fn run_case(c: Case, batch: usize, t: usize, mem: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = weights(&c, &mut rng);
    let tk = t + mem;
    let xkv = random(&mut rng, &[batch, tk, c.d], 1.0);
    // Self-attention with memory: the queries are the last t rows of xkv.
    let xq: Vec<f32> = (0..batch)
        .flat_map(|b| xkv.data()[(b * tk + mem) * c.d..(b + 1) * tk * c.d].to_vec())
        .collect();
    let attrs = attrs_of(&c);
    let kw = kernel_weights(&w);
    let dims = Dims {
        batch,
        t,
        tk,
        d: c.d,
    };
    let got = moe_attention(&attrs, &kw, &xq, xkv.data(), dims, 3).expect("kernel");
    // The same weights with q, k and pos_to_pk in the plan's panels layout, and the V/O
    // experts in expert_panels.
    let panels = |t: &Tensor| to_panels(t.data(), c.heads * c.dh, c.d);
    let (q, k, pk) = (panels(&w.q), panels(&w.k), w.pk.as_ref().map(panels));
    let experts = c.variant == AttentionVariant::ExpertsVO;
    let stack = |t: &Tensor, inp, out| to_expert_panels(t.data(), c.heads * c.experts, inp, out);
    let (v, o) = (stack(&w.v, c.d, c.dh), stack(&w.o, c.dh, c.d));
    let router = |t: &Tensor| to_panels(t.data(), t.shape()[0], c.d);
    let (sel_v, sel_o) = (w.sel_v.as_ref().map(router), w.sel_o.as_ref().map(router));
    let kw_panels = MoeAttentionWeights {
        proj: Projections::Separate {
            q: pn(&q),
            k: pn(&k),
            sel_v: sel_v.as_deref().map(pn),
            sel_o: sel_o.as_deref().map(pn),
        },
        pos_to_pk: pk.as_deref().map(pn),
        pos_keys: None,
        v: if experts { pn(&v) } else { kw.v },
        o: if experts { pn(&o) } else { kw.o },
    };
    let got_panels =
        moe_attention(&attrs, &kw_panels, &xq, xkv.data(), dims, 3).expect("kernel, panels");
    check_merged(&c, &w, (&xq, xkv.data()), dims, (&got, &got_panels));
    let rope = match c.pos {
        PosEncoding::Rope {
            rotate_fraction,
            base,
        } => Some(Rope::new(c.dh, rotate_fraction, base).expect("rope")),
        PosEncoding::Xl => None,
    };
    let mut want = Vec::new();
    for b in 0..batch {
        let xq_b =
            Tensor::new(vec![t, c.d], xq[b * t * c.d..(b + 1) * t * c.d].to_vec()).expect("xq");
        let xkv_b = Tensor::new(
            vec![tk, c.d],
            xkv.data()[b * tk * c.d..(b + 1) * tk * c.d].to_vec(),
        )
        .expect("xkv");
        want.extend(reference(&c, &w, &xq_b, &xkv_b, rope.as_ref()));
    }
    assert_close(&got, &want, 1e-5);
    assert_close(&got_panels, &want, 1e-5);
}

const ROPE: PosEncoding = PosEncoding::Rope {
    rotate_fraction: 0.5,
    base: 10000.0,
};

fn case(variant: AttentionVariant, pos: PosEncoding) -> Case {
    let (experts, k) = if variant == AttentionVariant::ExpertsVO {
        (4, 2)
    } else {
        (1, 1)
    };
    Case {
        variant,
        pos,
        heads: 3,
        experts,
        k,
        dh: 16,
        d: 24,
    }
}

#[test]
fn experts_rope_matches_reference() {
    run_case(case(AttentionVariant::ExpertsVO, ROPE), 2, 70, 0, 1);
}

#[test]
fn experts_rope_with_cache_offset_matches_reference() {
    run_case(case(AttentionVariant::ExpertsVO, ROPE), 2, 9, 13, 2);
}

#[test]
fn experts_xl_with_memory_matches_reference() {
    run_case(
        case(AttentionVariant::ExpertsVO, PosEncoding::Xl),
        2,
        67,
        20,
        3,
    );
}

#[test]
fn experts_xl_without_memory_matches_reference() {
    run_case(
        case(AttentionVariant::ExpertsVO, PosEncoding::Xl),
        1,
        11,
        0,
        4,
    );
}

#[test]
fn gated_rope_matches_reference() {
    run_case(case(AttentionVariant::Gated, ROPE), 2, 17, 0, 5);
}

#[test]
fn gated_xl_matches_reference() {
    run_case(case(AttentionVariant::Gated, PosEncoding::Xl), 2, 17, 5, 6);
}

#[test]
fn dense_rope_matches_reference() {
    run_case(case(AttentionVariant::Dense, ROPE), 3, 130, 0, 7);
}

#[test]
fn dense_xl_matches_reference() {
    run_case(case(AttentionVariant::Dense, PosEncoding::Xl), 1, 33, 31, 8);
}

#[test]
fn odd_rotated_channels_are_rejected() {
    let mut c = case(
        AttentionVariant::Dense,
        PosEncoding::Rope {
            rotate_fraction: 0.3,
            base: 10000.0,
        },
    );
    c.dh = 10;
    let attrs = MoeAttentionAttrs {
        heads: c.heads,
        experts: 1,
        k: 1,
        d_head: c.dh,
        pos: c.pos,
        causal: true,
        variant: c.variant,
        merged: Merge::None,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let w = weights(&c, &mut rng);
    let kw = MoeAttentionWeights {
        pos_to_pk: None,
        pos_keys: None,
        ..kernel_weights(&w)
    };
    let x = vec![0f32; 2 * c.d];
    let err = moe_attention(
        &attrs,
        &kw,
        &x,
        &x,
        Dims {
            batch: 1,
            t: 2,
            tk: 2,
            d: c.d,
        },
        1,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            KernelError::Attribute {
                attr: "rotate_fraction",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn sigma_moe_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let (n_e, d, g, k, rows) = (8, 24, 12, 3, 57);
    let s = 1.0 / (d as f32).sqrt();
    let x = random(&mut rng, &[rows, d], 1.0);
    let router = random(&mut rng, &[n_e, d], s);
    let keys = random(&mut rng, &[n_e, d, g], s);
    let values = random(&mut rng, &[n_e, g, d], s);
    let w = SigmaMoeWeights {
        router: rm(router.data()),
        keys: rm(keys.data()),
        values: rm(values.data()),
        experts: n_e,
        expert_size: g,
        k,
    };
    let got = sigma_moe(&w, x.data(), rows, d, 2).expect("kernel");
    let (want, _) =
        switchhead_ops::sigma_moe::sigma_moe(&x, &router, &keys, &values, k).expect("reference");
    assert_close(&got, want.data(), 1e-5);
    // keys and values in the plan's expert_panels layout
    let (kp, vp) = (
        to_expert_panels(keys.data(), n_e, d, g),
        to_expert_panels(values.data(), n_e, g, d),
    );
    let rp = to_panels(router.data(), n_e, d);
    let wp = SigmaMoeWeights {
        router: pn(&rp),
        keys: pn(&kp),
        values: pn(&vp),
        ..w
    };
    for threads in [1, 3] {
        let got = sigma_moe(&wp, x.data(), rows, d, threads).expect("kernel, panels");
        assert_close(&got, want.data(), 1e-5);
    }
    // one row (a decode step): the unsorted path, one group per slot
    let one = Tensor::new(vec![1, d], x.data()[..d].to_vec()).expect("row");
    let (want, _) =
        switchhead_ops::sigma_moe::sigma_moe(&one, &router, &keys, &values, k).expect("reference");
    for w in [&w, &wp] {
        let got = sigma_moe(w, one.data(), 1, d, 2).expect("kernel, one row");
        assert_close(&got, want.data(), 1e-5);
    }
}

#[test]
fn sigma_moe_rejects_bad_k() {
    let w = SigmaMoeWeights {
        router: rm(&[0.0; 4]),
        keys: rm(&[0.0; 4]),
        values: rm(&[0.0; 4]),
        experts: 2,
        expert_size: 1,
        k: 3,
    };
    let err = sigma_moe(&w, &[0.0; 4], 2, 2, 1).unwrap_err();
    assert!(
        matches!(err, KernelError::Attribute { op: "SigmaMoE", .. }),
        "{err}"
    );
}

/// Rows `from..to` of every batch row of `[batch, n, d]`.
fn rows(x: &[f32], batch: usize, n: usize, d: usize, from: usize, to: usize) -> Vec<f32> {
    (0..batch)
        .flat_map(|b| x[(b * n + from) * d..(b * n + to) * d].to_vec())
        .collect()
}

/// Prefill then steps of `steps` sizes through the KV cache == one full pass, with separate
/// projections, all merged and merged by sides.
fn kv_case(c: Case, batch: usize, prefill: usize, steps: &[usize], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = weights(&c, &mut rng);
    let n = prefill + steps.iter().sum::<usize>();
    let x = random(&mut rng, &[batch, n, c.d], 1.0);
    let (attrs, kw) = (attrs_of(&c), kernel_weights(&w));
    let dims = |t| Dims {
        batch,
        t,
        tk: t,
        d: c.d,
    };
    let full = moe_attention(&attrs, &kw, x.data(), x.data(), dims(n), 2).expect("full pass");
    let qkr = merged_qkr(&w);
    let merged = MoeAttentionWeights {
        proj: Projections::Merged(rm(&qkr)),
        ..kw
    };
    let merged_attrs = MoeAttentionAttrs {
        merged: Merge::All,
        ..attrs
    };
    let (qo, kv) = (
        stack(&[Some(&w.q), w.sel_o.as_ref()]),
        stack(&[Some(&w.k), w.sel_v.as_ref()]),
    );
    let sides = MoeAttentionWeights {
        proj: Projections::Sides {
            qo: rm(&qo),
            kv: rm(&kv),
        },
        ..kw
    };
    let sides_attrs = MoeAttentionAttrs {
        merged: Merge::Sides,
        ..attrs
    };
    for (attrs, kw) in [(attrs, kw), (merged_attrs, merged), (sides_attrs, sides)] {
        let (mut key, mut value, mut at) = (Vec::new(), Vec::new(), 0);
        for &t in std::iter::once(&prefill).chain(steps) {
            let xs = rows(x.data(), batch, n, c.d, at, at + t);
            let past = KvPast {
                key: &key,
                value: &value,
                past: at,
            };
            let step = moe_attention_kv(&attrs, &kw, &xs, dims(t), past, 2).expect("kv step");
            assert_close(&step.y, &rows(&full, batch, n, c.d, at, at + t), 1e-5);
            (key, value, at) = (step.key, step.value, at + t);
        }
        assert_eq!(key.len(), batch * c.heads * n * c.dh);
        // the same steps appended in place to one cache with room to spare: the same y,
        // and the same cache once compacted
        let capacity = n + 5;
        let (mut k_in, mut v_in) = (
            vec![0f32; key.len() / n * capacity],
            vec![0f32; value.len() / n * capacity],
        );
        let mut at = 0;
        for &t in std::iter::once(&prefill).chain(steps) {
            let xs = rows(x.data(), batch, n, c.d, at, at + t);
            let slab = KvSlab {
                key: &mut k_in,
                value: &mut v_in,
                past: at,
                capacity,
            };
            let y =
                moe_attention_kv_in_place(&attrs, &kw, &xs, dims(t), slab, 2).expect("in place");
            assert_close(&y, &rows(&full, batch, n, c.d, at, at + t), 1e-5);
            at += t;
        }
        let compact = |v: &[f32]| kv_with_capacity(v, batch * c.heads, (n, capacity), n, c.dh);
        assert_close(&compact(&k_in), &key, 1e-6);
        assert_close(&compact(&v_in), &value, 1e-6);
        // a step with no room left is refused, naming the cache
        let full_slab = KvSlab {
            key: &mut k_in,
            value: &mut v_in,
            past: capacity,
            capacity,
        };
        let xs = rows(x.data(), batch, n, c.d, 0, 1);
        let err = moe_attention_kv_in_place(&attrs, &kw, &xs, dims(1), full_slab, 1)
            .expect_err("no room");
        assert!(err.to_string().contains("KV cache"), "{err}");
    }
}

#[test]
fn kv_cache_steps_match_the_full_pass() {
    kv_case(
        case(AttentionVariant::ExpertsVO, ROPE),
        2,
        7,
        &[1, 1, 3, 1],
        21,
    );
    // batch 1, one-token steps: the unsorted single-row dispatch
    kv_case(
        case(AttentionVariant::ExpertsVO, ROPE),
        1,
        3,
        &[1, 1, 1],
        25,
    );
    kv_case(case(AttentionVariant::Gated, ROPE), 1, 5, &[1, 2], 22);
    kv_case(case(AttentionVariant::Dense, ROPE), 2, 0, &[1, 1, 1], 23);
}

/// Independent sequences at different positions (0, 1, 4 and 6 cached tokens), stepped
/// together by `moe_attention_kv_rows`, give each sequence's lone step: y and cache.
fn kv_rows_case(c: Case, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = weights(&c, &mut rng);
    let (attrs, kw) = (attrs_of(&c), kernel_weights(&w));
    let pasts = [0usize, 4, 1, 6];
    let one = |t| Dims {
        batch: 1,
        t,
        tk: t,
        d: c.d,
    };
    let empty = KvPast {
        key: &[],
        value: &[],
        past: 0,
    };
    // Each sequence's cache after its prefill, and its next token's input row.
    let mut caches = Vec::new();
    let mut next = Vec::new();
    for &p in &pasts {
        let x = random(&mut rng, &[1, p + 1, c.d], 1.0);
        if p == 0 {
            caches.push((Vec::new(), Vec::new()));
        } else {
            let pre = moe_attention_kv(&attrs, &kw, &x.data()[..p * c.d], one(p), empty, 1)
                .expect("prefill");
            caches.push((pre.key, pre.value));
        }
        next.extend_from_slice(&x.data()[p * c.d..]);
    }
    let past_of = |i: usize| KvPast {
        key: &caches[i].0,
        value: &caches[i].1,
        past: pasts[i],
    };
    // The shared step appends in place to caches with 3 rows of room (sequence i's rows
    // `pasts[i] + 3` apart per head).
    let dh = c.dh;
    let room = |i: usize, cache: &[f32]| {
        kv_with_capacity(cache, c.heads, (pasts[i], pasts[i]), pasts[i] + 3, dh)
    };
    let mut grown: Vec<(Vec<f32>, Vec<f32>)> = (0..pasts.len())
        .map(|i| (room(i, &caches[i].0), room(i, &caches[i].1)))
        .collect();
    let mut slabs: Vec<KvSlab<'_>> = grown
        .iter_mut()
        .zip(pasts)
        .map(|((key, value), past)| KvSlab {
            key,
            value,
            past,
            capacity: past + 3,
        })
        .collect();
    let shared = moe_attention_kv_rows(&attrs, &kw, &next, c.d, &mut slabs, 2).expect("rows step");
    drop(slabs);
    for (i, (key, value)) in grown.iter().enumerate() {
        let row = &next[i * c.d..(i + 1) * c.d];
        let alone = moe_attention_kv(&attrs, &kw, row, one(1), past_of(i), 1).expect("alone");
        assert_close(&shared[i * c.d..(i + 1) * c.d], &alone.y, 1e-6);
        let (p, cap) = (pasts[i] + 1, pasts[i] + 3);
        let compact = |v: &[f32]| kv_with_capacity(v, c.heads, (p, cap), p, dh);
        assert_eq!(compact(key).len(), alone.key.len(), "sequence {i} keys");
        assert_close(&compact(key), &alone.key, 1e-6);
        assert_close(&compact(value), &alone.value, 1e-6);
    }
}

#[test]
fn independent_sequences_step_together_as_alone() {
    kv_rows_case(case(AttentionVariant::ExpertsVO, ROPE), 31);
    kv_rows_case(case(AttentionVariant::Gated, ROPE), 32);
    kv_rows_case(case(AttentionVariant::Dense, ROPE), 33);
}

#[test]
fn kv_cache_rejects_xl_and_a_wrong_past() {
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let xl = case(AttentionVariant::ExpertsVO, PosEncoding::Xl);
    let w = weights(&xl, &mut rng);
    let x = random(&mut rng, &[1, 2, xl.d], 1.0);
    let dims = Dims {
        batch: 1,
        t: 2,
        tk: 2,
        d: xl.d,
    };
    let empty = KvPast {
        key: &[],
        value: &[],
        past: 0,
    };
    let err = moe_attention_kv(
        &attrs_of(&xl),
        &kernel_weights(&w),
        x.data(),
        dims,
        empty,
        1,
    );
    assert!(matches!(err, Err(KernelError::Attribute { .. })), "{err:?}");
    let rope = case(AttentionVariant::ExpertsVO, ROPE);
    let w = weights(&rope, &mut rng);
    let short = KvPast {
        key: &[0.0; 5],
        value: &[0.0; 5],
        past: 1,
    };
    let err = moe_attention_kv(
        &attrs_of(&rope),
        &kernel_weights(&w),
        x.data(),
        dims,
        short,
        1,
    );
    assert!(matches!(err, Err(KernelError::Shape { .. })), "{err:?}");
}
