//! Pairing tests for the dense kernels (Linear, DenseFfn, LayerNorm, Embedding, Softmax,
//! ConcatSeq) against their `switchhead_ops` references on random inputs, one to three
//! threads; the projections with their weights row-major and in the plan's `panels` layout.

mod common;

use common::{assert_close, random};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use switchhead_kernels::{
    DenseFfnWeights, WeightLayout, WeightRef, concat_seq, dense_ffn, embedding, layer_norm,
    linear_with, softmax_rows,
};
use switchhead_ops::plan::to_panels;

#[test]
fn linear_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let shapes = [
        (1, 7, 5),
        (3, 40, 200),
        (1, 17, 129),
        (37, 33, 65),
        (100, 64, 3),
        (30, 300, 70),
    ];
    for (rows, i, o) in shapes {
        let x = random(&mut rng, &[rows, i], 1.0);
        let w = random(&mut rng, &[o, i], 0.5);
        let b = random(&mut rng, &[o], 0.5);
        let panels = to_panels(w.data(), o, i);
        let stored = [
            (WeightLayout::RowMajor, w.data()),
            (WeightLayout::Panels, &panels[..]),
        ];
        for (layout, data) in stored {
            for bias in [Some(&b), None] {
                let want = switchhead_ops::linear::linear(&x, &w, bias).expect("ref");
                let bias = bias.map(|b| b.data());
                for threads in [1, 2, 3] {
                    let w = WeightRef::F32(data, layout);
                    let got = linear_with(x.data(), rows, i, w, bias, o, threads).expect("kernel");
                    assert_close(&got, want.data(), 1e-5);
                }
            }
        }
    }
}

#[test]
fn dense_ffn_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // Many rows (row blocks per thread; 450 rows: several 192-row hidden blocks per thread)
    // and decode-sized (column blocks per thread).
    for (rows, d, f) in [(45, 24, 70), (2, 130, 300), (40, 270, 90), (450, 20, 36)] {
        let x = random(&mut rng, &[rows, d], 1.0);
        let (w1, b1) = (random(&mut rng, &[f, d], 0.3), random(&mut rng, &[f], 0.3));
        let (w2, b2) = (random(&mut rng, &[d, f], 0.3), random(&mut rng, &[d], 0.3));
        let want = switchhead_ops::ffn::dense_ffn(&x, &w1, &b1, &w2, &b2).expect("ref");
        let (p1, p2) = (to_panels(w1.data(), f, d), to_panels(w2.data(), d, f));
        let stored = [
            (WeightLayout::RowMajor, w1.data(), w2.data()),
            (WeightLayout::Panels, &p1[..], &p2[..]),
        ];
        for (layout, w1, w2) in stored {
            let w = DenseFfnWeights {
                w1: WeightRef::F32(w1, layout),
                b1: b1.data(),
                w2: WeightRef::F32(w2, layout),
                b2: b2.data(),
                d_ff: f,
            };
            for threads in [1, 2, 3] {
                let got = dense_ffn(&w, x.data(), rows, d, threads).expect("kernel");
                assert_close(&got, want.data(), 1e-5);
            }
        }
    }
}

#[test]
fn layer_norm_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (rows, d) = (130, 40);
    let x = random(&mut rng, &[rows, d], 3.0);
    let (w, b) = (random(&mut rng, &[d], 1.0), random(&mut rng, &[d], 1.0));
    let want = switchhead_ops::layer_norm::layer_norm(&x, &w, &b, 1e-5).expect("ref");
    for threads in [1, 2] {
        let got = layer_norm(x.data(), d, w.data(), b.data(), 1e-5, threads).expect("kernel");
        assert_close(&got, want.data(), 1e-5);
    }
}

#[test]
fn embedding_matches_reference_and_rejects_bad_ids() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let table = random(&mut rng, &[11, 6], 1.0);
    let ids = [0i64, 10, 3, 3];
    let want = switchhead_ops::embedding::embedding(&table, &ids).expect("ref");
    assert_eq!(
        embedding(table.data(), 11, 6, &ids).expect("kernel"),
        want.data()
    );
    assert!(embedding(table.data(), 11, 6, &[11]).is_err());
    assert!(embedding(table.data(), 11, 6, &[-1]).is_err());
}

#[test]
fn softmax_and_concat() {
    let mut x = vec![1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
    softmax_rows(&mut x, 3).expect("softmax");
    assert_close(&x[3..], &[1.0 / 3.0; 3], 1e-6);
    assert!((x[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    let a = [1.0f32, 2.0, 3.0, 4.0]; // [2, 1, 2]
    let b = [5.0f32, 6.0, 7.0, 8.0]; // [2, 1, 2]
    let y = concat_seq(&a, 1, &b, 1, 2, 2).expect("concat");
    assert_eq!(y, [1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]);
}
