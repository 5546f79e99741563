//! Quantized products against the f32 `panels` product, one thread: `quant_gemm [rounds]`.
//!
//! Decode (one row against a 1024x4096 and a 4096x1024 weight, each kind cycling through
//! enough copies of its weight, 64 MiB or more, that they stream from memory as a model's
//! layers do) prints ms per product and GB/s of weight read; prefill (2048 x 1024 x 1024,
//! one copy) prints ms and GFLOP/s. The variants alternate in rounds in one run (this
//! machine's speed moves between runs) and each prints its median. Then the error of each
//! path against the f32 product with the same (dequantized) weights, and with the original
//! f32 weights, relative to the largest output.

use std::time::Instant;

use switchhead_kernels::quant::{self, PackedKind, PackedWeight};

/// Bytes every kind's copies of a decode weight add up to at least.
const STREAM_BYTES: usize = 64 << 20;

fn main() {
    let rounds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    println!("paths: {}", quant::paths());
    for (m, k, n) in [(1, 1024, 4096), (1, 4096, 1024), (2048, 1024, 1024)] {
        bench_shape(m, k, n, rounds);
    }
}

/// Runs copy `i` of a variant's weight into the output.
type Run<'a> = Box<dyn Fn(usize, &mut [f32]) + 'a>;

/// A product to time: its name, its weight copies (bytes of one) and how to run copy `i`.
struct Variant<'a> {
    name: String,
    bytes: usize,
    run: Run<'a>,
    copies: usize,
}

fn bench_shape(m: usize, k: usize, n: usize, rounds: usize) {
    let w = normal(n * k, 1.0 / (k as f32).sqrt(), 1);
    let a = normal(m * k, 1.0, 2);
    let bias = vec![0.0f32; n];
    let decode = m <= 8;
    let copies = |bytes: usize| {
        if decode {
            STREAM_BYTES.div_ceil(bytes)
        } else {
            1
        }
    };
    let panels = switchhead_ops::plan::to_panels(&w, n, k);
    let f32_copies: Vec<Vec<f32>> = (0..copies(panels.len() * 4))
        .map(|_| panels.clone())
        .collect();
    let (a, bias, f32_copies) = (&a[..], &bias[..], &f32_copies);
    let kinds = [
        PackedKind::Int8,
        PackedKind::Int4 { group: 32 },
        PackedKind::Bf16,
    ];
    let packed: Vec<Vec<PackedWeight>> = kinds
        .iter()
        .map(|&kind| {
            let one = pack(kind, &w, n, k);
            (0..copies(one.bytes()))
                .map(|_| pack(kind, &w, n, k))
                .collect()
        })
        .collect();
    let mut variants = vec![Variant {
        name: "f32 panels".into(),
        bytes: panels.len() * 4,
        copies: f32_copies.len(),
        run: Box::new(move |i, c| quant::bench_f32_panels(a, m, k, &f32_copies[i], n, bias, c)),
    }];
    for (kind, ws) in kinds.iter().zip(&packed) {
        for path in quant::bench_paths(*kind) {
            variants.push(Variant {
                name: format!("{kind:?} {path}"),
                bytes: ws[0].bytes(),
                copies: ws.len(),
                run: Box::new(move |i, c| quant::bench_packed(path, a, m, &ws[i], bias, c)),
            });
        }
    }
    println!("\n[{m},{k}] x [{n},{k}]^T, {} rounds", rounds);
    let times = time_rounds(&variants, m * n, rounds, decode);
    let base = times[0];
    for (v, &t) in variants.iter().zip(&times) {
        let rate = match decode {
            true => format!("{:6.1} GB/s of weight", v.bytes as f64 / t / 1e9),
            false => format!("{:6.0} GFLOP/s", 2.0 * (m * k * n) as f64 / t / 1e9),
        };
        println!(
            "  {:28} {:8.3} ms  {rate}  {:5.2}x f32",
            v.name,
            t * 1e3,
            base / t
        );
    }
    errors(a, m, &w, n, k, &kinds, &packed);
}

/// The median seconds of each variant over `rounds` alternated rounds (decode: each timing
/// runs every copy once and divides).
fn time_rounds(variants: &[Variant<'_>], out: usize, rounds: usize, decode: bool) -> Vec<f64> {
    let mut c = vec![0.0f32; out];
    let mut samples = vec![Vec::new(); variants.len()];
    for round in 0..=rounds {
        for (v, s) in variants.iter().zip(&mut samples) {
            let reps = if decode { v.copies.max(64) } else { 1 };
            let t = Instant::now();
            for i in 0..reps {
                (v.run)(i % v.copies, &mut c);
            }
            std::hint::black_box(&mut c);
            if round > 0 {
                s.push(t.elapsed().as_secs_f64() / reps as f64);
            }
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

/// Prints each path's largest error against the f32 product with its dequantized weights
/// and with the original ones, relative to the largest output of the f32 product.
fn errors(
    a: &[f32],
    m: usize,
    w: &[f32],
    n: usize,
    k: usize,
    kinds: &[PackedKind],
    packed: &[Vec<PackedWeight>],
) {
    let exact = product(a, m, w, n, k);
    for (kind, ws) in kinds.iter().zip(packed) {
        let same = product(a, m, &ws[0].dequantize(0), n, k);
        let max = same.iter().fold(0f32, |x, v| x.max(v.abs()));
        for path in quant::bench_paths(*kind) {
            let mut c = vec![0.0; m * n];
            quant::bench_packed(path, a, m, &ws[0], &vec![0.0; n], &mut c);
            let err = |want: &[f32]| {
                c.iter()
                    .zip(want)
                    .fold(0f32, |e, (x, y)| e.max((x - y).abs()))
                    / max
            };
            println!(
                "  error {:28} vs same weights {:.2e}, vs f32 weights {:.2e} (of max|c| {max:.2})",
                format!("{kind:?} {path}"),
                err(&same),
                err(&exact)
            );
        }
    }
}

/// `a @ w^T` in f64, rounded to f32.
fn product(a: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for r in 0..m {
        for j in 0..n {
            let (x, y) = (&a[r * k..][..k], &w[j * k..][..k]);
            c[r * n + j] = x
                .iter()
                .zip(y)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum::<f64>() as f32;
        }
    }
    c
}

/// Roughly normal values (a sum of uniforms from a fixed-seed generator), scaled.
fn normal(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    (0..n)
        .map(|_| (0..4).map(|_| uniform()).sum::<f32>() * scale)
        .collect()
}

/// `w` (`[n, k]`) as a packed weight of `kind`, with the plan's symmetric quantization.
fn pack(kind: PackedKind, w: &[f32], n: usize, k: usize) -> PackedWeight {
    let quantized = |group: usize, qmax: f32| {
        let (mut q, mut scales) = (Vec::new(), Vec::new());
        for row in w.chunks_exact(k) {
            for g in row.chunks(group) {
                let s = g.iter().fold(0f32, |x, v| x.max(v.abs())) / qmax;
                scales.push(s);
                q.extend(g.iter().map(|&v| {
                    if s == 0.0 {
                        0
                    } else {
                        (v / s).round().clamp(-qmax, qmax) as i8
                    }
                }));
            }
        }
        (q, scales)
    };
    let built = match kind {
        PackedKind::Int8 => {
            let (q, s) = quantized(k, 127.0);
            let bytes: Vec<u8> = q.iter().map(|&v| v as u8).collect();
            PackedWeight::from_int8(&bytes, &s, 1, n, k)
        }
        PackedKind::Int4 { group } => {
            let (q, s) = quantized(group, 7.0);
            let bytes: Vec<u8> = q
                .chunks(k)
                .flat_map(|row| {
                    row.chunks(2).map(|p| {
                        (p[0] as u8 & 0xf) | ((p.get(1).map_or(0, |&v| v as u8) & 0xf) << 4)
                    })
                })
                .collect();
            PackedWeight::from_int4(&bytes, &s, 1, n, k, group)
        }
        PackedKind::Bf16 => {
            let bits: Vec<u16> = w.iter().map(|v| (v.to_bits() >> 16) as u16).collect();
            PackedWeight::from_bf16(&bits, 1, n, k)
        }
    };
    built.expect("the benchmark's shapes are consistent")
}
