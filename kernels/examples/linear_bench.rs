//! GEMM throughput of the `Linear` kernel: `linear_bench [threads]` times `[m, k] x [n, k]^T`
//! for the c4-47m FFN and output shapes and prints GFLOP/s.

use std::time::Instant;

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for (m, k, n) in [
        (256, 412, 2080),
        (256, 2080, 412),
        (2048, 412, 2080),
        (256, 412, 8000),
        (1024, 1024, 1024),
    ] {
        let x: Vec<f32> = (0..m * k).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i % 5) as f32 - 2.0) * 0.1).collect();
        let b = vec![0.5f32; n];
        let run = || switchhead_kernels::linear(&x, m, k, &w, Some(&b), n, threads).unwrap();
        run();
        let iters = 10;
        let t = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(run());
        }
        let s = t.elapsed().as_secs_f64() / iters as f64;
        let gflops = 2.0 * (m * k * n) as f64 / s / 1e9;
        println!(
            "[{m},{k}]x[{n},{k}]^T threads {threads}: {:.2} ms, {gflops:.0} GFLOP/s",
            s * 1e3
        );
    }
}
