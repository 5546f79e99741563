//! `switchhead-compile MODEL -o OUT.onnx`: import, lower, optimize, emit (ONNX, or a native
//! plan for `-o OUT.shplan` / `--format plan`).
//!
//! The output is written atomically (nothing is left behind on failure) and is byte-identical
//! across runs. Stages are shown as a progress bar on stderr when it is a terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use switchhead_compiler::config::PosEncodingKind;
use switchhead_compiler::import::parse_override;
use switchhead_compiler::ir::{lower, materialize};
use switchhead_compiler::onnx::{EmitOptions, ExpertForm, WeightDType, emit, write};
use switchhead_compiler::passes::{PassManager, RunOptions, pipeline};
use switchhead_compiler::plan::{PlanOptions, plan_graph, write_plan_file};

use crate::model_arg::ModelArg;

/// Storage type of the emitted weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

/// Formulation of the routed experts in the standard-op decomposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpertsArg {
    /// Every expert as plain MatMuls, weighted by the scattered top-k gates (E/k x the FLOPs).
    Dense,
    /// Gather each token's k selected expert matrices (the needed FLOPs, memory-bound).
    Gather,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// ONNX (the default unless the output ends in `.shplan`).
    Onnx,
    /// A native plan (`.shplan`) for the runtime's native executor.
    Plan,
}

/// Arguments of `switchhead-compile`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "switchhead-compile",
    version,
    about = "Compile a SwitchHead checkpoint to ONNX or a native plan (.shplan)"
)]
pub struct Args {
    /// A .safetensors or .pth checkpoint, or a directory holding one (plus config.json).
    #[arg(value_name = "MODEL", required_unless_present = "passes")]
    pub model: Option<PathBuf>,
    /// Override a config key (repeatable), as for `switchhead inspect`.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_override)]
    pub set: Vec<(String, String)>,
    /// Output file (`.onnx`, or `.shplan` for a native plan).
    #[arg(
        short,
        long,
        value_name = "OUT.onnx",
        required_unless_present = "passes"
    )]
    pub output: Option<PathBuf>,
    /// Output format; default: `plan` for a `.shplan` output, else `onnx`.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Emit standard ONNX ops only (no `ai.switchhead` custom domain).
    #[arg(long)]
    pub decompose: bool,
    /// How routed experts (attention V/O experts, σ-MoE) are decomposed: in the `--decompose`
    /// graph and in the custom ops' function bodies.
    #[arg(long, value_enum, default_value_t = ExpertsArg::Dense)]
    pub experts: ExpertsArg,
    /// KV-cache interface for incremental decoding (RoPE models only): per layer i,
    /// `past_key_values.{i}.key/value` inputs and `present.{i}.key/value` outputs.
    #[arg(long)]
    pub kv_cache: bool,
    /// Store weights as this type (compute stays f32).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Print the IR text form after this pass (to stdout).
    #[arg(long, value_name = "PASS")]
    pub print_after: Option<String>,
    /// Run the pipeline only up to and including this pass.
    #[arg(long, value_name = "PASS")]
    pub stop_after: Option<String>,
    /// List the pass pipeline and exit.
    #[arg(long)]
    pub passes: bool,
    /// Optimization level: `-O0` runs only shape inference, `-O1` (the default) the whole
    /// pipeline.
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=1))]
    pub opt_level: u8,
}

/// Runs `switchhead-compile`.
pub fn run(args: Args) -> Result<()> {
    let manager = PassManager::new(pipeline(args.opt_level));
    if args.passes {
        manager.names().iter().for_each(|n| println!("{n}"));
        return Ok(());
    }
    let (Some(output), Some(path)) = (args.output.clone(), args.model.clone()) else {
        bail!("usage: switchhead-compile MODEL -o OUT.onnx")
    };
    let bar = progress(5);
    bar.set_message("loading checkpoint");
    let model = ModelArg {
        model: path,
        set: args.set.clone(),
    }
    .load()?;
    if args.kv_cache && model.config.pos_encoding == PosEncodingKind::Xl {
        bar.finish_and_clear();
        bail!(
            "--kv-cache needs a RoPE model: Transformer-XL models carry their state in the memory.{{i}} inputs instead"
        );
    }
    bar.inc(1);
    bar.set_message("lowering");
    let mut graph = lower(&model);
    bar.inc(1);
    bar.set_message("running passes");
    let mut printer = |pass: &str, text: &str| println!("// after {pass}\n{text}");
    let opts = RunOptions {
        print_after: args.print_after.clone(),
        stop_after: args.stop_after.clone(),
        printer: Some(&mut printer),
    };
    manager.run(&mut graph, opts)?;
    bar.inc(1);
    if format(&args, &output) == FormatArg::Plan {
        if args.decompose || args.kv_cache {
            bar.finish_and_clear();
            bail!("--decompose and --kv-cache apply to ONNX output only");
        }
        bar.set_message(format!("writing plan {}", output.display()));
        let opts = PlanOptions {
            dtype: dtype(args.dtype),
            chunk_size: model.config.chunk_size,
            // Layout choice is an optimization: -O0 keeps the checkpoint's order.
            panels: args.opt_level > 0,
        };
        // the weights the passes derived (folded LayerNorms), computed once
        let weights = materialize(&graph, &model.weights)?;
        write_plan_file(&plan_graph(&graph, &weights, &opts)?, &weights, &output)?;
        bar.finish_and_clear();
        eprintln!("wrote {}", output.display());
        return Ok(());
    }
    bar.set_message("emitting ONNX");
    let proto = emit(
        &graph,
        &model.weights,
        &EmitOptions {
            decompose: args.decompose,
            dtype: dtype(args.dtype),
            kv_cache: args.kv_cache,
            chunk_size: model.config.chunk_size,
            experts: experts(args.experts),
        },
    )?;
    bar.inc(1);
    bar.set_message(format!("writing {}", output.display()));
    write(proto, &output)?;
    bar.finish_and_clear();
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn experts(e: ExpertsArg) -> ExpertForm {
    match e {
        ExpertsArg::Dense => ExpertForm::Dense,
        ExpertsArg::Gather => ExpertForm::Gather,
    }
}

fn format(args: &Args, output: &std::path::Path) -> FormatArg {
    let plan_ext = output.extension().is_some_and(|e| e == "shplan");
    args.format.unwrap_or(if plan_ext {
        FormatArg::Plan
    } else {
        FormatArg::Onnx
    })
}

fn dtype(d: DtypeArg) -> WeightDType {
    match d {
        DtypeArg::F32 => WeightDType::F32,
        DtypeArg::F16 => WeightDType::F16,
        DtypeArg::Bf16 => WeightDType::BF16,
    }
}

/// A stage bar on stderr; indicatif draws nothing when stderr is not a terminal.
fn progress(stages: u64) -> ProgressBar {
    let bar = ProgressBar::new(stages);
    let style = ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
