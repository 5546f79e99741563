//! Helpers shared by the kernel pairing tests.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use switchhead_ops::Tensor;

/// A seeded generator.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in `(-scale, scale)`.
pub fn random(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::new(shape.to_vec(), data).expect("shape")
}

/// `|a - b| <= tol * max|b|` element-wise (relative to the output's scale).
pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "element {i}: got {g}, want {w} (scale {scale})"
        );
    }
}

/// `w` (a projection `[out, in]` or an expert stack `[E, in, out]`) quantized to `bits`
/// (int4 in groups of `group`) as the plan stores it, packed for the kernels; and the f32
/// weight it stands for, in `w`'s own shape (what the f32 kernels get to compare).
pub fn packed(
    bits: switchhead_ops::plan::QuantBits,
    w: &Tensor,
    group: usize,
) -> (switchhead_kernels::quant::PackedWeight, Tensor) {
    use switchhead_kernels::quant::PackedWeight;
    use switchhead_ops::plan::{QuantBits, QuantShape, dequantize, quant_parts, quantize};
    let shape = w.shape();
    let stack = shape.len() == 3;
    let s = QuantShape::of(
        shape,
        if bits == QuantBits::Int8 {
            shape[shape.len() - 1 - usize::from(stack)]
        } else {
            group
        },
    )
    .expect("rank 2 or 3");
    let rows = match stack {
        true => transpose(w.data(), s.count, s.inp, s.out),
        false => w.data().to_vec(),
    };
    let bytes = quantize(bits, &rows, s);
    let (values, scales) = quant_parts(bits, &bytes, s).expect("own bytes");
    let p = match bits {
        QuantBits::Int8 => PackedWeight::from_int8(values, &scales, s.count, s.out, s.inp),
        QuantBits::Int4 => PackedWeight::from_int4(values, &scales, s.count, s.out, s.inp, group),
    }
    .expect("pack");
    let f = dequantize(bits, &bytes, s).expect("own bytes");
    let f = match stack {
        true => transpose(&f, s.count, s.out, s.inp),
        false => f,
    };
    (p, Tensor::new(shape.to_vec(), f).expect("shape"))
}

/// `[e, a, b]` row-major to `[e, b, a]`.
pub fn transpose(w: &[f32], e: usize, a: usize, b: usize) -> Vec<f32> {
    let mut t = vec![0f32; e * a * b];
    for m in 0..e {
        for i in 0..a {
            for j in 0..b {
                t[(m * b + j) * a + i] = w[(m * a + i) * b + j];
            }
        }
    }
    t
}
