//! Single-op models through `Session`: `ai.switchhead::MoEAttention` (every variant, RoPE and
//! XL, XL with memory) and `SigmaMoE`, against the `switchhead-ops` reference to 1e-5.

mod common;

use common::*;
use switchhead_ops::Tensor;
use switchhead_ops::moe_attention::{AttentionLayer, Positions, ValueOutput};
use switchhead_ops::rope::Rope;
use switchhead_runtime::{Session, SessionOptions, TokenBatch, XlMemory};
use tract_onnx::pb;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Experts,
    Gated,
    Dense,
}

struct Layer {
    variant: Variant,
    xl: bool,
    heads: usize,
    experts: usize,
    k: usize,
    dh: usize,
    d: usize,
    w: Vec<(&'static str, Tensor)>,
}

impl Layer {
    fn new(variant: Variant, xl: bool, seed: u64) -> Layer {
        let (heads, dh, d) = (2, 8, 16);
        let (experts, k) = if variant == Variant::Experts {
            (4, 2)
        } else {
            (1, 1)
        };
        let mut r = rng(seed);
        let s = 1.0 / (d as f32).sqrt();
        let hd = heads * dh;
        let mut w = vec![
            ("q", random(&mut r, &[hd, d], s)),
            ("k", random(&mut r, &[hd, d], s)),
        ];
        match variant {
            Variant::Experts => {
                w.push(("v", random(&mut r, &[heads * experts, d, dh], s)));
                w.push(("o", random(&mut r, &[heads * experts, dh, d], s)));
                w.push(("sel_v", random(&mut r, &[heads * experts, d], s)));
                w.push(("sel_o", random(&mut r, &[heads * experts, d], s)));
            }
            Variant::Gated | Variant::Dense => {
                w.push(("v", random(&mut r, &[hd, d], s)));
                w.push(("o", random(&mut r, &[d, hd], s)));
                if variant == Variant::Gated {
                    w.push(("sel_o", random(&mut r, &[heads, d], s)));
                }
            }
        }
        if xl {
            w.push(("pos_to_pk", random(&mut r, &[hd, d], s)));
        }
        Layer {
            variant,
            xl,
            heads,
            experts,
            k,
            dh,
            d,
            w,
        }
    }

    fn get(&self, name: &str) -> &Tensor {
        &self.w.iter().find(|(n, _)| *n == name).expect("weight").1
    }

    fn node(&self) -> pb::NodeProto {
        let variant = match self.variant {
            Variant::Experts => "experts_vo",
            Variant::Gated => "gated",
            Variant::Dense => "dense",
        };
        let attrs = vec![
            attr_i("heads", self.heads as i64),
            attr_i("experts", self.experts as i64),
            attr_i("k", self.k as i64),
            attr_i("d_head", self.dh as i64),
            attr_s("pos", if self.xl { "xl" } else { "rope" }),
            attr_f("rotate_fraction", 0.5),
            attr_f("rope_base", 10000.0),
            attr_i("causal", 1),
            attr_s("variant", variant),
        ];
        let xkv = if self.xl { "xkv" } else { "x" };
        let mut inputs = vec!["x", xkv];
        inputs.extend(self.w.iter().map(|(n, _)| *n));
        node("MoEAttention", DOMAIN, &inputs, "y", attrs)
    }

    fn model(&self, embedding: Tensor) -> pb::ModelProto {
        model(ModelSpec {
            d: self.d,
            embedding,
            body: vec![self.node()],
            weights: self.w.iter().map(|(n, t)| init(n, t)).collect(),
            xl: self.xl,
            switchhead_version: Some(1),
        })
    }

    fn reference(&self, xq: &Tensor, xkv: &Tensor) -> Vec<f32> {
        let value_output = match self.variant {
            Variant::Experts => ValueOutput::Experts {
                v: self.get("v"),
                o: self.get("o"),
                sel_v: self.get("sel_v"),
                sel_o: self.get("sel_o"),
                k: self.k,
            },
            Variant::Gated => ValueOutput::Gated {
                v: self.get("v"),
                o: self.get("o"),
                sel_o: self.get("sel_o"),
            },
            Variant::Dense => ValueOutput::Dense {
                v: self.get("v"),
                o: self.get("o"),
            },
        };
        let rope = Rope::new(self.dh, 0.5, 10000.0).expect("rope");
        let positions = match self.xl {
            true => Positions::Xl {
                pos_to_pk: self.get("pos_to_pk"),
            },
            false => Positions::Rope(&rope),
        };
        let layer = AttentionLayer {
            heads: self.heads,
            d_head: self.dh,
            q: self.get("q"),
            k: self.get("k"),
            value_output,
            positions,
        };
        switchhead_ops::moe_attention::moe_attention(&layer, xq, xkv)
            .expect("reference")
            .y
            .into_data()
    }
}

fn rows(table: &Tensor, ids: &[i64]) -> Tensor {
    switchhead_ops::embedding::embedding(table, ids).expect("embedding")
}

fn tokens(batch: usize, seq: usize, vocab: usize, seed: u64) -> TokenBatch {
    use rand::Rng;
    let mut r = rng(seed);
    let ids = (0..batch * seq)
        .map(|_| r.random_range(0..vocab as i64))
        .collect();
    TokenBatch::new(batch, seq, ids).expect("tokens")
}

fn check_logits(variant: Variant, xl: bool, seed: u64) {
    let layer = Layer::new(variant, xl, seed);
    let vocab = 40;
    let embedding = random(&mut rng(seed + 100), &[vocab, layer.d], 1.0);
    let path = write(&layer.model(embedding.clone()), &format!("attn-{seed}"));
    let session = Session::load(
        &path,
        SessionOptions {
            threads: Some(2),
            ..Default::default()
        },
    )
    .expect("load");
    assert_eq!(session.vocab_size(), layer.d);
    assert_eq!(session.is_xl(), xl);
    let tb = tokens(2, 37, layer.d.min(vocab), seed);
    let got = session.logits(&tb).expect("run");
    let mut want = Vec::new();
    for b in 0..tb.batch {
        let x = rows(&embedding, &tb.tokens[b * tb.seq..(b + 1) * tb.seq]);
        want.extend(layer.reference(&x, &x));
    }
    assert_close(&got.data, &want, 1e-5);
}

#[test]
fn experts_rope() {
    check_logits(Variant::Experts, false, 1);
}

#[test]
fn experts_xl() {
    check_logits(Variant::Experts, true, 2);
}

#[test]
fn gated_rope() {
    check_logits(Variant::Gated, false, 3);
}

#[test]
fn gated_xl() {
    check_logits(Variant::Gated, true, 4);
}

#[test]
fn dense_rope() {
    check_logits(Variant::Dense, false, 5);
}

#[test]
fn dense_xl() {
    check_logits(Variant::Dense, true, 6);
}

#[test]
fn xl_memory_carries_between_chunks() {
    let layer = Layer::new(Variant::Experts, true, 7);
    let d = layer.d;
    let embedding = random(&mut rng(107), &[d, d], 1.0);
    let path = write(&layer.model(embedding.clone()), "xl-chunks");
    let session = Session::load(&path, SessionOptions::default()).expect("load");
    assert_eq!(session.n_layers(), 1);
    assert_eq!(session.d_model(), d);
    let (first, second) = (tokens(2, 11, d, 8), tokens(2, 13, d, 9));
    let (_, memory) = session.forward_chunk(&first, None).expect("chunk 1");
    assert_eq!((memory.batch, memory.mem_len, memory.d_model), (2, 11, d));
    let (got, _) = session
        .forward_chunk(&second, Some(&memory))
        .expect("chunk 2");
    let mut want = Vec::new();
    for b in 0..2 {
        let mem = rows(&embedding, &first.tokens[b * 11..(b + 1) * 11]);
        let x = rows(&embedding, &second.tokens[b * 13..(b + 1) * 13]);
        let xkv = Tensor::new(vec![24, d], [mem.data(), x.data()].concat()).expect("xkv");
        want.extend(layer.reference(&x, &xkv));
    }
    assert_close(&got.data, &want, 1e-5);
    let bad = XlMemory {
        batch: 2,
        mem_len: 3,
        d_model: d,
        layers: vec![vec![0.0; 5]],
    };
    let err = session.forward_chunk(&second, Some(&bad)).unwrap_err();
    assert!(err.to_string().contains("XL memory"), "{err}");
}

#[test]
fn sigma_moe() {
    let (d, n_e, g, k, vocab) = (16, 6, 8, 2, 16);
    let mut r = rng(11);
    let s = 1.0 / (d as f32).sqrt();
    let (router, keys, values) = (
        random(&mut r, &[n_e, d], s),
        random(&mut r, &[n_e, d, g], s),
        random(&mut r, &[n_e, g, d], s),
    );
    let embedding = random(&mut r, &[vocab, d], 1.0);
    let attrs = vec![
        attr_i("experts", n_e as i64),
        attr_i("expert_size", g as i64),
        attr_i("k", k as i64),
    ];
    let proto = model(ModelSpec {
        d,
        embedding: embedding.clone(),
        body: vec![node(
            "SigmaMoE",
            DOMAIN,
            &["x", "router", "keys", "values"],
            "y",
            attrs,
        )],
        weights: vec![
            init("router", &router),
            init("keys", &keys),
            init("values", &values),
        ],
        xl: false,
        switchhead_version: Some(1),
    });
    let session = Session::load(write(&proto, "sigma"), SessionOptions::default()).expect("load");
    let tb = tokens(3, 9, vocab, 12);
    let got = session.logits(&tb).expect("run");
    let x = rows(&embedding, &tb.tokens);
    let (want, _) =
        switchhead_ops::sigma_moe::sigma_moe(&x, &router, &keys, &values, k).expect("reference");
    assert_close(&got.data, want.data(), 1e-5);
}
