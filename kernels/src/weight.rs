//! Weight operands of the kernels: f32 elements in a plan layout, or a [`PackedWeight`]
//! (int8, int4 or bf16 in the quantized kernels' own layout).
//!
//! Every projection, expert stack and router reaches the kernels as a [`WeightRef`]: the
//! products below pick the f32 GEMM for the first and [`crate::quant`]'s kernels for the
//! second, so the ops are written once for every weight format.

use std::ops::Range;

use switchhead_ops::plan::PANEL;

use crate::KernelError;
use crate::error::check_len;
use crate::gemm::{Mat, Start, gemm, panels_gemm};
use crate::quant::{PackedWeight, packed_gemm};

/// Element order of an `[out, in]` projection weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightLayout {
    /// Row-major, as in the checkpoint.
    #[default]
    RowMajor,
    /// The plan format's `panels` layout (`switchhead_ops::plan::to_panels`).
    Panels,
}

impl WeightLayout {
    /// Stored elements of an `[out, in]` weight.
    pub fn stored_len(self, out: usize, inp: usize) -> usize {
        match self {
            WeightLayout::RowMajor => out * inp,
            WeightLayout::Panels => out.div_ceil(PANEL) * PANEL * inp,
        }
    }
}

/// A weight as a kernel takes it: `count` matrices (1 for a projection, E for an expert
/// stack), each applied as `x @ W^T` for a logical `[out, in]` W.
///
/// F32 projections are `[out, in]` in their layout; f32 expert stacks are `[E, in, out]`
/// row-major or `expert_panels` (each expert the `panels` layout of its transpose). A packed
/// weight holds either kind as `count` `[out, in]` matrices.
#[derive(Debug, Clone, Copy)]
pub enum WeightRef<'a> {
    F32(&'a [f32], WeightLayout),
    Packed(&'a PackedWeight),
}

impl<'a> WeightRef<'a> {
    /// A row-major f32 weight.
    pub fn row_major(data: &'a [f32]) -> Self {
        WeightRef::F32(data, WeightLayout::RowMajor)
    }

    /// Checks that this holds `count` matrices of `out` x `inp` (`what` names the operand).
    pub(crate) fn check(
        self,
        what: &'static str,
        count: usize,
        out: usize,
        inp: usize,
    ) -> Result<(), KernelError> {
        match self {
            WeightRef::F32(data, layout) => {
                check_len(what, data, count * layout.stored_len(out, inp))
            }
            WeightRef::Packed(p) if (p.count(), p.out(), p.inp()) == (count, out, inp) => Ok(()),
            WeightRef::Packed(p) => Err(KernelError::Shape {
                what,
                expected: format!("{count} matrices of [{out}, {inp}]"),
                got: format!("{} of [{}, {}]", p.count(), p.out(), p.inp()),
            }),
        }
    }

    /// The address and size of what this refers to: identifies the weight for caches.
    pub(crate) fn identity(self) -> (usize, usize, bool) {
        match self {
            WeightRef::F32(d, l) => (d.as_ptr() as usize, d.len(), l == WeightLayout::Panels),
            WeightRef::Packed(p) => (std::ptr::from_ref(p) as usize, p.bytes(), true),
        }
    }
}

/// One `[out, in]` matrix of a [`WeightRef`] (projections: the only one; expert stacks:
/// expert `m`), restricted to output columns `c0 .. c0 + out`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Weight<'a> {
    pub w: WeightRef<'a>,
    /// Which matrix of a packed stack.
    pub m: usize,
    /// First output column (a multiple of [`PANEL`]).
    pub c0: usize,
    pub out: usize,
    pub inp: usize,
}

impl<'a> Weight<'a> {
    /// A projection `[out, inp]`.
    pub fn projection(w: WeightRef<'a>, out: usize, inp: usize) -> Self {
        Weight {
            w,
            m: 0,
            c0: 0,
            out,
            inp,
        }
    }

    /// Output columns `c0..c0+n` of this view (`c0` a multiple of [`PANEL`]).
    pub fn cols(self, c0: usize, n: usize) -> Weight<'a> {
        Weight {
            c0: self.c0 + c0,
            out: n,
            ..self
        }
    }

    /// `y = x @ w^T (+ bias)` on the rows of `x`, `y` at row stride `ldy` (overwritten).
    pub fn product(self, x: Mat<'_>, y: &mut [f32], ldy: usize, bias: Option<&[f32]>) {
        let start = bias.map_or(Start::Beta(0.0), Start::Bias);
        self.product_with(x, y, ldy, start);
    }

    /// `y = x @ w^T` started as `start` says.
    pub fn product_with(self, x: Mat<'_>, y: &mut [f32], ldy: usize, start: Start<'_>) {
        let (c0, inp) = (self.c0, self.inp);
        match self.w {
            WeightRef::F32(data, WeightLayout::RowMajor) => {
                let beta = start.written_into(y, ldy, self.out, x.rows);
                let data = &data[c0 * inp..(c0 + self.out) * inp];
                let wt = Mat::rows(data, self.out, inp).t();
                gemm(x, wt, y, ldy, beta);
            }
            WeightRef::F32(data, WeightLayout::Panels) => {
                panels_gemm(x, &data[c0 * inp..], self.out, y, ldy, start)
            }
            WeightRef::Packed(p) => packed_gemm(x, p, self.m, self.range(), y, ldy, start),
        }
    }

    fn range(self) -> Range<usize> {
        self.c0..self.c0 + self.out
    }
}
