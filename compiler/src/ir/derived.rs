//! Derived weights: weights a pass computes from other weights at compile time.
//!
//! The IR holds no tensor bytes, so a pass that changes weights (folding LayerNorm's affine
//! parameters into the projections after it) adds a new named weight and records how to
//! compute it from existing ones in [`Graph::derived`]. The text form prints the recipe after
//! the weight (`%7 = weight f32[256,72] @ "w.fold" = scale_inputs("w", "norm.weight")`) and
//! parses it back; emission calls [`materialize`] to compute the tensors.

use std::fmt;

use switchhead_ops::Tensor;

use super::graph::{Dim, Fact, Graph, ValueDef};
use crate::error::ImportError;
use crate::model::{DType, TensorInfo, Weights};

/// How a derived weight is computed from named weights.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    /// `weight[o, i] * gain[i]` for an `[out, in]` weight (a gain folded into its input side).
    ScaleInputs { weight: String, gain: String },
    /// `bias[o] + sum_i weight[o, i] * shift[i]` (a shift of the input folded into the bias).
    ShiftBias {
        weight: String,
        shift: String,
        bias: String,
    },
    /// `len` copies of `value`.
    Fill { value: f32, len: usize },
    /// The rows of `[rows_i, in]` weights stacked in order (projections merged into one).
    ConcatRows { parts: Vec<String> },
}

impl fmt::Display for Recipe {
    /// The text form: `scale_inputs("w", "g")`, `shift_bias("w", "s", "b")`, `fill(1.0, 72)`,
    /// `concat_rows("q", "k")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipe::ScaleInputs { weight, gain } => write!(f, "scale_inputs({weight:?}, {gain:?})"),
            Recipe::ShiftBias {
                weight,
                shift,
                bias,
            } => write!(f, "shift_bias({weight:?}, {shift:?}, {bias:?})"),
            Recipe::Fill { value, len } => write!(f, "fill({value:?}, {len})"),
            Recipe::ConcatRows { parts } => {
                let parts: Vec<String> = parts.iter().map(|p| format!("{p:?}")).collect();
                write!(f, "concat_rows({})", parts.join(", "))
            }
        }
    }
}

impl Recipe {
    /// Computes the weight `name` from `weights`.
    pub fn compute(&self, name: &str, weights: &Weights) -> Result<Tensor, ImportError> {
        let bad = |reason: String| ImportError::Corrupt {
            path: format!("derived weight {name:?}").into(),
            reason,
        };
        match self {
            Recipe::ScaleInputs { weight, gain } => {
                let (w, g) = (weights.tensor(weight)?, weights.tensor(gain)?);
                let (out, inp) = matrix(&w, weight).map_err(bad)?;
                check_vector(g.shape(), inp, gain).map_err(bad)?;
                let data = w
                    .data()
                    .chunks_exact(inp.max(1))
                    .flat_map(|row| row.iter().zip(g.data()).map(|(a, b)| a * b))
                    .collect();
                Tensor::new(vec![out, inp], data).map_err(|e| bad(e.to_string()))
            }
            Recipe::ShiftBias {
                weight,
                shift,
                bias,
            } => {
                let w = weights.tensor(weight)?;
                let (s, b) = (weights.tensor(shift)?, weights.tensor(bias)?);
                let (out, inp) = matrix(&w, weight).map_err(bad)?;
                check_vector(s.shape(), inp, shift).map_err(bad)?;
                check_vector(b.shape(), out, bias).map_err(bad)?;
                let data = w
                    .data()
                    .chunks_exact(inp.max(1))
                    .zip(b.data())
                    .map(|(row, &b)| {
                        let dot: f64 = row
                            .iter()
                            .zip(s.data())
                            .map(|(&a, &x)| a as f64 * x as f64)
                            .sum();
                        (b as f64 + dot) as f32
                    })
                    .collect();
                Tensor::new(vec![out], data).map_err(|e| bad(e.to_string()))
            }
            Recipe::Fill { value, len } => {
                Tensor::new(vec![*len], vec![*value; *len]).map_err(|e| bad(e.to_string()))
            }
            Recipe::ConcatRows { parts } => {
                let (mut rows, mut width, mut data) = (0, None, Vec::new());
                for part in parts {
                    let t = weights.tensor(part)?;
                    let (out, inp) = matrix(&t, part).map_err(bad)?;
                    let first = *width.get_or_insert(inp);
                    if first != inp {
                        let reason =
                            format!("{part} has {inp} columns, the parts before it {first}");
                        return Err(bad(reason));
                    }
                    rows += out;
                    data.extend_from_slice(t.data());
                }
                let shape = vec![rows, width.unwrap_or(0)];
                Tensor::new(shape, data).map_err(|e| bad(e.to_string()))
            }
        }
    }
}

/// The computed shape must be the one the graph declares for the weight.
fn check_fact(name: &str, fact: Option<&Fact>, shape: &[usize]) -> Result<(), ImportError> {
    let declared: Option<Vec<usize>> = fact.map(|f| {
        f.shape
            .iter()
            .map(|d| match d {
                Dim::Known(n) => *n,
                Dim::Sym(_) => usize::MAX,
            })
            .collect()
    });
    match declared {
        Some(dims) if dims != shape => Err(ImportError::Corrupt {
            path: format!("derived weight {name:?}").into(),
            reason: format!("its recipe gives shape {shape:?}, the graph declares {dims:?}"),
        }),
        _ => Ok(()),
    }
}

/// `(out, in)` of an `[out, in]` weight.
fn matrix(w: &Tensor, name: &str) -> Result<(usize, usize), String> {
    match w.shape() {
        &[out, inp] => Ok((out, inp)),
        shape => Err(format!("{name} has shape {shape:?}, not [out, in]")),
    }
}

fn check_vector(shape: &[usize], len: usize, name: &str) -> Result<(), String> {
    match shape {
        [n] if *n == len => Ok(()),
        _ => Err(format!("{name} has shape {shape:?}, expected [{len}]")),
    }
}

/// `weights` plus every derived weight that `g` reads and `weights` lacks, computed (the
/// originals are shared, not copied). Without derived weights this is a cheap clone.
pub fn materialize(g: &Graph, weights: &Weights) -> Result<Weights, ImportError> {
    let mut out = weights.clone();
    for v in &g.values {
        let ValueDef::Weight(name) = &v.def else {
            continue;
        };
        let Some(recipe) = g.derived.get(name) else {
            continue;
        };
        if weights.info(name).is_some() {
            continue;
        }
        let t = recipe.compute(name, weights)?;
        check_fact(name, v.fact.as_ref(), t.shape())?;
        let info = TensorInfo {
            dtype: DType::F32,
            shape: t.shape().to_vec(),
        };
        out.insert_owned(name.clone(), name.clone(), info, t.into_data());
    }
    Ok(out)
}
