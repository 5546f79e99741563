//! The tensors a config implies: canonical name, shape with the meaning of each axis, and how
//! a synthetic model initialises it. Validation, parameter counting and `synth` all read this
//! one list.

use crate::config::{AttentionKind, Config, FfnKind, PosEncodingKind};
use crate::names::{self, LayerNames};

/// One axis of an expected shape: what config quantity it is and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    /// Config key or product of keys, e.g. `d_model` or `n_heads*d_head`.
    pub name: &'static str,
    /// Its value under the config.
    pub size: usize,
}

/// How `synth` initialises a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// All ones (LayerNorm weight).
    Ones,
    /// All zeros (LayerNorm bias).
    Zeros,
    /// Random with scale `1/sqrt(fan_in)`.
    Weight { fan_in: usize },
    /// Random with scale `1/sqrt(fan_in)`, as PyTorch initialises linear biases.
    Bias { fan_in: usize },
}

/// One tensor the config requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    /// Canonical name.
    pub name: String,
    /// Shape, axis by axis.
    pub axes: Vec<Axis>,
    /// Initialisation used by `synth`.
    pub init: Init,
}

impl ExpectedTensor {
    /// The shape as plain sizes.
    pub fn shape(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.size).collect()
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.axes.iter().map(|a| a.size as u64).product()
    }
}

/// Every tensor of the model `c` describes, in a fixed order: embedding, output, final norm,
/// then each layer.
pub fn expected_tensors(c: &Config) -> Vec<ExpectedTensor> {
    let d = ax("d_model", c.d_model);
    let v = ax("vocab_size", c.vocab_size);
    let mut out = vec![
        t(
            names::EMBEDDING,
            vec![v.clone(), d.clone()],
            Init::Weight { fan_in: c.d_model },
        ),
        t(
            names::OUTPUT_W,
            vec![v.clone(), d.clone()],
            Init::Weight { fan_in: c.d_model },
        ),
        t(names::OUTPUT_B, vec![v], Init::Bias { fan_in: c.d_model }),
    ];
    out.extend(norm(names::OUT_NORM_W, names::OUT_NORM_B, c));
    for i in 0..c.n_layers {
        let l = LayerNames::new(i);
        out.extend(norm_pair(l.norm1(), c));
        out.extend(attention(&l, c));
        out.extend(norm_pair(l.norm2(), c));
        out.extend(ffn(&l, c));
    }
    out
}

fn ax(name: &'static str, size: usize) -> Axis {
    Axis { name, size }
}

fn t(name: &str, axes: Vec<Axis>, init: Init) -> ExpectedTensor {
    ExpectedTensor {
        name: name.to_string(),
        axes,
        init,
    }
}

fn norm(w: &str, b: &str, c: &Config) -> [ExpectedTensor; 2] {
    let d = ax("d_model", c.d_model);
    [
        t(w, vec![d.clone()], Init::Ones),
        t(b, vec![d], Init::Zeros),
    ]
}

fn norm_pair((w, b): (String, String), c: &Config) -> [ExpectedTensor; 2] {
    norm(&w, &b, c)
}

fn attention(l: &LayerNames, c: &Config) -> Vec<ExpectedTensor> {
    let d = ax("d_model", c.d_model);
    let hd = ax("n_heads*d_head", c.n_heads * c.d_head);
    let w = |fan_in| Init::Weight { fan_in };
    let mut out = vec![
        t(&l.proj('q'), vec![hd.clone(), d.clone()], w(c.d_model)),
        t(&l.proj('k'), vec![hd.clone(), d.clone()], w(c.d_model)),
    ];
    out.extend(value_output(l, c));
    if c.pos_encoding == PosEncodingKind::Xl {
        out.push(t(&l.pos_to_pk(), vec![hd, d], w(c.d_model)));
    }
    out
}

/// V and O projections plus their routers, by attention variant.
fn value_output(l: &LayerNames, c: &Config) -> Vec<ExpectedTensor> {
    let d = ax("d_model", c.d_model);
    let hd = ax("n_heads*d_head", c.n_heads * c.d_head);
    let w = |fan_in| Init::Weight { fan_in };
    let dense = vec![
        t(&l.proj('v'), vec![hd.clone(), d.clone()], w(c.d_model)),
        t(
            &l.proj('o'),
            vec![d.clone(), hd.clone()],
            w(c.n_heads * c.d_head),
        ),
    ];
    match c.attention {
        AttentionKind::Dense => dense,
        AttentionKind::Switchhead if c.n_experts == 1 => {
            let h = ax("n_heads", c.n_heads);
            let mut out = dense;
            out.push(t(&l.sel('o'), vec![h, d], w(c.d_model)));
            out
        }
        AttentionKind::Switchhead => {
            let he = ax("n_heads*n_experts", c.n_heads * c.n_experts);
            let dh = ax("d_head", c.d_head);
            vec![
                t(
                    &l.proj('v'),
                    vec![he.clone(), d.clone(), dh.clone()],
                    w(c.d_model),
                ),
                t(&l.proj('o'), vec![he.clone(), dh, d.clone()], w(c.d_head)),
                t(&l.sel('v'), vec![he.clone(), d.clone()], w(c.d_model)),
                t(&l.sel('o'), vec![he, d], w(c.d_model)),
            ]
        }
    }
}

fn ffn(l: &LayerNames, c: &Config) -> Vec<ExpectedTensor> {
    let d = ax("d_model", c.d_model);
    match c.ffn {
        FfnKind::Dense => {
            let f = c.d_ff.unwrap_or(0);
            let ff = ax("d_ff", f);
            let ((w1, b1), (w2, b2)) = (l.linear1(), l.linear2());
            vec![
                t(
                    &w1,
                    vec![ff.clone(), d.clone()],
                    Init::Weight { fan_in: c.d_model },
                ),
                t(&b1, vec![ff.clone()], Init::Bias { fan_in: c.d_model }),
                t(&w2, vec![d.clone(), ff], Init::Weight { fan_in: f }),
                t(&b2, vec![d], Init::Bias { fan_in: f }),
            ]
        }
        FfnKind::SigmaMoe => {
            let n = ax("ffn_n_experts", c.ffn_n_experts.unwrap_or(0));
            let g_size = c.ffn_expert_size.unwrap_or(0);
            let g = ax("ffn_expert_size", g_size);
            vec![
                t(
                    &l.moe_sel(),
                    vec![n.clone(), d.clone()],
                    Init::Weight { fan_in: c.d_model },
                ),
                t(
                    &l.moe_keys(),
                    vec![n.clone(), d.clone(), g.clone()],
                    Init::Weight { fan_in: c.d_model },
                ),
                t(
                    &l.moe_values(),
                    vec![n, g, d],
                    Init::Weight { fan_in: g_size },
                ),
            ]
        }
    }
}
