//! A safe strided f32 matrix product over slices.
//!
//! Uses `matrixmultiply` (small, dependency-free, runtime AVX/FMA dispatch, the GEMM ndarray
//! uses): our products are plain row-major sgemm calls on gathered blocks, and tract-linalg's
//! packed-operand API is built for its own plans rather than ad-hoc calls like these.

/// A read-only strided matrix view: element (i, j) is `data[i*rs + j*cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (a view, nothing moves).
    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Rows `r0..r0+n` of the matrix.
    pub fn row_range(self, r0: usize, n: usize) -> Self {
        let start = (r0 * self.rs).min(self.data.len());
        Mat {
            data: &self.data[start..],
            rows: n,
            ..self
        }
    }

    /// Columns `c0..c0+n`.
    pub fn col_range(self, c0: usize, n: usize) -> Self {
        let start = (c0 * self.cs).min(self.data.len());
        Mat {
            data: &self.data[start..],
            cols: n,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `c = a @ b + beta * c`, `c` row-major `[a.rows, b.cols]` with row stride `ldc`.
///
/// Shapes are the callers' invariants (validated at the kernel entry points); a mismatch is a
/// bug and panics rather than reading out of bounds.
pub(crate) fn gemm(a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, beta: f32) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(a.fits() && b.fits() && b.rows == k, "gemm operand shapes");
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "gemm output shape");
    if k == 0 {
        c.iter_mut().for_each(|v| *v *= beta);
        return;
    }
    // SAFETY: every index the product touches is inside the slices (checked just above); the
    // output does not alias the inputs (distinct borrows).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}
