//! Every path this CPU runs against an f32 product with the weights `dequantize` returns
//! (exactly what the kernels see), on odd shapes, column ranges, both starts and a matrix
//! other than the first; and `dequantize` against the plan's values times scales.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dispatch::{Path, gemm_on, runnable};
use super::{PackedKind, PackedWeight};
use crate::gemm::{Mat, Start};

/// Roughly normal values (a sum of uniforms), scaled.
fn normal(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * scale)
        .collect()
}

/// The plan's symmetric quantization of `w` (`[rows, inp]`) in groups of `group`: the
/// values (`q` per element), the scales and the dequantized weights.
fn quantize(w: &[f32], inp: usize, group: usize, qmax: f32) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
    let (mut q, mut scales, mut deq) = (Vec::new(), Vec::new(), Vec::new());
    for row in w.chunks_exact(inp) {
        for g in row.chunks(group) {
            let max = g.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = max / qmax;
            scales.push(s);
            for &v in g {
                let qv = if s == 0.0 {
                    0.0
                } else {
                    (v / s).round().clamp(-qmax, qmax)
                };
                q.push(qv as i8);
                deq.push(qv * s);
            }
        }
    }
    (q, scales, deq)
}

/// int4 values in the plan's bytes: per row, element 2j in the low nibble of byte j.
fn nibbles(q: &[i8], inp: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for row in q.chunks_exact(inp) {
        for pair in row.chunks(2) {
            let lo = pair[0] as u8 & 0xf;
            let hi = pair.get(1).map_or(0, |&v| v as u8 & 0xf);
            bytes.push(lo | (hi << 4));
        }
    }
    bytes
}

/// A packed weight of `kind` from `w` (`[count * out, inp]`) and what it should dequantize to.
fn pack(
    kind: PackedKind,
    w: &[f32],
    (count, out, inp): (usize, usize, usize),
) -> (PackedWeight, Vec<f32>) {
    match kind {
        PackedKind::Int8 => {
            let (q, s, deq) = quantize(w, inp, inp, 127.0);
            let bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
            (
                PackedWeight::from_int8(&bytes, &s, count, out, inp).expect("int8 shapes"),
                deq,
            )
        }
        PackedKind::Int4 { group } => {
            let (q, s, deq) = quantize(w, inp, group, 7.0);
            let bytes = nibbles(&q, inp);
            let p = PackedWeight::from_int4(&bytes, &s, count, out, inp, group);
            (p.expect("int4 shapes"), deq)
        }
        PackedKind::Bf16 => {
            let bits: Vec<u16> = w.iter().map(|v| (v.to_bits() >> 16) as u16).collect();
            let deq = bits
                .iter()
                .map(|&b| f32::from_bits(u32::from(b) << 16))
                .collect();
            (
                PackedWeight::from_bf16(&bits, count, out, inp).expect("bf16 shapes"),
                deq,
            )
        }
    }
}

const KINDS: [PackedKind; 6] = [
    PackedKind::Int8,
    PackedKind::Int4 { group: 32 },
    PackedKind::Int4 { group: 64 },
    PackedKind::Int4 { group: 128 },
    PackedKind::Int4 { group: 7 },
    PackedKind::Bf16,
];

/// `dequantize` gives back exactly the values times the scales of the plan's bytes.
#[test]
fn dequantize_round_trips() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (count, out, inp) in [
        (1, 1, 1),
        (3, 7, 5),
        (2, 33, 37),
        (3, 100, 412),
        (1, 70, 1000),
    ] {
        let w = normal(&mut rng, count * out * inp, 0.1);
        for kind in KINDS {
            let (p, deq) = pack(kind, &w, (count, out, inp));
            assert_eq!(
                (p.kind(), p.count(), p.out(), p.inp()),
                (kind, count, out, inp)
            );
            assert!(
                p.bytes() >= count * out * inp / 2,
                "{kind:?} bytes {}",
                p.bytes()
            );
            for m in 0..count {
                let got = p.dequantize(m);
                let want = &deq[m * out * inp..(m + 1) * out * inp];
                // == rather than bits: the local quantizer's q = round(-0.3) is -0.0
                let same = got.iter().zip(want).all(|(x, y)| x == y);
                assert!(same, "{kind:?} {count}x{out}x{inp} matrix {m}");
            }
        }
    }
}

/// Wrong lengths and a zero group are errors that name the operand.
#[test]
fn bad_shapes_are_errors() {
    let err = PackedWeight::from_int8(&[0; 5], &[1.0; 2], 1, 2, 3).expect_err("short values");
    assert!(err.to_string().contains("int8 weight values"), "{err}");
    let err = PackedWeight::from_int4(&[0; 4], &[1.0; 1], 1, 2, 3, 2).expect_err("short scales");
    assert!(err.to_string().contains("int4 weight scales"), "{err}");
    assert!(PackedWeight::from_int4(&[0; 4], &[1.0; 4], 1, 2, 3, 0).is_err());
    assert!(PackedWeight::from_bf16(&[0; 5], 1, 2, 3).is_err());
}

/// The tolerance of a path, relative to the largest output magnitude.
fn tolerance(path: Path) -> f32 {
    match path {
        // activations quantized to 8 bits / rounded to bf16
        Path::Vnni | Path::Bf16 => 1e-2,
        Path::Avx512F | Path::Portable => 1e-5,
    }
}

/// The f32 product the kernels should match: `c0` started as asked, plus `a @ w^T` over
/// columns `cols` of the `[out, inp]` weight `w`.
fn reference(
    a: &[f32],
    w: &[f32],
    inp: usize,
    cols: &std::ops::Range<usize>,
    c0: &[f32],
    ldc: usize,
    start: Start<'_>,
) -> Vec<f32> {
    let mut c = c0.to_vec();
    for (r, x) in a.chunks_exact(inp).enumerate() {
        for (j, o) in cols.clone().enumerate() {
            let dot: f64 = x
                .iter()
                .zip(&w[o * inp..][..inp])
                .map(|(&x, &w)| f64::from(x) * f64::from(w))
                .sum();
            let old = &mut c[r * ldc + j];
            *old = dot as f32
                + match start {
                    Start::Beta(beta) => beta * *old,
                    Start::Bias(b) => b[j],
                };
        }
    }
    c
}

/// Every path on every case: returns the largest relative error seen per path.
#[test]
fn paths_match_dequantized_f32() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let shapes = [
        (1, 5, 1),
        (3, 37, 7),
        (37, 412, 33),
        (1, 1000, 100),
        (200, 1000, 100),
        (3, 412, 100),
        (37, 5, 33),
        (200, 37, 7),
        (1, 412, 33),
        (3, 1000, 33),
    ];
    let mut worst = std::collections::BTreeMap::new();
    for (rows, inp, out) in shapes {
        let w = normal(&mut rng, 3 * out * inp, 1.0 / (inp as f32).sqrt());
        let a = normal(&mut rng, rows * inp, 1.0);
        for kind in KINDS {
            let (p, _) = pack(kind, &w, (3, out, inp));
            for (i, from) in [0, 32, 64]
                .into_iter()
                .filter(|&f| f == 0 || f < out)
                .enumerate()
            {
                let (matrix, cols) = (1 + i % 2, from..out);
                let err = check_case(&mut rng, &p, &a, matrix, cols, i % 2 == 0);
                for (path, e) in err {
                    let slot = worst.entry(format!("{kind:?} {path:?}")).or_insert(0f32);
                    *slot = slot.max(e);
                }
            }
        }
    }
    eprintln!("largest error / max|c| per kind and path: {worst:#?}");
}

/// One case on every runnable path: asserts each path's tolerance and returns its error.
fn check_case(
    rng: &mut ChaCha8Rng,
    p: &PackedWeight,
    a: &[f32],
    matrix: usize,
    cols: std::ops::Range<usize>,
    bias: bool,
) -> Vec<(Path, f32)> {
    let (inp, n) = (p.inp(), cols.len());
    let rows = a.len() / inp;
    let ldc = n + 3;
    let c0 = normal(rng, rows * ldc, 1.0);
    let b = normal(rng, n, 1.0);
    let start = if bias {
        Start::Bias(&b)
    } else {
        Start::Beta(1.0)
    };
    let want = reference(a, &p.dequantize(matrix), inp, &cols, &c0, ldc, start);
    let max = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let mut errors = Vec::new();
    for path in runnable(p.kind()) {
        let mut got = c0.clone();
        gemm_on(
            path,
            Mat::rows(a, rows, inp),
            p,
            matrix,
            cols.clone(),
            &mut got,
            ldc,
            start,
        );
        let mut err = 0f32;
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            // the columns past the range (the output stride's gap) must stay as they were
            let e = match i % ldc < n {
                true => (x - y).abs() / max,
                false if x.to_bits() == y.to_bits() => 0.0,
                false => f32::INFINITY,
            };
            err = err.max(e);
        }
        let what = format!(
            "{:?} {path:?} {rows}x{inp} cols {cols:?} matrix {matrix} bias {bias}",
            p.kind()
        );
        assert!(
            err <= tolerance(path),
            "{what}: error {err} of max|c| {max}"
        );
        errors.push((path, err));
    }
    errors
}

/// No rows or no columns: the output is untouched.
#[test]
fn empty_products_write_nothing() {
    let (p, _) = pack(PackedKind::Int8, &[0.5; 40 * 3], (1, 40, 3));
    for path in runnable(PackedKind::Int8) {
        let mut c = vec![7.0; 8];
        gemm_on(
            path,
            Mat::rows(&[1.0; 6], 2, 3),
            &p,
            0,
            32..32,
            &mut c,
            4,
            Start::Beta(0.0),
        );
        gemm_on(
            path,
            Mat::rows(&[], 0, 3),
            &p,
            0,
            0..40,
            &mut c,
            40,
            Start::Beta(0.0),
        );
        assert!(c.iter().all(|&v| v == 7.0), "{path:?}");
    }
}

/// `paths()` names the fastest runnable path of each kind (or the portable one, forced).
#[test]
fn paths_name_the_chosen_paths() {
    let forced = std::env::var("SWITCHHEAD_QUANT_PATH").is_ok_and(|v| v == "portable")
        || std::env::var_os("SWITCHHEAD_NO_AVX512").is_some();
    let name = |kind| match forced {
        true => Path::Portable.name(),
        false => runnable(kind)[0].name(),
    };
    let (int, bf16) = (name(PackedKind::Int8), name(PackedKind::Bf16));
    let expected = format!("int8: {int}, int4: {int}, bf16: {bf16}");
    assert_eq!(super::paths(), expected);
}
