//! `switchhead-compile MODEL -o OUT.onnx`: import, lower, optimize, emit (ONNX, or a native
//! plan for `-o OUT.shplan` / `--format plan`).
//!
//! The compilation itself is the compiler's [`compile_to_file`] (the Python package calls it
//! too): the output is written atomically (nothing is left behind on failure) and is
//! byte-identical across runs. Stages are shown as a progress bar on stderr when it is a
//! terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use switchhead_compiler::compile::{CompileOptions, OutputFormat, Stage, compile_to_file};
use switchhead_compiler::genai::{TokenizerSource, write_genai_dir};
use switchhead_compiler::import::parse_override;
use switchhead_compiler::onnx::{ExpertForm, WeightDType};
use switchhead_compiler::passes::{PassManager, pipeline};
use switchhead_compiler::plan::PlanQuant;
use switchhead_ops::plan::QuantBits;

use crate::model_arg::ModelArg;

/// Storage type of the emitted weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

/// Weight-only quantization of the projection and expert weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantizeArg {
    /// int8, one scale per output channel.
    Int8,
    /// int4, one scale per `--group-size` reduction elements (default 32).
    Int4,
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
    /// Write an ONNX Runtime GenAI folder at `-o DIR` (RoPE models): `model.onnx` (standard ops,
    /// KV cache), `genai_config.json` and the tokenizer files, for `onnxruntime-genai`.
    #[arg(long)]
    pub genai: bool,
    /// Store weights as this type (compute stays f32).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Quantize the projection, router and expert weights and the output head (weight-only,
    /// symmetric; embeddings, LayerNorms and biases stay f32); `--quantize` alone is int4.
    #[arg(long, value_enum, value_name = "BITS", num_args = 0..=1,
          default_missing_value = "int4")]
    pub quantize: Option<QuantizeArg>,
    /// int4 quantization group: reduction elements per scale (default 32).
    #[arg(long, value_name = "N", value_parser = ["32", "64", "128"])]
    pub group_size: Option<String>,
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
        model: path.clone(),
        set: args.set.clone(),
    }
    .load()?;
    let opts = options(&args, &output)?;
    let mut printer = |pass: &str, text: &str| println!("// after {pass}\n{text}");
    let mut stage = |s: Stage| {
        bar.inc(1);
        bar.set_message(match s {
            Stage::Lowering => "lowering".to_string(),
            Stage::Passes => "running passes".to_string(),
            Stage::Emitting => "emitting ONNX".to_string(),
            Stage::Writing => format!("writing {}", output.display()),
        });
    };
    if args.genai {
        let source = tokenizer_source(&path, model.config.vocab_size)?;
        let result = write_genai_dir(
            &model,
            &output,
            &source,
            &opts,
            Some(&mut printer),
            &mut stage,
        );
        bar.finish_and_clear();
        result?.notes.iter().for_each(|n| eprintln!("note: {n}"));
        eprintln!("wrote {}/ for ONNX Runtime GenAI", output.display());
        return Ok(());
    }
    let result = compile_to_file(&model, &output, &opts, Some(&mut printer), &mut stage);
    bar.finish_and_clear();
    result?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// The tokenizer `switchhead run` would use for the model at `path`, as a GenAI export source.
fn tokenizer_source(path: &std::path::Path, vocab_size: usize) -> Result<TokenizerSource> {
    let tokenizer = switchhead_runtime::Tokenizer::for_model(path, None, vocab_size)?;
    Ok(match tokenizer.path() {
        None => TokenizerSource::Bytes,
        Some(p) if p.extension().is_some_and(|e| e == "json") => {
            TokenizerSource::HuggingFace(p.to_path_buf())
        }
        Some(p) => TokenizerSource::SentencePiece(p.to_path_buf()),
    })
}

/// The library's options for `args` writing to `output`.
fn options(args: &Args, output: &std::path::Path) -> Result<CompileOptions> {
    Ok(CompileOptions {
        format: format(args, output),
        decompose: args.decompose,
        experts: experts(args.experts),
        kv_cache: args.kv_cache,
        dtype: dtype(args.dtype),
        quantize: quantize(args)?,
        opt_level: args.opt_level,
        print_after: args.print_after.clone(),
        stop_after: args.stop_after.clone(),
    })
}

/// `--quantize` and `--group-size`, checked against each other and `--dtype`.
fn quantize(args: &Args) -> Result<Option<PlanQuant>> {
    let group = args
        .group_size
        .as_deref()
        .map(str::parse::<usize>)
        .transpose()?;
    let bits = match (args.quantize, group) {
        (None, None) => return Ok(None),
        (None, Some(_)) => bail!("--group-size applies to --quantize int4 only"),
        (Some(QuantizeArg::Int8), Some(_)) => {
            bail!(
                "--group-size applies to --quantize int4 only (int8 has one scale per output channel)"
            )
        }
        (Some(QuantizeArg::Int8), None) => QuantBits::Int8,
        (Some(QuantizeArg::Int4), _) => QuantBits::Int4,
    };
    if args.dtype != DtypeArg::F32 {
        bail!(
            "--quantize keeps embeddings, LayerNorms and biases f32; drop --dtype {:?}",
            args.dtype
        );
    }
    Ok(Some(PlanQuant {
        bits,
        group: group.unwrap_or(32),
    }))
}

fn experts(e: ExpertsArg) -> ExpertForm {
    match e {
        ExpertsArg::Dense => ExpertForm::Dense,
        ExpertsArg::Gather => ExpertForm::Gather,
    }
}

fn format(args: &Args, output: &std::path::Path) -> OutputFormat {
    match args.format {
        Some(FormatArg::Onnx) => OutputFormat::Onnx,
        Some(FormatArg::Plan) => OutputFormat::Plan,
        None => OutputFormat::for_path(output),
    }
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
