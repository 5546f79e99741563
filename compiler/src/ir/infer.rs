//! Shape inference: the fact of each op's output from its inputs' facts and attributes.
//!
//! Dims may be symbolic. Two dims *agree* unless both are known and differ or both are
//! symbols with different names (a known size and a symbol may be equal at run time). The
//! sequence concatenation of `M` and `T` is the symbol `M+T` (or the sum when both are known,
//! or the other dim when one is a known 0).

use switchhead_ops::op::{
    AttentionVariant, Merge, MoeAttentionAttrs, Op, PosEncoding, SigmaMoeAttrs,
};

use super::graph::{DType, Dim, Fact};
use super::text::{dim_text, fact_text};

/// Why an op's inputs or attributes do not fit together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferError {
    /// An input has the wrong rank or a dim that disagrees with another input or an attribute.
    #[error("input {input} ({what}): expected {expected}, got {got}")]
    Shape {
        input: usize,
        what: &'static str,
        expected: String,
        got: String,
    },
    /// An input has the wrong element type.
    #[error("input {input} ({what}): expected {expected}, got {got}")]
    DType {
        input: usize,
        what: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    /// An attribute is out of range.
    #[error("attribute {attr}: {reason}")]
    Attribute { attr: &'static str, reason: String },
    /// The op got the wrong number of inputs.
    #[error("expected {expected} inputs, got {got}")]
    Arity { expected: usize, got: usize },
}

/// The facts of `op`'s outputs given its inputs' facts (after checking them and the attrs).
pub fn infer(op: &Op, inputs: &[&Fact]) -> Result<Vec<Fact>, InferError> {
    check_attrs(op)?;
    if inputs.len() != op.arity() {
        return Err(InferError::Arity {
            expected: op.arity(),
            got: inputs.len(),
        });
    }
    let out = match op {
        Op::Embedding => embedding(inputs)?,
        Op::LayerNorm { .. } => layer_norm(inputs)?,
        Op::Linear { bias } => linear(inputs, *bias)?,
        Op::Add => same_shape(inputs)?,
        Op::Relu => inputs[0].clone(),
        Op::Softmax { axis } => softmax(inputs[0], *axis)?,
        Op::ConcatSeq => concat_seq(inputs)?,
        Op::DenseFfn => dense_ffn(inputs)?,
        Op::MoEAttention(a) => moe_attention(a, inputs)?,
        Op::SigmaMoe(a) => sigma_moe(a, inputs)?,
    };
    Ok(vec![out])
}

/// Checks the attributes alone (ranges and variant consistency).
pub fn check_attrs(op: &Op) -> Result<(), InferError> {
    match op {
        Op::MoEAttention(a) => attention_attrs(a),
        Op::SigmaMoe(a) => {
            positive("experts", a.experts)?;
            positive("expert_size", a.expert_size)?;
            k_of(a.k, a.experts)
        }
        Op::LayerNorm { eps } if !(*eps >= 0.0 && eps.is_finite()) => Err(attr(
            "eps",
            format!("{eps:?} is not a finite non-negative number"),
        )),
        _ => Ok(()),
    }
}

/// True when two facts can describe the same tensor (see the module docs).
pub fn facts_agree(a: &Fact, b: &Fact) -> bool {
    a.dtype == b.dtype
        && a.shape.len() == b.shape.len()
        && a.shape.iter().zip(&b.shape).all(|(x, y)| dims_agree(x, y))
}

/// True unless both dims are known and differ or both are symbols with different names.
pub fn dims_agree(a: &Dim, b: &Dim) -> bool {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x == y,
        (Dim::Sym(x), Dim::Sym(y)) => x == y,
        _ => true,
    }
}

/// Sum of two sequence lengths: `M+T` for symbols.
pub fn dim_sum(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => Dim::Known(x + y),
        (Dim::Known(0), other) | (other, Dim::Known(0)) => other.clone(),
        _ => Dim::Sym(format!("{}+{}", dim_text(a), dim_text(b))),
    }
}

fn attr(attr: &'static str, reason: String) -> InferError {
    InferError::Attribute { attr, reason }
}

fn positive(name: &'static str, v: usize) -> Result<(), InferError> {
    match v {
        0 => Err(attr(name, "must be at least 1".into())),
        _ => Ok(()),
    }
}

fn k_of(k: usize, experts: usize) -> Result<(), InferError> {
    match k >= 1 && k <= experts {
        true => Ok(()),
        false => Err(attr(
            "k",
            format!("k = {k} must be in 1..={experts} (experts)"),
        )),
    }
}

fn attention_attrs(a: &MoeAttentionAttrs) -> Result<(), InferError> {
    positive("heads", a.heads)?;
    positive("d_head", a.d_head)?;
    positive("experts", a.experts)?;
    k_of(a.k, a.experts)?;
    if a.variant != AttentionVariant::ExpertsVO && (a.experts, a.k) != (1, 1) {
        return Err(attr(
            "experts",
            format!("{:?} attention has experts = k = 1", a.variant),
        ));
    }
    if let PosEncoding::Rope {
        rotate_fraction,
        base,
    } = a.pos
    {
        switchhead_ops::rope::Rope::new(a.d_head, rotate_fraction, base)
            .map_err(|e| attr("pos", e.to_string()))?;
    }
    Ok(())
}

/// Checks input `i` against an expected shape (`None` = any dim); returns its dims.
fn expect(
    inputs: &[&Fact],
    i: usize,
    what: &'static str,
    want: &[Option<Dim>],
) -> Result<Vec<Dim>, InferError> {
    let got = &inputs[i].shape;
    let fits = got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| w.as_ref().is_none_or(|w| dims_agree(g, w)));
    if fits {
        return Ok(got.clone());
    }
    let dims: Vec<String> = want
        .iter()
        .map(|d| d.as_ref().map_or("_".into(), dim_text))
        .collect();
    let expected = format!("[{}]", dims.join(","));
    Err(InferError::Shape {
        input: i,
        what,
        expected,
        got: fact_text(inputs[i]),
    })
}

fn known(n: usize) -> Option<Dim> {
    Some(Dim::Known(n))
}

/// The last dim of input `i` (rank >= 1).
fn last_dim(inputs: &[&Fact], i: usize, what: &'static str) -> Result<Dim, InferError> {
    inputs[i]
        .shape
        .last()
        .cloned()
        .ok_or_else(|| InferError::Shape {
            input: i,
            what,
            expected: "rank >= 1".into(),
            got: fact_text(inputs[i]),
        })
}

fn embedding(inputs: &[&Fact]) -> Result<Fact, InferError> {
    if inputs[0].dtype != DType::I64 {
        let got = inputs[0].dtype.name();
        return Err(InferError::DType {
            input: 0,
            what: "tokens",
            expected: "i64",
            got,
        });
    }
    let bt = expect(inputs, 0, "tokens", &[None, None])?;
    let vd = expect(inputs, 1, "table", &[None, None])?;
    Ok(Fact {
        dtype: inputs[1].dtype,
        shape: vec![bt[0].clone(), bt[1].clone(), vd[1].clone()],
    })
}

fn layer_norm(inputs: &[&Fact]) -> Result<Fact, InferError> {
    let d = Some(last_dim(inputs, 0, "x")?);
    expect(inputs, 1, "weight", std::slice::from_ref(&d))?;
    expect(inputs, 2, "bias", &[d])?;
    Ok(inputs[0].clone())
}

fn linear(inputs: &[&Fact], bias: bool) -> Result<Fact, InferError> {
    let d_in = Some(last_dim(inputs, 0, "x")?);
    let w = expect(inputs, 1, "weight [out, in]", &[None, d_in])?;
    if bias {
        expect(inputs, 2, "bias [out]", &[Some(w[0].clone())])?;
    }
    Ok(with_last(inputs[0], w[0].clone()))
}

fn with_last(f: &Fact, last: Dim) -> Fact {
    let mut shape = f.shape.clone();
    if let Some(l) = shape.last_mut() {
        *l = last;
    }
    Fact {
        dtype: f.dtype,
        shape,
    }
}

fn same_shape(inputs: &[&Fact]) -> Result<Fact, InferError> {
    let want: Vec<Option<Dim>> = inputs[0].shape.iter().cloned().map(Some).collect();
    expect(inputs, 1, "b (same shape as a)", &want)?;
    Ok(inputs[0].clone())
}

fn softmax(x: &Fact, axis: i64) -> Result<Fact, InferError> {
    let rank = x.shape.len() as i64;
    match axis >= -rank && axis < rank {
        true => Ok(x.clone()),
        false => Err(attr(
            "axis",
            format!("axis {axis} out of range for rank {rank}"),
        )),
    }
}

fn concat_seq(inputs: &[&Fact]) -> Result<Fact, InferError> {
    let b = expect(inputs, 1, "b [B, T, D]", &[None, None, None])?;
    let a = expect(
        inputs,
        0,
        "a [B, M, D]",
        &[Some(b[0].clone()), None, Some(b[2].clone())],
    )?;
    Ok(Fact {
        dtype: inputs[1].dtype,
        shape: vec![b[0].clone(), dim_sum(&a[1], &b[1]), b[2].clone()],
    })
}

fn dense_ffn(inputs: &[&Fact]) -> Result<Fact, InferError> {
    let d = Some(last_dim(inputs, 0, "x")?);
    let w1 = expect(inputs, 1, "w1 [d_ff, D]", &[None, d.clone()])?;
    let ff = Some(w1[0].clone());
    expect(inputs, 2, "b1 [d_ff]", std::slice::from_ref(&ff))?;
    expect(inputs, 3, "w2 [D, d_ff]", &[d.clone(), ff])?;
    expect(inputs, 4, "b2 [D]", &[d])?;
    Ok(inputs[0].clone())
}

fn moe_attention(a: &MoeAttentionAttrs, inputs: &[&Fact]) -> Result<Fact, InferError> {
    let xq = expect(inputs, 0, "xq [B, T, D]", &[None, None, None])?;
    let d = Some(xq[2].clone());
    expect(
        inputs,
        1,
        "xkv [B, Tk, D]",
        &[Some(xq[0].clone()), None, d.clone()],
    )?;
    let (h, e, dh) = (a.heads, a.experts, a.d_head);
    let proj = [known(h * dh), d.clone()];
    let s = a.slots();
    let blocks = a.merged_blocks();
    match a.merged {
        Merge::All => {
            let same: Vec<_> = xq.iter().cloned().map(Some).collect();
            expect(inputs, 1, "xkv (xq itself)", &same)?;
            let rows = known(blocks.total());
            expect(inputs, s.q, "qkr [2*H*dh + routers, D]", &[rows, d.clone()])?;
        }
        Merge::Sides => {
            let (wq, wk) = blocks.sides();
            expect(inputs, s.q, "qo [H*dh + R_o, D]", &[known(wq), d.clone()])?;
            expect(inputs, s.k, "kv [H*dh + R_v, D]", &[known(wk), d.clone()])?;
        }
        Merge::None => {
            expect(inputs, s.q, "q [H*dh, D]", &proj)?;
            expect(inputs, s.k, "k [H*dh, D]", &proj)?;
        }
    }
    let (sel_v, sel_o) = a.router_rows();
    if a.variant == AttentionVariant::ExpertsVO {
        let v = [known(h * e), d.clone(), known(dh)];
        expect(inputs, s.v, "v [H*E, D, dh]", &v)?;
        let o = [known(h * e), known(dh), d.clone()];
        expect(inputs, s.o, "o [H*E, dh, D]", &o)?;
    } else {
        expect(inputs, s.v, "v [H*dh, D]", &proj)?;
        expect(inputs, s.o, "o [D, H*dh]", &[d.clone(), known(h * dh)])?;
    }
    if let Some(i) = s.sel_v {
        expect(inputs, i, "sel_v [H*E, D]", &[known(sel_v), d.clone()])?;
    }
    if let Some(i) = s.sel_o {
        let what = match a.variant {
            AttentionVariant::Gated => "sel_o [H, D]",
            _ => "sel_o [H*E, D]",
        };
        expect(inputs, i, what, &[known(sel_o), d.clone()])?;
    }
    if let Some(i) = s.pos_to_pk {
        expect(inputs, i, "pos_to_pk [H*dh, D]", &proj)?;
    }
    Ok(inputs[0].clone())
}

fn sigma_moe(a: &SigmaMoeAttrs, inputs: &[&Fact]) -> Result<Fact, InferError> {
    let d = Some(last_dim(inputs, 0, "x")?);
    let (n, g) = (known(a.experts), known(a.expert_size));
    expect(inputs, 1, "router [N_E, D]", &[n.clone(), d.clone()])?;
    expect(
        inputs,
        2,
        "keys [N_E, D, G]",
        &[n.clone(), d.clone(), g.clone()],
    )?;
    expect(inputs, 3, "values [N_E, G, D]", &[n, g, d])?;
    Ok(inputs[0].clone())
}
