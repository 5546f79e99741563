//! `Metrics`: the counters `GET /metrics` shows in Prometheus' text format, updated by the
//! handlers (requests by endpoint and status) and the engine (tokens, queue, decode steps).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the decode-step histogram's buckets.
const STEP_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
];

/// The server's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by (endpoint, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Requests waiting for a place in the batch.
    pub queue_depth: AtomicU64,
    /// Sequences in the batch.
    pub active: AtomicU64,
    steps: AtomicU64,
    step_rows: AtomicU64,
    step_micros: AtomicU64,
    step_buckets: [AtomicU64; STEP_BUCKETS.len()],
}

impl Metrics {
    /// Counts a response.
    pub fn request(&self, endpoint: &str, status: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((endpoint.to_string(), status)).or_default() += 1;
        }
    }

    /// Records one decode step over `rows` sequences.
    pub fn step(&self, rows: usize, took: Duration) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.step_rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.step_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, count) in STEP_BUCKETS.iter().zip(&self.step_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Everything in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_requests(&mut out);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let simple = [
            (
                "prompt_tokens_total",
                "counter",
                "Prompt tokens prefilled.",
                get(&self.prompt_tokens),
            ),
            (
                "generated_tokens_total",
                "counter",
                "Tokens generated.",
                get(&self.generated_tokens),
            ),
            (
                "queue_depth",
                "gauge",
                "Requests waiting for a place in the batch.",
                get(&self.queue_depth),
            ),
            (
                "active_sequences",
                "gauge",
                "Sequences in the decode batch.",
                get(&self.active),
            ),
            (
                "decode_step_rows_total",
                "counter",
                "Sequences summed over decode steps (rows / steps = mean batch).",
                get(&self.step_rows),
            ),
        ];
        for (name, kind, help, value) in simple {
            metric_head(&mut out, name, kind, help);
            let _ = writeln!(out, "switchhead_{name} {value}");
        }
        self.render_steps(&mut out);
        out
    }

    fn render_requests(&self, out: &mut String) {
        metric_head(
            out,
            "requests_total",
            "counter",
            "HTTP responses by endpoint and status.",
        );
        if let Ok(map) = self.requests.lock() {
            for ((endpoint, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "switchhead_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
        }
    }

    fn render_steps(&self, out: &mut String) {
        let name = "decode_step_seconds";
        metric_head(out, name, "histogram", "Time per shared decode step.");
        for (bound, count) in STEP_BUCKETS.iter().zip(&self.step_buckets) {
            let n = count.load(Ordering::Relaxed);
            let _ = writeln!(out, "switchhead_{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let steps = self.steps.load(Ordering::Relaxed);
        let sum = self.step_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "switchhead_{name}_bucket{{le=\"+Inf\"}} {steps}");
        let _ = writeln!(out, "switchhead_{name}_sum {sum}");
        let _ = writeln!(out, "switchhead_{name}_count {steps}");
    }
}

fn metric_head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP switchhead_{name} {help}");
    let _ = writeln!(out, "# TYPE switchhead_{name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request("/v1/completions", 200);
        m.request("/v1/completions", 200);
        m.step(4, Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains(
                "switchhead_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("switchhead_decode_step_seconds_bucket{le=\"0.002\"} 0"));
        assert!(text.contains("switchhead_decode_step_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("switchhead_decode_step_seconds_count 1"));
        assert!(text.contains("switchhead_decode_step_rows_total 4"));
    }
}
