//! Positional encodings: a RoPE cos/sin table and the Transformer-XL position keys.
//!
//! Both reproduce `switchhead_ops::rope` / `switchhead_ops::xl_pos` exactly: the same f64
//! angles and the same rounding points; only the position-key product accumulates in f32.

use std::sync::{Arc, Mutex};

use crate::KernelError;
use crate::linear::project_rows;
use crate::weight::WeightRef;

/// cos/sin of `pos * inv_freq[i]` for positions `0..n`, `[n, n_rot/2]`.
pub(crate) struct RopeTable {
    half: usize,
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl RopeTable {
    /// Table for `positions` positions; errors as the reference on an odd or empty n_rot.
    pub fn new(
        d_head: usize,
        fraction: f64,
        base: f64,
        positions: usize,
    ) -> Result<Self, KernelError> {
        let rope = switchhead_ops::rope::Rope::new(d_head, fraction, base)
            .map_err(|e| KernelError::attr("MoEAttention", "rotate_fraction", e.to_string()))?;
        let n_rot = rope.n_rot();
        let half = n_rot / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| base.powf(-(2.0 * i as f64) / n_rot as f64))
            .collect();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for &f in &inv_freq {
                let (s, c) = (p as f64 * f).sin_cos();
                sin.push(s);
                cos.push(c);
            }
        }
        Ok(RopeTable { half, cos, sin })
    }

    /// The table for at least `positions` positions, shared: every layer of a model and every
    /// decode step asks for the same angles, and recomputing them (a sin and a cos per
    /// position and frequency) was a tenth of a decode step. Kept per (d_head, fraction, base)
    /// of the last request, grown by doubling; entries do not depend on the table's length.
    pub fn shared(
        d_head: usize,
        fraction: f64,
        base: f64,
        positions: usize,
    ) -> Result<Arc<Self>, KernelError> {
        type Cache = Option<((usize, u64, u64), Arc<RopeTable>)>;
        static LAST: Mutex<Cache> = Mutex::new(None);
        let key = (d_head, fraction.to_bits(), base.to_bits());
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, table)) = last.as_ref()
            && *k == key
            && table.positions() >= positions
        {
            return Ok(Arc::clone(table));
        }
        let grown = last
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map_or(positions, |(_, t)| positions.max(2 * t.positions()));
        let table = Arc::new(RopeTable::new(d_head, fraction, base, grown)?);
        *last = Some((key, Arc::clone(&table)));
        Ok(table)
    }

    fn positions(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    /// Rotates one head vector for position `pos` (the reference's half-split rotation).
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let h = self.half;
        let (cos, sin) = (
            &self.cos[pos * h..(pos + 1) * h],
            &self.sin[pos * h..(pos + 1) * h],
        );
        for i in 0..h {
            let (a, b) = (x[i] as f64, x[i + h] as f64);
            x[i] = (a * cos[i] - b * sin[i]) as f32;
            x[i + h] = (b * cos[i] + a * sin[i]) as f32;
        }
    }

    /// Rotates every head (`dh` wide) of each row; row r has position `pos(r)`.
    pub fn rotate_rows<'a>(
        &self,
        rows: impl Iterator<Item = &'a mut [f32]>,
        dh: usize,
        pos: impl Fn(usize) -> usize,
    ) {
        for (r, row) in rows.enumerate() {
            let p = pos(r);
            row.chunks_exact_mut(dh)
                .for_each(|head| self.apply(head, p));
        }
    }
}

/// One XL layer's position keys, kept between calls. They depend only on the layer's
/// `pos_to_pk`, the scale and the key count, so a session that keeps one of these per layer
/// computes them once per key count (in an evaluation over equal chunks: twice, without and
/// with memory) instead of on every forward pass, where they were about 6% of
/// `switchall-259m`'s time at seq 512. Holds the last table asked for; a call with other
/// weights or sizes replaces it.
#[derive(Debug, Default)]
pub struct PositionKeyCache {
    last: Mutex<Option<(PosKey, Arc<Vec<f32>>)>>,
}

/// What a cached table was computed from: the weight's address, size and form (the cache
/// belongs to one layer; these guard against its reuse with other weights), the sizes and
/// the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PosKey {
    weight: (usize, usize, bool),
    hd: usize,
    d: usize,
    scale: u64,
    range: (i64, i64),
}

impl PositionKeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`xl_position_keys`], from the cache when the last call had the same inputs.
    pub(crate) fn keys(
        &self,
        w_pk: WeightRef<'_>,
        hd: usize,
        d: usize,
        scale: f64,
        range: (i64, i64),
        threads: usize,
    ) -> Result<Arc<Vec<f32>>, KernelError> {
        let key = PosKey {
            weight: w_pk.identity(),
            hd,
            d,
            scale: scale.to_bits(),
            range,
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, table)) = last.as_ref()
            && *k == key
        {
            return Ok(Arc::clone(table));
        }
        let table = Arc::new(xl_position_keys(w_pk, hd, d, scale, range, threads)?);
        *last = Some((key, Arc::clone(&table)));
        Ok(table)
    }
}

/// Position keys `Kp(p) = (s * pe(p)) @ Wpk^T` for p in `lo..=hi`: `[hi-lo+1, H*dh]`.
pub(crate) fn xl_position_keys(
    w_pk: WeightRef<'_>,
    hd: usize,
    d: usize,
    scale: f64,
    (lo, hi): (i64, i64),
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    if !d.is_multiple_of(2) {
        let reason = format!("the interleaved XL sinusoid needs an even d_model, got {d}");
        return Err(KernelError::attr("MoEAttention", "pos", reason));
    }
    let pe = scaled_sinusoids(lo, hi, d, scale);
    Ok(project_rows(&pe[..], d, w_pk, hd, threads))
}

/// `s * pe(p)` for p in `lo..=hi`, `[n, d]`. Every layer of a model (and every chunk of the
/// same length) asks for the same table, so the last one is kept: the sin/cos/pow it costs
/// is otherwise a sizeable share of an XL forward pass at small batch.
fn scaled_sinusoids(lo: i64, hi: i64, d: usize, scale: f64) -> Arc<Vec<f32>> {
    type Cache = Option<((i64, i64, usize, u64), Arc<Vec<f32>>)>;
    static LAST: Mutex<Cache> = Mutex::new(None);
    let key = (lo, hi, d, scale.to_bits());
    if let Ok(last) = LAST.lock()
        && let Some((k, table)) = last.as_ref()
        && *k == key
    {
        return Arc::clone(table);
    }
    let mut pe = Vec::with_capacity(usize::try_from(hi - lo + 1).unwrap_or(0) * d);
    for p in lo..=hi {
        let row = switchhead_ops::xl_pos::sinusoid(p, d);
        pe.extend(row.iter().map(|&v| (v as f64 * scale) as f32));
    }
    let table = Arc::new(pe);
    if let Ok(mut last) = LAST.lock() {
        *last = Some((key, Arc::clone(&table)));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache gives what a fresh computation gives, hands back the same table while the
    /// inputs stay the same, and recomputes when the key count or the weight changes.
    #[test]
    fn position_key_cache_hits_and_replaces() {
        let (hd, d) = (6, 8);
        let w: Vec<f32> = (0..hd * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let other: Vec<f32> = w.iter().map(|v| v * 2.0).collect();
        let fresh = |w: &[f32], lo| {
            xl_position_keys(WeightRef::row_major(w), hd, d, 0.5, (lo, 0), 1).expect("even d")
        };
        let cache = PositionKeyCache::new();
        let get = |w: &[f32], lo| {
            cache
                .keys(WeightRef::row_major(w), hd, d, 0.5, (lo, 0), 1)
                .expect("even d")
        };
        let a = get(&w, -9);
        assert_eq!(*a, fresh(&w, -9));
        assert!(Arc::ptr_eq(&a, &get(&w, -9)), "same inputs: the kept table");
        let b = get(&w, -4);
        assert_eq!(*b, fresh(&w, -4));
        assert!(
            !Arc::ptr_eq(&b, &get(&w, -9)),
            "another key count: recomputed"
        );
        assert_eq!(
            *get(&other, -9),
            fresh(&other, -9),
            "other weights: recomputed"
        );
    }
}
