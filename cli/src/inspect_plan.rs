//! `switchhead inspect PLAN.shplan`: verifies a plan file (as loading it would) and prints its
//! header, model facts, interface, weights by type and layout, and op counts; with `--ir`, the
//! op list in execution order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use switchhead_compiler::model::thousands;
use switchhead_ops::op::Op;
use switchhead_ops::plan::{PlanFile, PlanGraph, read_plan};

/// Prints the summary (or the op list) of the plan at `path`.
pub fn run(path: &Path, ops: bool) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the map is read-only and dropped before returning; a file changed underneath
    // fails the checksum rather than being trusted.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mapping {}", path.display()))?;
    let plan = read_plan(&map).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let text = if ops {
        op_list(&plan.graph)
    } else {
        summary(path, &plan, map.len())
    };
    print!("{text}");
    Ok(())
}

fn summary(path: &Path, plan: &PlanFile<'_>, len: usize) -> String {
    let g = &plan.graph;
    let m = &g.meta;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan: {} (format version {}, {} bytes, checksum ok)",
        path.display(),
        plan.header.version,
        thousands(len as u64)
    );
    let _ = writeln!(s, "producer: {}", g.producer);
    let chunk = m.chunk_size.map_or("unknown".into(), |c| c.to_string());
    let _ = writeln!(
        s,
        "model: d_model {}, vocab {}, layers {}, training context {chunk}",
        m.d_model, m.vocab_size, m.n_layers
    );
    let inputs: Vec<&str> = g.inputs.iter().map(|i| i.name.as_str()).collect();
    let outputs: Vec<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    let _ = writeln!(s, "inputs: {}", short_list(&inputs));
    let _ = writeln!(s, "outputs: {}", short_list(&outputs));
    let params: usize = g.weights.iter().map(|w| w.numel()).sum();
    let _ = writeln!(
        s,
        "weights: {} tensors, {} parameters",
        g.weights.len(),
        thousands(params as u64)
    );
    let mut kinds: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for w in &g.weights {
        let layout = w.layout.name();
        let key = format!("{:?} {layout}", w.dtype).to_lowercase();
        let e = kinds.entry(key).or_default();
        e.0 += 1;
        e.1 += w.nbytes;
    }
    for (kind, (n, bytes)) in kinds {
        let _ = writeln!(s, "  {kind}: {n} tensors, {} bytes", thousands(bytes));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &g.nodes {
        *counts.entry(Op::from(&n.op).name()).or_default() += 1;
    }
    let ops: Vec<String> = counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
    let _ = writeln!(s, "nodes: {} ({})", g.nodes.len(), ops.join(", "));
    s
}

/// `a, b, c`, or for a long list `a, b, ..., z (n in all)`.
fn short_list(names: &[&str]) -> String {
    match names {
        [first, second, .., last] if names.len() > 4 => {
            format!("{first}, {second}, ..., {last} ({} in all)", names.len())
        }
        _ => names.join(", "),
    }
}

/// One line per node: `%out = Op(%in, ...)  # name`, weights shown by name.
fn op_list(g: &PlanGraph) -> String {
    let weights: BTreeMap<u32, &str> = g
        .weights
        .iter()
        .map(|w| (w.value, w.name.as_str()))
        .collect();
    let operand = |v: &u32| match weights.get(v) {
        Some(name) => format!("@{name}"),
        None => format!("%{v}"),
    };
    let mut s = String::new();
    for n in &g.nodes {
        let ins: Vec<String> = n.inputs.iter().map(operand).collect();
        let outs: Vec<String> = n.outputs.iter().map(|v| format!("%{v}")).collect();
        let op = Op::from(&n.op);
        let _ = writeln!(
            s,
            "{} = {}({})  # {}",
            outs.join(", "),
            op.name(),
            ins.join(", "),
            n.name
        );
    }
    s
}
