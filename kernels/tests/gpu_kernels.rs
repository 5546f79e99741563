//! Every GPU kernel against its CPU twin (the `switchhead_ops` references or a plain loop
//! here), on odd shapes: widths that are no multiple of 32, k = 3 of E = 5, one token and 37,
//! batch 2, XL memory, d_head 30 / 36, vocab 259. Runs on the OpenCL device (PoCL on a CPU
//! is enough); where none opens the tests print `SKIPPED <test>: <reason>` and pass, unless
//! `SWITCHHEAD_REQUIRE_OPENCL` is set (CI), where they fail.
//!
//! Tolerances: f32 paths `max |got - want| <= 1e-5 * max |want|` against f64 references;
//! bf16 weights are compared against the reference on the bf16-rounded weights to the same
//! tolerance (which shows the kernels widen them exactly); copies are compared bit for bit.
#![cfg(feature = "opencl")]

mod common;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use switchhead_kernels::gpu::launch::{
    self, AttnDims, Cols, Epilogue, ExpertInput, ExpertOutput, Routed, W,
};
use switchhead_kernels::gpu::{
    Device, Gemm, GpuError, OpenClDevice, OpenClSelect, WType, bf16_bytes, download_f32,
    download_i32, f32_bytes, f32_to_bf16_bits, i64_bytes,
};
use switchhead_ops::attention::{RelativeKeys, causal_attention, softmax};
use switchhead_ops::linear::matmul_rows;
use switchhead_ops::router::top_k;
use switchhead_ops::{Tensor, dot, sigmoid};

type R = Result<(), Box<dyn std::error::Error>>;

const TOL: f64 = 1e-5;
const F32: WType = WType::F32;
const BF16: WType = WType::Bf16;

// ---- helpers -------------------------------------------------------------------------------

/// Runs `body` on the OpenCL device, or skips (see the module docs).
fn on_device(test: &str, body: impl FnOnce(&OpenClDevice) -> R) -> R {
    match OpenClDevice::open(OpenClSelect::Any) {
        Ok(dev) => body(&dev),
        Err(e) if std::env::var_os("SWITCHHEAD_REQUIRE_OPENCL").is_some() => {
            panic!("{test}: SWITCHHEAD_REQUIRE_OPENCL is set but no OpenCL device: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            Ok(())
        }
    }
}

/// `n` uniform values in `(-scale, scale)`.
fn vals(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn up<D: Device>(dev: &D, v: &[f32]) -> Result<D::Buffer, GpuError> {
    dev.upload(&f32_bytes(v))
}

fn zeros<D: Device>(dev: &D, n: usize) -> Result<D::Buffer, GpuError> {
    dev.alloc_zeroed(n * 4)
}

/// A weight operand.
fn wref<B>(buf: &B, wtype: WType) -> W<'_, B> {
    W { buf, wtype }
}

/// The values a bf16 weight holds: `v` rounded to bf16 and widened back.
fn bf16_round(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| f32::from_bits(u32::from(f32_to_bf16_bits(x)) << 16))
        .collect()
}

/// Uploads `v` as a weight of type `wt`; returns the buffer and the values the kernel sees.
fn weight<D: Device>(dev: &D, v: &[f32], wt: WType) -> Result<(D::Buffer, Vec<f32>), GpuError> {
    match wt {
        WType::F32 => Ok((up(dev, v)?, v.to_vec())),
        WType::Bf16 => Ok((dev.upload(&bf16_bytes(v))?, bf16_round(v))),
    }
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `max |got - want| <= tol * max |want|`; the message names the worst element.
fn check(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f64, |m, w| m.max(w.abs())).max(1e-30);
    let (mut worst, mut err) = (0, 0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        // A NaN counts as the largest error.
        let e = (f64::from(g) - w).abs();
        let e = if e.is_nan() { f64::INFINITY } else { e };
        if e > err {
            (worst, err) = (i, e);
        }
    }
    assert!(
        err <= tol * scale,
        "{what}: element {worst}: got {}, want {} (error {err:.3e} = {:.3e} of max |want| {scale:.3e})",
        got[worst],
        want[worst],
        err / scale
    );
}

/// Bit-for-bit equality (copies).
fn exact(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!("{what}: element {i}: got {}, want {}", got[i], want[i]);
    }
}

// ---- embedding, LayerNorm, softmax ---------------------------------------------------------

#[test]
fn embedding_matches_lookup() -> R {
    on_device("embedding_matches_lookup", |dev| {
        let mut rng = common::rng(1);
        let vocab = 259;
        for (rows, d, wt) in [(1, 37, F32), (37, 70, F32), (37, 132, BF16), (1, 300, BF16)] {
            let (table, seen) = weight(dev, &vals(&mut rng, vocab * d, 1.0), wt)?;
            let mut tokens: Vec<i64> = (0..rows).map(|_| rng.random_range(0..259)).collect();
            tokens[0] = vocab as i64 - 1;
            if rows > 1 {
                tokens[1] = 0;
            }
            let out = zeros(dev, rows * d)?;
            let tb = dev.upload(&i64_bytes(&tokens))?;
            let w = wref(&table, wt);
            launch::embedding(dev, &tb, w, &out, (rows, d, vocab))?;
            let want =
                switchhead_ops::embedding::embedding(&Tensor::new(vec![vocab, d], seen)?, &tokens)?;
            let what = format!("embedding rows {rows} d {d} {}", wt.name());
            exact(&what, &download_f32(dev, &out, 0, rows * d)?, want.data());
        }
        Ok(())
    })
}

#[test]
fn layer_norm_and_softmax_match_reference() -> R {
    on_device("layer_norm_and_softmax_match_reference", |dev| {
        let mut rng = common::rng(2);
        for (rows, d, wt) in [(1, 37, F32), (37, 70, BF16), (37, 132, F32), (2, 300, BF16)] {
            let x: Vec<f32> = vals(&mut rng, rows * d, 1.0)
                .iter()
                .map(|v| v + 2.0)
                .collect();
            let gamma: Vec<f32> = vals(&mut rng, d, 0.5).iter().map(|v| v + 1.0).collect();
            let (gb, g_seen) = weight(dev, &gamma, wt)?;
            let (bb, b_seen) = weight(dev, &vals(&mut rng, d, 0.5), wt)?;
            let (xb, y) = (up(dev, &x)?, zeros(dev, rows * d)?);
            let gw = (wref(&gb, wt), wref(&bb, wt));
            launch::layer_norm(dev, &xb, gw, &y, (rows, d), 1e-5)?;
            let want = switchhead_ops::layer_norm::layer_norm(
                &Tensor::new(vec![rows, d], x)?,
                &Tensor::new(vec![d], g_seen)?,
                &Tensor::new(vec![d], b_seen)?,
                1e-5,
            )?;
            let what = format!("layer_norm rows {rows} d {d} {}", wt.name());
            check(
                &what,
                &download_f32(dev, &y, 0, rows * d)?,
                &widen(want.data()),
                TOL,
            );
        }
        for (rows, cols) in [(1, 5), (37, 259), (2, 300), (3, 1)] {
            let x = vals(&mut rng, rows * cols, 4.0);
            let xb = up(dev, &x)?;
            launch::softmax_rows(dev, &xb, rows, cols)?;
            let want: Vec<f64> = x.chunks(cols).flat_map(|r| softmax(&widen(r))).collect();
            let what = format!("softmax_rows {rows} x {cols}");
            check(&what, &download_f32(dev, &xb, 0, rows * cols)?, &want, TOL);
        }
        Ok(())
    })
}

// ---- element-wise kernels ------------------------------------------------------------------

#[test]
fn elementwise_kernels_match_loops() -> R {
    on_device("elementwise_kernels_match_loops", |dev| {
        let mut rng = common::rng(3);
        bias_act_cases(dev, &mut rng)?;
        add_inplace_cases(dev, &mut rng)?;
        gate_heads_cases(dev, &mut rng)?;
        copy_cols_cases(dev, &mut rng)?;
        concat_seq_cases(dev, &mut rng)?;
        cast_rows_bf16_cases(dev, &mut rng)
    })
}

fn bias_act_cases<D: Device>(dev: &D, rng: &mut ChaCha8Rng) -> R {
    let cases = [
        (37, 70, Some(F32), true),
        (1, 37, Some(BF16), false),
        (37, 132, None, true),
        (2, 259, Some(F32), false),
        (37, 70, Some(BF16), true),
    ];
    for (rows, cols, bias_type, relu) in cases {
        let y = vals(rng, rows * cols, 1.0);
        let bias = vals(rng, cols, 1.0);
        let (bb, seen) = weight(dev, &bias, bias_type.unwrap_or(F32))?;
        let yb = up(dev, &y)?;
        let b = bias_type.map(|wt| wref(&bb, wt));
        launch::bias_act(dev, &yb, b, (rows, cols), relu)?;
        let want: Vec<f64> = (0..rows * cols)
            .map(|i| {
                let v = y[i]
                    + if bias_type.is_some() {
                        seen[i % cols]
                    } else {
                        0.0
                    };
                f64::from(if relu { v.max(0.0) } else { v })
            })
            .collect();
        let what = format!("bias_act {rows} x {cols} bias {bias_type:?} relu {relu}");
        check(&what, &download_f32(dev, &yb, 0, rows * cols)?, &want, TOL);
    }
    Ok(())
}

fn add_inplace_cases<D: Device>(dev: &D, rng: &mut ChaCha8Rng) -> R {
    // The last size passes the grid's cap (16384 blocks of 256), so the grid-stride loop turns.
    for n in [1, 37 * 70 + 1, 16_384 * 256 + 37] {
        let (y, x) = (vals(rng, n, 1.0), vals(rng, n, 1.0));
        let (yb, xb) = (up(dev, &y)?, up(dev, &x)?);
        launch::add_inplace(dev, &yb, &xb, n)?;
        let want: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a + b).collect();
        exact(
            &format!("add_inplace n {n}"),
            &download_f32(dev, &yb, 0, n)?,
            &want,
        );
    }
    Ok(())
}

fn gate_heads_cases<D: Device>(dev: &D, rng: &mut ChaCha8Rng) -> R {
    for (rows, heads, dh) in [(37, 3, 30), (1, 5, 36), (74, 2, 36)] {
        let r = vals(rng, rows * heads * dh, 1.0);
        let logits = vals(rng, rows * heads, 4.0);
        let (rb, lb) = (up(dev, &r)?, up(dev, &logits)?);
        launch::gate_heads(dev, &rb, &lb, (rows, heads, dh))?;
        let want: Vec<f64> = (0..r.len())
            .map(|i| {
                let g = sigmoid(f64::from(logits[i / dh]));
                f64::from((f64::from(r[i]) * g) as f32)
            })
            .collect();
        let what = format!("gate_heads rows {rows} heads {heads} dh {dh}");
        check(&what, &download_f32(dev, &rb, 0, r.len())?, &want, TOL);
    }
    Ok(())
}

fn copy_cols_cases<D: Device>(dev: &D, rng: &mut ChaCha8Rng) -> R {
    // (rows, cols, src ld, src col, dst ld, dst col, scale)
    let s = 30f32.powf(-0.25);
    let cases = [
        (37, 30, 100, 13, 70, 7, s),
        (1, 37, 37, 0, 37, 0, 1.0),
        (74, 36, 108, 72, 36, 0, s),
    ];
    for (rows, cols, sld, scol, dld, dcol, scale) in cases {
        let src = vals(rng, rows * sld, 1.0);
        let dst = vals(rng, rows * dld, 1.0);
        let (sb, db) = (up(dev, &src)?, up(dev, &dst)?);
        let (from, to) = (
            Cols {
                buf: &sb,
                ld: sld,
                col: scol,
            },
            Cols {
                buf: &db,
                ld: dld,
                col: dcol,
            },
        );
        launch::copy_cols(dev, from, to, (rows, cols), scale)?;
        let mut want = dst.clone();
        for r in 0..rows {
            for c in 0..cols {
                want[r * dld + dcol + c] = scale * src[r * sld + scol + c];
            }
        }
        let what = format!("copy_cols {rows} x {cols} from col {scol} of {sld} to {dcol} of {dld}");
        exact(&what, &download_f32(dev, &db, 0, dst.len())?, &want);
    }
    Ok(())
}

fn concat_seq_cases<D: Device>(dev: &D, rng: &mut ChaCha8Rng) -> R {
    for (batch, m, t, d) in [
        (2, 0, 37, 37),
        (2, 5, 37, 70),
        (2, 20, 1, 37),
        (1, 37, 1, 132),
    ] {
        let (a, b) = (
            vals(rng, batch * m * d + 1, 1.0),
            vals(rng, batch * t * d, 1.0),
        );
        let (ab, bb, y) = (up(dev, &a)?, up(dev, &b)?, zeros(dev, batch * (m + t) * d)?);
        launch::concat_seq(dev, (&ab, &bb), &y, (batch, m, t, d))?;
        let mut want = Vec::new();
        for bi in 0..batch {
            want.extend_from_slice(&a[bi * m * d..(bi + 1) * m * d]);
            want.extend_from_slice(&b[bi * t * d..(bi + 1) * t * d]);
        }
        let what = format!("concat_seq batch {batch} m {m} t {t} d {d}");
        exact(&what, &download_f32(dev, &y, 0, want.len())?, &want);
    }
    Ok(())
}

fn cast_rows_bf16_cases<D: Device>(dev: &D, rng: &mut ChaCha8Rng) -> R {
    for (rows, cols, ldx, x_off) in [(37, 70, 75, 5), (1, 37, 37, 0), (2, 259, 300, 41)] {
        let mut x = vals(rng, x_off + rows * ldx, 3.0);
        let specials = [
            f32::NAN,
            f32::INFINITY,
            -0.0,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            1e-40,
        ];
        for (i, s) in specials.iter().enumerate() {
            x[x_off + i.min(cols - 1)] = *s;
        }
        let (xb, y) = (up(dev, &x)?, dev.alloc_zeroed(rows * cols * 2)?);
        launch::cast_rows_bf16(dev, (&xb, x_off, ldx), &y, (rows, cols))?;
        let mut bytes = vec![0u8; rows * cols * 2];
        dev.download(&y, 0, &mut bytes)?;
        let got: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        for r in 0..rows {
            for c in 0..cols {
                let v = x[x_off + r * ldx + c];
                let (g, w) = (got[r * cols + c], f32_to_bf16_bits(v));
                assert_eq!(
                    g, w,
                    "cast_rows_bf16 {rows} x {cols} ldx {ldx}: [{r}, {c}] = {v}"
                );
            }
        }
    }
    Ok(())
}

// ---- positions ------------------------------------------------------------------------------

#[test]
fn rope_and_xl_sinusoid_match_reference() -> R {
    on_device("rope_and_xl_sinusoid_match_reference", |dev| {
        let mut rng = common::rng(4);
        // (d_head, rotate fraction, base) x (rows, period, offset): queries of batch 2 after 20
        // memory rows, their keys (period Tk, offset 0), one decoded token at position 44.
        let ropes = [
            (30, 0.4, 10_000.0),
            (36, 0.5, 10_000.0),
            (30, 1.0, 500_000.0),
        ];
        let rows = [(74, 37, 20), (114, 57, 0), (2, 1, 44), (37, 37, 0)];
        let heads = 3;
        for (dh, frac, base) in ropes {
            let reference = switchhead_ops::rope::Rope::new(dh, frac, base)?;
            let rope = launch::Rope {
                n_rot: reference.n_rot(),
                base,
            };
            for (n, period, offset) in rows {
                let x = vals(&mut rng, n * heads * dh, 1.0);
                let xb = up(dev, &x)?;
                launch::rope(dev, &xb, (n, heads, dh), rope, (period, offset))?;
                let mut want = x.clone();
                for (r, row) in want.chunks_mut(heads * dh).enumerate() {
                    for head in row.chunks_mut(dh) {
                        reference.apply(head, offset + r % period);
                    }
                }
                let what = format!(
                    "rope dh {dh} n_rot {} rows {n} period {period} offset {offset}",
                    rope.n_rot
                );
                check(
                    &what,
                    &download_f32(dev, &xb, 0, x.len())?,
                    &widen(&want),
                    TOL,
                );
            }
        }
        for (count, d, lo, dh) in [
            (57, 70, -56, 30),
            (1, 132, 0, 36),
            (37, 70, -36, 36),
            (3, 132, 5, 30),
        ] {
            let scale = (dh as f64).powf(-0.25);
            let pe = zeros(dev, count * d)?;
            launch::xl_sinusoid(dev, &pe, (count, d), lo, scale)?;
            let want: Vec<f64> = (0..count as i64)
                .flat_map(|j| switchhead_ops::xl_pos::sinusoid(lo + j, d))
                .map(|v| f64::from((f64::from(v) * scale) as f32))
                .collect();
            let what = format!("xl_sinusoid count {count} d {d} lo {lo}");
            check(&what, &download_f32(dev, &pe, 0, count * d)?, &want, TOL);
        }
        Ok(())
    })
}

// ---- routing --------------------------------------------------------------------------------

/// The reference routing: flat ids and gates `[n, groups, k]`.
struct RefRoute {
    groups: usize,
    k: usize,
    idx: Vec<usize>,
    gate: Vec<f32>,
}

/// The reference routing of `logits` `[n, groups*experts]`.
fn ref_route(logits: &[f32], groups: usize, experts: usize, k: usize) -> RefRoute {
    let mut r = RefRoute {
        groups,
        k,
        idx: Vec::new(),
        gate: Vec::new(),
    };
    for row in logits.chunks(groups * experts) {
        let gates: Vec<f32> = row.iter().map(|&l| sigmoid(f64::from(l)) as f32).collect();
        for base in (0..groups).map(|g| g * experts) {
            for e in top_k(&gates[base..base + experts], k) {
                r.idx.push(base + e);
                r.gate.push(gates[base + e]);
            }
        }
    }
    r
}

/// Routes `logits` on the device and checks everything [`launch::route`] promises.
fn route_checked<D: Device>(
    dev: &D,
    logits: &[f32],
    n: usize,
    (groups, experts, k): (usize, usize, usize),
) -> Result<Routed<D::Buffer>, Box<dyn std::error::Error>> {
    let what = format!("route n {n} groups {groups} experts {experts} k {k}");
    let routed = launch::route(dev, &up(dev, logits)?, n, (groups, experts, k))?;
    let (ns, ne) = (routed.n_slots, routed.n_experts);
    let idx = download_i32(dev, &routed.idx, 0, ns)?;
    let gate = download_f32(dev, &routed.gate, 0, ns)?;
    let want_idx = ref_route(logits, groups, experts, k).idx;
    for (s0, (got, want)) in idx.chunks(k).zip(want_idx.chunks(k)).enumerate() {
        let mut got: Vec<usize> = got.iter().map(|&i| i as usize).collect();
        let mut want = want.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{what}: the experts of (row, group) {s0}");
    }
    for (s, (&i, &g)) in idx.iter().zip(&gate).enumerate() {
        let row = s / (groups * k);
        let want = sigmoid(f64::from(logits[row * ne + i as usize]));
        assert!(
            (f64::from(g) - want).abs() <= 1e-6,
            "{what}: gate of slot {s}: {g} vs {want}"
        );
    }
    let offsets = download_i32(dev, &routed.offsets, 0, ne + 1)?;
    let slots = download_i32(dev, &routed.slots, 0, ns)?;
    assert_eq!(
        (offsets[0], offsets[ne]),
        (0, ns as i32),
        "{what}: offsets {offsets:?}"
    );
    let mut seen = vec![false; ns];
    for e in 0..ne {
        let (lo, hi) = (offsets[e] as usize, offsets[e + 1] as usize);
        assert!(
            lo <= hi,
            "{what}: offsets {offsets:?} decrease at expert {e}"
        );
        let want = idx.iter().filter(|&&i| i as usize == e).count();
        assert_eq!(hi - lo, want, "{what}: rows of expert {e}");
        for &s in &slots[lo..hi] {
            let s = s as usize;
            assert!(
                s < ns && !seen[s],
                "{what}: slot {s} out of range or placed twice"
            );
            seen[s] = true;
            assert_eq!(
                idx[s] as usize, e,
                "{what}: slot {s} sorted under expert {e}"
            );
        }
    }
    Ok(routed)
}

#[test]
fn route_matches_reference_top_k() -> R {
    on_device("route_matches_reference_top_k", |dev| {
        let mut rng = common::rng(5);
        // (n, groups, experts, k): heads' E = 5, k = 3; all experts; σ-MoE with E > 32.
        let cases = [
            (1, 3, 5, 3),
            (37, 3, 5, 3),
            (74, 2, 5, 5),
            (74, 1, 40, 3),
            (37, 1, 64, 4),
        ];
        for (n, groups, experts, k) in cases {
            let logits = vals(&mut rng, n * groups * experts, 3.0);
            route_checked(dev, &logits, n, (groups, experts, k))?;
        }
        Ok(())
    })
}

// ---- grouped expert GEMM --------------------------------------------------------------------

/// One grouped product of the attention: x rows by (row, group) with `x_strides`, `w`
/// `[groups*E, in_dim, out_dim]`, y rows by (row, group) with `y_strides`, GatedAdd.
#[derive(Debug, Clone, Copy)]
struct Grouped {
    name: &'static str,
    dims: (usize, usize),
    x_strides: (usize, usize),
    x_len: usize,
    y_strides: (usize, usize),
    y_len: usize,
}

/// `y[row, g] += gate * (x[row, g] @ w[e])` over every selected (e, gate), in f64.
fn ref_gated(p: Grouped, (x, w): (&[f32], &[f32]), route: &RefRoute) -> Vec<f64> {
    let ((din, dout), (groups, k)) = (p.dims, (route.groups, route.k));
    let mut y = vec![0f64; p.y_len];
    for (s, (&e, &g)) in route.idx.iter().zip(&route.gate).enumerate() {
        let (row, grp) = (s / (groups * k), (s / k) % groups);
        let xr = &x[row * p.x_strides.0 + grp * p.x_strides.1..][..din];
        let acc = matmul_rows(xr, &w[e * din * dout..(e + 1) * din * dout], din, dout);
        let yr = &mut y[row * p.y_strides.0 + grp * p.y_strides.1..][..dout];
        yr.iter_mut()
            .zip(acc)
            .for_each(|(o, a)| *o += f64::from(g) * a);
    }
    y
}

fn by_slot<B>(x: &B, (row_stride, group_stride): (usize, usize)) -> ExpertInput<'_, B> {
    ExpertInput {
        x,
        row_stride,
        group_stride,
        by_slot: true,
    }
}

fn epilogue<B>(
    y: &B,
    (row_stride, group_stride): (usize, usize),
    epilogue: Epilogue,
) -> ExpertOutput<'_, B> {
    ExpertOutput {
        y,
        row_stride,
        group_stride,
        epilogue,
    }
}

/// Runs one grouped product on random x and weights and checks it against [`ref_gated`].
fn grouped_case<D: Device>(
    dev: &D,
    rng: &mut ChaCha8Rng,
    (routed, route): (&Routed<D::Buffer>, &RefRoute),
    p: Grouped,
    (wt, what): (WType, &str),
) -> R {
    let (din, dout) = p.dims;
    let x = vals(rng, p.x_len, 1.0);
    let (wb, w) = weight(dev, &vals(rng, routed.n_experts * din * dout, 0.3), wt)?;
    let (xb, y) = (up(dev, &x)?, zeros(dev, p.y_len)?);
    let out = epilogue(&y, p.y_strides, Epilogue::GatedAdd);
    launch::expert_gemm(
        dev,
        by_slot(&xb, p.x_strides),
        (wref(&wb, wt), din, dout),
        routed,
        out,
    )?;
    let want = ref_gated(p, (&x, &w), route);
    let what = format!("expert_gemm {} {what}", p.name);
    check(&what, &download_f32(dev, &y, 0, p.y_len)?, &want, TOL);
    Ok(())
}

#[test]
fn expert_gemm_matches_direct_sums() -> R {
    on_device("expert_gemm_matches_direct_sums", |dev| {
        let mut rng = common::rng(6);
        // (n, D, H, E, k, dh, weight type)
        let cases = [
            (37, 37, 3, 5, 3, 30, F32),
            (1, 70, 3, 5, 3, 36, BF16),
            (74, 70, 2, 5, 3, 30, BF16),
        ];
        for (n, d, h, e, k, dh, wt) in cases {
            let logits = vals(&mut rng, n * h * e, 3.0);
            let routed = route_checked(dev, &logits, n, (h, e, k))?;
            let route = ref_route(&logits, h, e, k);
            let what = format!("n {n} D {d} H {h} E {e} k {k} dh {dh} {}", wt.name());
            // V: x [n, D] read by every head, y [n, H*dh] (group stride dh). O: x = R [n, H*dh]
            // (group stride dh), y [n, D] summed over the heads.
            let v = Grouped {
                name: "V",
                dims: (d, dh),
                x_strides: (d, 0),
                x_len: n * d,
                y_strides: (h * dh, dh),
                y_len: n * h * dh,
            };
            let o = Grouped {
                name: "O",
                dims: (dh, d),
                x_strides: (h * dh, dh),
                x_len: n * h * dh,
                y_strides: (d, 0),
                y_len: n * d,
            };
            for p in [v, o] {
                grouped_case(dev, &mut rng, (&routed, &route), p, (wt, &what))?;
            }
        }
        // σ-MoE (n, D, N_E, G, k): 150 rows give every expert more than one 64-row tile.
        for (n, d, ne, g, k, wt) in [
            (150, 37, 5, 70, 3, F32),
            (1, 132, 5, 37, 3, BF16),
            (37, 70, 40, 36, 4, F32),
        ] {
            sigma_moe_case(dev, &mut rng, (n, d, ne, g, k), wt)?;
        }
        Ok(())
    })
}

/// σ-MoE on the device (route, ReluStore into sorted hidden rows, GatedAdd by position)
/// against `switchhead_ops::sigma_moe`.
fn sigma_moe_case<D: Device>(
    dev: &D,
    rng: &mut ChaCha8Rng,
    (n, d, ne, g, k): (usize, usize, usize, usize, usize),
    wt: WType,
) -> R {
    let x = Tensor::new(vec![n, d], vals(rng, n * d, 1.0))?;
    let router = Tensor::new(vec![ne, d], vals(rng, ne * d, 0.5))?;
    let (kb, keys) = weight(dev, &vals(rng, ne * d * g, 0.3), wt)?;
    let (vb, values) = weight(dev, &vals(rng, ne * g * d, 0.3), wt)?;
    // The logits as the reference router computes them (f64 dot rounded to f32).
    let logits: Vec<f32> = (0..n * ne)
        .map(|i| dot(x.row(i / ne), router.row(i % ne)) as f32)
        .collect();
    let routed = route_checked(dev, &logits, n, (1, ne, k))?;
    let (xb, hidden, y) = (
        up(dev, x.data())?,
        zeros(dev, routed.n_slots * g)?,
        zeros(dev, n * d)?,
    );
    let out = epilogue(&hidden, (g, 0), Epilogue::ReluStore);
    launch::expert_gemm(
        dev,
        by_slot(&xb, (d, 0)),
        (wref(&kb, wt), d, g),
        &routed,
        out,
    )?;
    let sorted = ExpertInput {
        x: &hidden,
        row_stride: g,
        group_stride: 0,
        by_slot: false,
    };
    let out = epilogue(&y, (d, 0), Epilogue::GatedAdd);
    launch::expert_gemm(dev, sorted, (wref(&vb, wt), g, d), &routed, out)?;
    let (want, _) = switchhead_ops::sigma_moe::sigma_moe(
        &x,
        &router,
        &Tensor::new(vec![ne, d, g], keys)?,
        &Tensor::new(vec![ne, g, d], values)?,
        k,
    )?;
    let what = format!("sigma-MoE n {n} D {d} N_E {ne} G {g} k {k} {}", wt.name());
    check(
        &what,
        &download_f32(dev, &y, 0, n * d)?,
        &widen(want.data()),
        TOL,
    );
    Ok(())
}

// ---- attention ------------------------------------------------------------------------------

/// One attention problem: `t` queries after `m` memory rows, keys in buffers of `kv_rows`.
#[derive(Debug, Clone, Copy)]
struct AttnCase {
    batch: usize,
    t: usize,
    m: usize,
    kv_rows: usize,
    heads: usize,
    dh: usize,
    xl: bool,
}

#[test]
fn flash_attention_matches_softmax_attention() -> R {
    on_device("flash_attention_matches_softmax_attention", |dev| {
        let mut rng = common::rng(7);
        let case = |batch, t, m, kv_rows, heads, dh, xl| AttnCase {
            batch,
            t,
            m,
            kv_rows,
            heads,
            dh,
            xl,
        };
        let cases = [
            case(2, 37, 0, 37, 3, 30, false),
            case(2, 37, 0, 37, 3, 30, true),
            case(2, 37, 20, 57, 3, 36, true),
            case(2, 1, 44, 64, 3, 30, true),
            case(2, 37, 13, 64, 2, 30, false),
            case(1, 1, 0, 1, 5, 36, true),
            case(1, 1, 70, 80, 2, 36, false),
        ];
        for c in cases {
            attention_case(dev, &mut rng, c)?;
        }
        Ok(())
    })
}

fn attention_case<D: Device>(dev: &D, rng: &mut ChaCha8Rng, c: AttnCase) -> R {
    let (tk, hd) = (c.t + c.m, c.heads * c.dh);
    let s = (c.dh as f32).powf(-0.25);
    let q = vals(rng, c.batch * c.t * hd, s);
    // Rows past tk of each batch row are NaN: the kernel must never read them.
    let kv = |rng: &mut ChaCha8Rng| -> Vec<f32> {
        let mut v = vals(rng, c.batch * c.kv_rows * hd, s);
        for (i, x) in v.iter_mut().enumerate() {
            if (i / hd) % c.kv_rows >= tk {
                *x = f32::NAN;
            }
        }
        v
    };
    let (k, v) = (kv(rng), kv(rng));
    let kp = vals(rng, tk * hd, s);
    let (qb, kb, vb, kpb) = (up(dev, &q)?, up(dev, &k)?, up(dev, &v)?, up(dev, &kp)?);
    let out = zeros(dev, c.batch * c.t * hd)?;
    let dims = AttnDims {
        batch: c.batch,
        t: c.t,
        tk,
        kv_rows: c.kv_rows,
        heads: c.heads,
        dh: c.dh,
    };
    launch::flash_attention(dev, (&qb, &kb, &vb), c.xl.then_some(&kpb), &out, dims)?;
    let got = download_f32(dev, &out, 0, q.len())?;
    let kp = Tensor::new(vec![tk, hd], kp)?;
    let rel = c.xl.then_some(RelativeKeys {
        keys: &kp,
        lo: 1 - tk as i64,
    });
    let mut want = Vec::with_capacity(q.len());
    for b in 0..c.batch {
        let rows = |x: &[f32], from: usize, n: usize| {
            Tensor::new(vec![n, hd], x[from * hd..(from + n) * hd].to_vec())
        };
        let (qt, kt, vt) = (
            rows(&q, b * c.t, c.t)?,
            rows(&k, b * c.kv_rows, tk)?,
            rows(&v, b * c.kv_rows, tk)?,
        );
        want.extend(widen(
            causal_attention(&qt, &kt, &vt, c.heads, c.dh, rel)?.data(),
        ));
    }
    check(
        &format!("flash_attention {c:?} (tk {tk})"),
        &got,
        &want,
        TOL,
    );
    Ok(())
}

#[test]
fn kv_append_writes_only_the_new_rows() -> R {
    on_device("kv_append_writes_only_the_new_rows", |dev| {
        let mut rng = common::rng(8);
        // (batch, t_new, hd, capacity, len)
        for (batch, t_new, hd, cap, len) in [
            (2, 37, 90, 64, 0),
            (2, 1, 90, 64, 44),
            (1, 1, 180, 1, 0),
            (2, 5, 72, 40, 35),
        ] {
            let (kn, vn) = (
                vals(&mut rng, batch * t_new * hd, 1.0),
                vals(&mut rng, batch * t_new * hd, 1.0),
            );
            let (kc, vc) = (
                vals(&mut rng, batch * cap * hd, 1.0),
                vals(&mut rng, batch * cap * hd, 1.0),
            );
            let (knb, vnb, kcb, vcb) = (up(dev, &kn)?, up(dev, &vn)?, up(dev, &kc)?, up(dev, &vc)?);
            launch::kv_append(
                dev,
                (&knb, &vnb),
                (&kcb, &vcb),
                (batch, t_new, hd),
                (cap, len),
            )?;
            let append = |cache: &[f32], new: &[f32]| {
                let mut want = cache.to_vec();
                for b in 0..batch {
                    let dst = (b * cap + len) * hd;
                    want[dst..dst + t_new * hd]
                        .copy_from_slice(&new[b * t_new * hd..(b + 1) * t_new * hd]);
                }
                want
            };
            let what =
                format!("kv_append batch {batch} t_new {t_new} hd {hd} capacity {cap} len {len}");
            exact(
                &format!("{what}: k"),
                &download_f32(dev, &kcb, 0, kc.len())?,
                &append(&kc, &kn),
            );
            exact(
                &format!("{what}: v"),
                &download_f32(dev, &vcb, 0, vc.len())?,
                &append(&vc, &vn),
            );
        }
        let b = zeros(dev, 8)?;
        let overflow = launch::kv_append(dev, (&b, &b), (&b, &b), (1, 2, 1), (4, 3));
        assert!(
            overflow.is_err(),
            "kv_append past the capacity must be refused"
        );
        Ok(())
    })
}

// ---- GEMM -----------------------------------------------------------------------------------

#[test]
fn gemm_matches_reference() -> R {
    on_device("gemm_matches_reference", |dev| {
        let mut rng = common::rng(9);
        // (m, n, k, weight type, alpha, beta)
        let cases = [
            (1, 1, 1, F32, 1.0, 0.0),
            (1, 37, 70, BF16, 1.0, 1.0),
            (37, 259, 37, F32, 1.0, 0.0),
            (70, 5, 132, F32, 0.5, 1.0),
            (130, 67, 17, BF16, 1.0, 0.0),
            (65, 65, 1, F32, 1.0, 1.0),
        ];
        for (m, n, k, wt, alpha, beta) in cases {
            gemm_case(dev, &mut rng, (m, n, k), wt, (alpha, beta))?;
        }
        Ok(())
    })
}

fn gemm_case<D: Device>(
    dev: &D,
    rng: &mut ChaCha8Rng,
    (m, n, k): (usize, usize, usize),
    wt: WType,
    (alpha, beta): (f32, f32),
) -> R {
    let (x_off, ldx, w_off, y_off, ldy) = (3, k + 5, 7, 11, n + 2);
    let x = vals(rng, x_off + m * ldx, 1.0);
    let (wb, w) = weight(dev, &vals(rng, w_off + n * k, 1.0), wt)?;
    // beta 0 must not read y: NaN there would show.
    let y0 = if beta == 0.0 {
        vec![f32::NAN; y_off + m * ldy + 3]
    } else {
        vals(rng, y_off + m * ldy + 3, 1.0)
    };
    let xb = up(dev, &x)?;
    let mut want = widen(&y0);
    for r in 0..m {
        for c in 0..n {
            let acc = dot(&x[x_off + r * ldx..][..k], &w[w_off + c * k..][..k]);
            let at = y_off + r * ldy + c;
            want[at] = f64::from(alpha) * acc + if beta == 0.0 { 0.0 } else { want[at] };
        }
    }
    for portable in [true, false] {
        let yb = up(dev, &y0)?;
        let g = Gemm {
            m,
            n,
            k,
            x: &xb,
            x_off,
            ldx,
            w: &wb,
            w_off,
            w_type: wt,
            y: &yb,
            y_off,
            ldy,
            alpha,
            beta,
        };
        if portable {
            launch::gemm_portable(dev, &g)?
        } else {
            dev.gemm(&g)?
        }
        let got = download_f32(dev, &yb, 0, y0.len())?;
        let what = format!(
            "{} m {m} n {n} k {k} {} alpha {alpha} beta {beta}",
            if portable {
                "gemm_portable"
            } else {
                "Device::gemm"
            },
            wt.name()
        );
        let inside = |i: usize| i >= y_off && (i - y_off) / ldy < m && (i - y_off) % ldy < n;
        let (gi, wi): (Vec<f32>, Vec<f64>) = (0..got.len())
            .filter(|&i| inside(i))
            .map(|i| (got[i], want[i]))
            .unzip();
        check(&what, &gi, &wi, TOL);
        let outside: Vec<usize> = (0..got.len()).filter(|&i| !inside(i)).collect();
        let pick = |v: &[f32]| outside.iter().map(|&i| v[i]).collect::<Vec<_>>();
        exact(
            &format!("{what}: outside the output block"),
            &pick(&got),
            &pick(&y0),
        );
    }
    Ok(())
}
