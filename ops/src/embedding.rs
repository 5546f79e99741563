//! `Embedding`: token ids -> rows of the table.
//!
//! Inputs: table `[V, D]`, ids (any count). Output `[n, D]`. No scaling.
//! Every id must be in `0..V`; an id outside is an error naming it.

use crate::{OpError, Tensor};

/// Looks up each token id in `table` (`[V, D]`), returning `[ids.len(), D]`.
pub fn embedding(table: &Tensor, ids: &[i64]) -> Result<Tensor, OpError> {
    let vocab = table.shape().first().copied().unwrap_or(0);
    let d = table.last_dim();
    let mut out = Vec::with_capacity(ids.len() * d);
    for &id in ids {
        let row = usize::try_from(id)
            .ok()
            .filter(|&r| r < vocab)
            .ok_or(OpError::Index {
                what: "token id".into(),
                index: id,
                limit: vocab,
            })?;
        out.extend_from_slice(table.row(row));
    }
    Tensor::new(vec![ids.len(), d], out)
}
