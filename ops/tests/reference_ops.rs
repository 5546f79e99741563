//! Properties of the reference ops that do not need a model: hand-computed cases and
//! invariants (rotation preserves norms, router picks per group, causal mask holds).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use switchhead_ops::attention::causal_attention;
use switchhead_ops::embedding::embedding;
use switchhead_ops::layer_norm::layer_norm;
use switchhead_ops::linear::linear;
use switchhead_ops::rope::Rope;
use switchhead_ops::router::{sigmoid_topk, top_k};
use switchhead_ops::{OpError, Tensor};

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
    )
    .expect("shape")
}

#[test]
fn linear_matches_hand_computation() {
    let x = Tensor::new(vec![1, 2], vec![1.0, 2.0]).expect("x");
    let w = Tensor::new(vec![2, 2], vec![1.0, 0.0, 3.0, -1.0]).expect("w");
    let b = Tensor::new(vec![2], vec![0.5, 0.0]).expect("b");
    let y = linear(&x, &w, Some(&b)).expect("linear");
    assert_eq!(y.data(), &[1.5, 1.0]);
}

#[test]
fn embedding_rejects_out_of_range_ids() {
    let table = random(&[4, 3], 1);
    assert_eq!(
        embedding(&table, &[3, 0]).expect("in range").row(0),
        table.row(3)
    );
    let err = embedding(&table, &[4]).expect_err("id 4 of 4");
    assert!(
        matches!(
            err,
            OpError::Index {
                index: 4,
                limit: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(embedding(&table, &[-1]).is_err());
}

#[test]
fn layer_norm_normalises_rows() {
    let x = random(&[3, 8], 2);
    let ones = Tensor::new(vec![8], vec![1.0; 8]).expect("w");
    let zeros = Tensor::zeros(vec![8]);
    let y = layer_norm(&x, &ones, &zeros, 1e-5).expect("ln");
    for r in 0..3 {
        let mean: f32 = y.row(r).iter().sum::<f32>() / 8.0;
        let var: f32 = y.row(r).iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 8.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
            "row {r}: mean {mean} var {var}"
        );
    }
}

#[test]
fn rope_rotates_only_the_first_n_rot_channels_and_keeps_norms() {
    let rope = Rope::new(12, 0.5, 10000.0).expect("n_rot 6");
    assert_eq!(rope.n_rot(), 6);
    let orig: Vec<f32> = (0..12).map(|i| i as f32 + 1.0).collect();
    let mut x = orig.clone();
    rope.apply(&mut x, 7);
    assert_eq!(&x[6..], &orig[6..], "pass-through channels changed");
    // Pair (i, i + n_rot/2) is a 2-D rotation: its norm is kept.
    for i in 0..3 {
        let before = orig[i].hypot(orig[i + 3]);
        let after = x[i].hypot(x[i + 3]);
        assert!(
            (before - after).abs() < 1e-4,
            "pair {i}: {before} vs {after}"
        );
    }
    // Channel 0 rotates at frequency 1: angle = position.
    let (s, c) = 7f64.sin_cos();
    assert!((x[0] as f64 - (1.0 * c - 4.0 * s)).abs() < 1e-5);
    let mut y = orig.clone();
    rope.apply(&mut y, 0);
    assert_eq!(y, orig, "position 0 is the identity");
}

#[test]
fn rope_rejects_odd_rotated_width() {
    let err = Rope::new(34, 0.5, 10000.0).expect_err("17 channels");
    assert!(err.to_string().contains("17"), "{err}");
}

#[test]
fn router_picks_top_k_within_each_head() {
    // 2 heads x 3 experts; x = [1]; gates are sigmoid of the router column.
    let x = Tensor::new(vec![1, 1], vec![1.0]).expect("x");
    let sel = Tensor::new(vec![6, 1], vec![0.1, 2.0, -1.0, 5.0, 4.0, 3.0]).expect("sel");
    let r = sigmoid_topk(&x, &sel, 2, 2).expect("route");
    assert_eq!(r.idx, vec![1, 0, 3, 4]);
    let expect = 1.0 / (1.0 + (-2.0f32).exp());
    assert!((r.gate[0] - expect).abs() < 1e-7);
    assert!(
        sigmoid_topk(&x, &sel, 2, 4).is_err(),
        "k > E must be rejected"
    );
    assert_eq!(top_k(&[0.5, 0.5, 0.9], 2), vec![2, 0]);
}

#[test]
fn attention_is_causal() {
    let (t, width) = (5, 8);
    let (q, k, v) = (
        random(&[t, width], 3),
        random(&[t, width], 4),
        random(&[t, width], 5),
    );
    let base = causal_attention(&q, &k, &v, 2, 4, None).expect("attention");
    // Changing the last key/value must not change any earlier query's output.
    let (mut k2, mut v2) = (k.clone(), v.clone());
    k2.data_mut()[(t - 1) * width..]
        .iter_mut()
        .for_each(|x| *x += 1.0);
    v2.data_mut()[(t - 1) * width..]
        .iter_mut()
        .for_each(|x| *x -= 2.0);
    let changed = causal_attention(&q, &k2, &v2, 2, 4, None).expect("attention");
    assert_eq!(
        &base.data()[..(t - 1) * width],
        &changed.data()[..(t - 1) * width]
    );
    assert_ne!(base.row(t - 1), changed.row(t - 1));
    // The first query sees only the first value.
    assert!(
        base.row(0)
            .iter()
            .zip(v.row(0))
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );
}
