//! Device tensors of a pass and the small helpers every op uses: allocate an activation,
//! run a plain product against a weight.

use std::sync::Arc;

use switchhead_kernels::gpu::launch::W;
use switchhead_kernels::gpu::{Device, Gemm, GpuError};

use super::weights::DevWeight;

/// An f32 activation on the device: a shared buffer and its shape (row-major).
#[derive(Debug)]
pub(crate) struct Tensor<B> {
    pub buf: Arc<B>,
    pub shape: Vec<usize>,
}

impl<B> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Tensor {
            buf: Arc::clone(&self.buf),
            shape: self.shape.clone(),
        }
    }
}

impl<B> Tensor<B> {
    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The last dimension.
    pub fn last(&self) -> usize {
        self.shape.last().copied().unwrap_or(0)
    }

    /// Rows: every dimension but the last.
    pub fn rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)]
            .iter()
            .product()
    }
}

/// A zeroed activation of `shape`.
pub(crate) fn zeros<D: Device>(dev: &D, shape: Vec<usize>) -> Result<Tensor<D::Buffer>, GpuError> {
    let n: usize = shape.iter().product();
    Ok(Tensor {
        buf: Arc::new(dev.alloc_zeroed(n * 4)?),
        shape,
    })
}

/// A weight as a kernel operand.
pub(crate) fn w<B>(w: &DevWeight<B>) -> W<'_, B> {
    W {
        buf: &w.buf,
        wtype: w.wtype,
    }
}

/// `y[rows, ldy]` from column `y_col`: `alpha * x[rows, k] @ w^T` for a `[n, k]` weight.
pub(crate) fn product<D: Device>(
    dev: &D,
    (x, rows, k): (&D::Buffer, usize, usize),
    weight: &DevWeight<D::Buffer>,
    (y, ldy, y_col): (&D::Buffer, usize, usize),
    alpha: f32,
) -> Result<(), GpuError> {
    let n = weight.shape.first().copied().unwrap_or(0);
    if weight.shape.get(1) != Some(&k) {
        let reason = format!("a [{n}, {k}] weight, got {:?}", weight.shape);
        return Err(GpuError::shape("gemm", reason));
    }
    dev.gemm(&Gemm {
        m: rows,
        n,
        k,
        x,
        x_off: 0,
        ldx: k,
        w: &weight.buf,
        w_off: 0,
        w_type: weight.wtype,
        y,
        y_off: y_col,
        ldy,
        alpha,
        beta: 0.0,
    })
}

/// A new `[rows, n]` activation `alpha * x @ w^T` (shape: x's with the last dim `n`).
pub(crate) fn project<D: Device>(
    dev: &D,
    x: &Tensor<D::Buffer>,
    weight: &DevWeight<D::Buffer>,
    alpha: f32,
) -> Result<Tensor<D::Buffer>, GpuError> {
    let n = weight.shape.first().copied().unwrap_or(0);
    let mut shape = x.shape.clone();
    if let Some(l) = shape.last_mut() {
        *l = n;
    }
    let y = zeros(dev, shape)?;
    product(
        dev,
        (&x.buf, x.rows(), x.last()),
        weight,
        (&y.buf, n, 0),
        alpha,
    )?;
    Ok(y)
}
