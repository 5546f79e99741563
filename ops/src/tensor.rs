//! A plain, owned, row-major f32 tensor: the currency of the reference implementations.
//!
//! Invariant: `data.len() == shape.iter().product()`. Constructors check it.

use crate::OpError;

/// Row-major f32 tensor with an explicit shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data` with `shape`; errors if the element count differs.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, OpError> {
        let want: usize = shape.iter().product();
        if want != data.len() {
            return Err(OpError::Shape {
                what: "tensor data".into(),
                expected: format!("{want} elements for shape {shape:?}"),
                got: format!("{} elements", data.len()),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; n],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Same elements, new shape with the same element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Self, OpError> {
        Tensor::new(shape, self.data)
    }

    /// Row `i` of a tensor viewed as `[rows, last_dim]`.
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.last_dim();
        &self.data[i * d..(i + 1) * d]
    }

    /// Size of the last axis (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Number of rows when viewed as `[rows, last_dim]`.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.last_dim()).unwrap_or(0)
    }

    /// Checks that the shape equals `expected`, naming `what` in the error.
    pub fn expect_shape(&self, what: &str, expected: &[usize]) -> Result<(), OpError> {
        if self.shape == expected {
            return Ok(());
        }
        Err(OpError::Shape {
            what: what.into(),
            expected: format!("{expected:?}"),
            got: format!("{:?}", self.shape),
        })
    }
}
