//! GEMM throughput of the `Linear` kernel: `linear_bench [threads]` times `[m, k] x [n, k]^T`
//! for the c4-47m projection, FFN and output shapes, with the weight row-major and in the
//! plan's `panels` layout, and prints the best of 8 runs in GFLOP/s (this machine's speed
//! moves between runs; compare layouts within one run).

use std::time::Instant;

use switchhead_kernels::WeightLayout;

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for (m, k, n) in [
        (256, 412, 2080),
        (256, 2080, 412),
        (2048, 412, 2080),
        (2048, 412, 162),
        (256, 412, 8000),
        (1024, 1024, 1024),
    ] {
        let x: Vec<f32> = (0..m * k).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i % 5) as f32 - 2.0) * 0.1).collect();
        let panels = switchhead_ops::plan::to_panels(&w, n, k);
        let b = vec![0.5f32; n];
        for (data, layout) in [
            (&w, WeightLayout::RowMajor),
            (&panels, WeightLayout::Panels),
        ] {
            let run = || {
                let w = switchhead_kernels::WeightRef::F32(data, layout);
                switchhead_kernels::linear_with(&x, m, k, w, Some(&b), n, threads)
                    .expect("shapes are consistent")
            };
            run();
            let mut best = f64::MAX;
            for _ in 0..8 {
                let t = Instant::now();
                std::hint::black_box(run());
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
            println!(
                "[{m},{k}]x[{n},{k}]^T {layout:?} threads {threads}: {:.2} ms, {gflops:.0} GFLOP/s",
                best * 1e3
            );
        }
    }
}
