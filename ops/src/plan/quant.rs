//! Quantized weights (`i8` / `i4`, format version 3): weight-only, symmetric, per group.
//!
//! A quantized weight holds `count` matrices, each `out` rows of `inp` reduction elements (a
//! rank-2 `[out, in]` weight is one matrix; a rank-3 `[E, in, out]` expert stack is E
//! matrices, each expert's `[out, in]` transpose). Each row is cut into groups of `group`
//! consecutive elements (the last possibly shorter), one f32 scale per group; an element is
//! `q * scale`.
//!
//! Stored bytes, in order: the values of all matrices, row after row (`i8`: one
//! two's-complement byte per element; `i4`: `ceil(inp / 2)` bytes per row, element `2j` in
//! the low nibble of byte `j`, `2j + 1` in the high one, two's complement -8..7, an odd row's
//! last high nibble 0); zero padding to a multiple of 4 bytes; then the little-endian f32
//! scales, row-major `[count, out, ceil(inp / group)]`.
//!
//! [`quantize`] (the compiler's): `i8`: scale = max |w| over the group / 127, q =
//! round-half-away-from-zero(w / scale) clamped to ±127; `i4`: the scale, of a small search,
//! with the least squared error over the group (see `int4_group`), q in -8..=7. An all-zero
//! group has scale 0 and q 0.

use super::{PlanDType, PlanError};

/// Bits per quantized element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantBits {
    Int8,
    Int4,
}

impl QuantBits {
    /// The plan dtype of weights quantized to these bits.
    pub fn dtype(self) -> PlanDType {
        match self {
            QuantBits::Int8 => PlanDType::I8,
            QuantBits::Int4 => PlanDType::I4,
        }
    }

    /// The bits of a quantized plan dtype (None: not quantized).
    pub fn of(dtype: PlanDType) -> Option<QuantBits> {
        match dtype {
            PlanDType::I8 => Some(QuantBits::Int8),
            PlanDType::I4 => Some(QuantBits::Int4),
            _ => None,
        }
    }

    /// The largest |q| [`quantize`] writes.
    pub fn max_q(self) -> i32 {
        match self {
            QuantBits::Int8 => 127,
            QuantBits::Int4 => 7,
        }
    }

    /// Value bytes of one row of `inp` elements.
    fn row_bytes(self, inp: usize) -> usize {
        match self {
            QuantBits::Int8 => inp,
            QuantBits::Int4 => inp.div_ceil(2),
        }
    }
}

/// The matrices of a quantized weight: `count` of `out` rows by `inp` reduction elements,
/// grouped by `group` (>= 1) along each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuantShape {
    pub count: usize,
    pub out: usize,
    pub inp: usize,
    pub group: usize,
}

impl QuantShape {
    /// The quantized matrices of a weight of logical `shape` (`[out, in]`: one; `[E, in,
    /// out]`: E transposes) grouped by `group` (None for other ranks).
    pub fn of(shape: &[usize], group: usize) -> Option<QuantShape> {
        let (count, out, inp) = match *shape {
            [out, inp] => (1, out, inp),
            [e, inp, out] => (e, out, inp),
            _ => return None,
        };
        Some(QuantShape {
            count,
            out,
            inp,
            group,
        })
    }

    /// Scales per row: `ceil(inp / group)` (0 when `group` is 0, which no valid plan has).
    pub fn groups(&self) -> usize {
        match self.group {
            0 => 0,
            g => self.inp.div_ceil(g),
        }
    }

    /// Bytes of all the values (without padding); saturates at `usize::MAX`.
    pub fn value_bytes(&self, bits: QuantBits) -> usize {
        self.checked_value_bytes(bits).unwrap_or(usize::MAX)
    }

    /// Bytes of the whole stored weight (values, padding, scales); saturates at `usize::MAX`.
    pub fn nbytes(&self, bits: QuantBits) -> usize {
        self.checked_nbytes(bits).unwrap_or(usize::MAX)
    }

    /// [`QuantShape::value_bytes`], None on overflow.
    pub fn checked_value_bytes(&self, bits: QuantBits) -> Option<usize> {
        self.count
            .checked_mul(self.out)?
            .checked_mul(bits.row_bytes(self.inp))
    }

    /// [`QuantShape::nbytes`], None on overflow.
    pub fn checked_nbytes(&self, bits: QuantBits) -> Option<usize> {
        let scales = self
            .count
            .checked_mul(self.out)?
            .checked_mul(self.groups())?;
        self.scales_offset(bits)?
            .checked_add(scales.checked_mul(4)?)
    }

    /// Where the scales start: the value bytes rounded up to a multiple of 4.
    fn scales_offset(&self, bits: QuantBits) -> Option<usize> {
        self.checked_value_bytes(bits)?.checked_next_multiple_of(4)
    }

    fn rows(&self) -> usize {
        self.count * self.out
    }
}

/// The stored bytes (module doc) of `w`, row-major `[count, out, inp]`, quantized to `bits`.
/// Panics unless `w.len() == count * out * inp` and `s.group >= 1` (the caller's invariant).
pub fn quantize(bits: QuantBits, w: &[f32], s: QuantShape) -> Vec<u8> {
    assert!(s.group >= 1, "quantization group must be >= 1");
    assert_eq!(w.len(), s.rows() * s.inp, "weight length vs {s:?}");
    let mut values = Vec::with_capacity(s.nbytes(bits));
    let mut scales = Vec::with_capacity(s.rows() * s.groups());
    let (mut q, mut trial) = (vec![0i8; s.inp], vec![0i8; s.group.min(s.inp)]);
    for row in w.chunks_exact(s.inp.max(1)).take(s.rows()) {
        for (src, dst) in row.chunks(s.group).zip(q.chunks_mut(s.group)) {
            scales.push(quantize_group(bits, src, dst, &mut trial[..src.len()]));
        }
        push_row(bits, &q, &mut values);
    }
    values.resize(values.len().next_multiple_of(4), 0);
    scales
        .iter()
        .for_each(|v| values.extend_from_slice(&v.to_le_bytes()));
    values
}

/// Quantizes one group into `q` (`trial`: scratch of the group's length); returns its scale.
fn quantize_group(bits: QuantBits, w: &[f32], q: &mut [i8], trial: &mut [i8]) -> f32 {
    let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        q.fill(0);
        return 0.0;
    }
    match bits {
        QuantBits::Int8 => round_to(w, amax / 127.0, (-127.0, 127.0), q),
        QuantBits::Int4 => int4_group(w, amax, q, trial),
    }
}

/// `q = clamp(round(w / scale))`; returns `scale`.
fn round_to(w: &[f32], scale: f32, (lo, hi): (f32, f32), q: &mut [i8]) -> f32 {
    for (d, &v) in q.iter_mut().zip(w) {
        *d = (v / scale).round().clamp(lo, hi) as i8;
    }
    scale
}

/// Divisors of max |w| tried as int4 scales ([`int4_group`]), 7 first (it wins ties).
const INT4_DIVISORS: [f32; 16] = [
    7.0, 6.5, 6.6, 6.7, 6.8, 6.9, 7.1, 7.2, 7.3, 7.4, 7.5, 7.6, 7.7, 7.8, 7.9, 8.0,
];

/// int4: of the scales max |w| / t (t in [`INT4_DIVISORS`]), each then refit to its rounded
/// values by least squares (`sum(w q) / sum(q^2)`), the one with the smallest squared error
/// over the group, values in -8..=7 (the search of llama.cpp's `make_qx_quants`; with 16
/// levels, plain max/7 rounding leaves a tiny model's bits per byte 4% above f32).
fn int4_group(w: &[f32], amax: f32, q: &mut [i8], trial: &mut [i8]) -> f32 {
    let mut best = (f32::INFINITY, 0f32);
    for t in INT4_DIVISORS {
        round_to(w, amax / t, (-8.0, 7.0), trial);
        let (wq, qq) = w
            .iter()
            .zip(&*trial)
            .fold((0f64, 0f64), |(a, b), (&v, &x)| {
                (a + v as f64 * x as f64, b + (x as f64) * (x as f64))
            });
        if wq <= 0.0 || qq == 0.0 {
            continue;
        }
        let scale = (wq / qq) as f32;
        let err: f32 = w
            .iter()
            .zip(&*trial)
            .map(|(&v, &x)| (v - scale * x as f32).powi(2))
            .sum();
        if err < best.0 {
            best = (err, scale);
            q.copy_from_slice(trial);
        }
    }
    if best.0.is_infinite() {
        return round_to(w, amax / 7.0, (-8.0, 7.0), q);
    }
    best.1
}

fn push_row(bits: QuantBits, q: &[i8], out: &mut Vec<u8>) {
    match bits {
        QuantBits::Int8 => out.extend(q.iter().map(|&v| v as u8)),
        QuantBits::Int4 => out.extend(q.chunks(2).map(|p| {
            let lo = p[0] as u8 & 0x0F;
            let hi = p.get(1).map_or(0, |&v| v as u8 & 0x0F);
            lo | (hi << 4)
        })),
    }
}

/// The values (all matrices' rows, `value_bytes` bytes) and the scales (`[count, out,
/// groups]`) of a stored weight; an error unless `bytes` is exactly `s.nbytes(bits)` long.
pub fn quant_parts(
    bits: QuantBits,
    bytes: &[u8],
    s: QuantShape,
) -> Result<(&[u8], Vec<f32>), PlanError> {
    let bad = |reason: String| Err(PlanError::Quant(reason));
    if s.group == 0 {
        return bad(format!("group 0 of {s:?} (must be >= 1)"));
    }
    let (Some(nbytes), Some(at)) = (s.checked_nbytes(bits), s.scales_offset(bits)) else {
        return bad(format!("{s:?} overflows the address space"));
    };
    if bytes.len() != nbytes {
        return bad(format!(
            "{} bytes for {s:?} as {bits:?}, expected {nbytes}",
            bytes.len()
        ));
    }
    let scales = bytes[at..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((&bytes[..s.value_bytes(bits)], scales))
}

/// The f32 elements, row-major `[count, out, inp]`, of a stored weight (an error unless
/// `bytes` is exactly `s.nbytes(bits)` long).
pub fn dequantize(bits: QuantBits, bytes: &[u8], s: QuantShape) -> Result<Vec<f32>, PlanError> {
    let (values, scales) = quant_parts(bits, bytes, s)?;
    let row_bytes = bits.row_bytes(s.inp);
    let mut w = Vec::with_capacity(s.rows() * s.inp);
    for r in 0..s.rows() {
        let row = &values[r * row_bytes..(r + 1) * row_bytes];
        let row_scales = &scales[r * s.groups()..(r + 1) * s.groups()];
        w.extend((0..s.inp).map(|i| f32::from(element(bits, row, i)) * row_scales[i / s.group]));
    }
    Ok(w)
}

/// Element `i` of a row of stored values.
fn element(bits: QuantBits, row: &[u8], i: usize) -> i8 {
    match bits {
        QuantBits::Int8 => row[i] as i8,
        QuantBits::Int4 => {
            let nibble = (row[i / 2] >> (4 * (i % 2))) & 0x0F;
            ((nibble << 4) as i8) >> 4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(count: usize, out: usize, inp: usize, group: usize) -> QuantShape {
        QuantShape {
            count,
            out,
            inp,
            group,
        }
    }

    #[test]
    fn int4_nibbles_and_padding_where_the_doc_says() {
        // one row of 3: q = [7, -7, 4] with scale 1
        let s = shape(1, 1, 3, 32);
        let b = quantize(QuantBits::Int4, &[7.0, -7.0, 4.0], s);
        assert_eq!(b.len(), s.nbytes(QuantBits::Int4));
        assert_eq!(b.len(), 4 + 4);
        assert_eq!(b[0], 0x97); // low 7, high -7 = 0x9
        assert_eq!(b[1], 0x04); // odd row: high nibble 0
        assert_eq!(&b[2..4], &[0, 0]);
        assert_eq!(f32::from_le_bytes([b[4], b[5], b[6], b[7]]), 1.0);
    }

    #[test]
    fn int8_rounds_half_away_from_zero() {
        // scale 1: 2.5 -> 3, -2.5 -> -3
        let w = [127.0, 2.5, -2.5, 0.4];
        let b = quantize(QuantBits::Int8, &w, shape(1, 1, 4, 4));
        assert_eq!(&b[..4], &[127u8, 3, (-3i8) as u8, 0]);
    }
}
