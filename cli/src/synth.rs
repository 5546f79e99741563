//! `switchhead synth`: writes a random-weight checkpoint (`model.safetensors` plus
//! `config.json`) for a paper preset or a custom size.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use switchhead_compiler::Config;
use switchhead_compiler::config::{AttentionKind, FfnKind, PosEncodingKind};
use switchhead_compiler::model::{DType, thousands};
use switchhead_compiler::synth::{PRESETS, SynthOptions, parameter_count, preset, write_model};

/// Arguments of `switchhead synth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Paper configuration to start from: c4-47m, c4-262m, wt103-262m, wt103-rope-243m,
    /// enwik8-41m, switchall-259m, dense-c4-262m.
    #[arg(long)]
    pub preset: Option<String>,
    /// Output directory (created if absent).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stored element type: f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: DType,
    #[command(flatten)]
    pub sizes: Sizes,
}

/// Custom sizes; each overrides the preset, or all essentials are required without one.
#[derive(Debug, Default, clap::Args)]
pub struct Sizes {
    #[arg(long)]
    pub d_model: Option<usize>,
    #[arg(long)]
    pub n_layers: Option<usize>,
    #[arg(long)]
    pub n_heads: Option<usize>,
    #[arg(long)]
    pub n_experts: Option<usize>,
    #[arg(long)]
    pub moe_k: Option<usize>,
    #[arg(long)]
    pub d_head: Option<usize>,
    #[arg(long)]
    pub d_ff: Option<usize>,
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// xl or rope.
    #[arg(long, value_parser = parse_pos)]
    pub pos_encoding: Option<PosEncodingKind>,
    /// dense or sigma_moe.
    #[arg(long, value_parser = parse_ffn)]
    pub ffn: Option<FfnKind>,
    #[arg(long)]
    pub ffn_n_experts: Option<usize>,
    #[arg(long)]
    pub ffn_expert_size: Option<usize>,
    #[arg(long)]
    pub ffn_k: Option<usize>,
    /// switchhead or dense.
    #[arg(long, value_parser = parse_attention)]
    pub attention: Option<AttentionKind>,
    #[arg(long)]
    pub chunk_size: Option<usize>,
}

/// Writes the checkpoint and prints where it went and its parameter count.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = build_config(&args)?;
    let opts = SynthOptions {
        seed: args.seed,
        dtype: args.dtype,
    };
    let path = write_model(&config, &args.output, &opts)
        .with_context(|| format!("writing a synthetic model to {}", args.output.display()))?;
    println!(
        "wrote {} ({} parameters, {})",
        path.display(),
        thousands(parameter_count(&config)),
        args.dtype
    );
    Ok(())
}

/// The preset (if any) with every given size applied.
fn build_config(args: &Args) -> anyhow::Result<Config> {
    let base =
        match &args.preset {
            Some(name) => Some(preset(name).with_context(|| {
                format!("unknown preset {name:?}; known: {}", PRESETS.join(", "))
            })?),
            None => None,
        };
    let s = &args.sizes;
    let mut c = match base {
        Some(c) => c,
        None => from_essentials(s)?,
    };
    apply(&mut c, s);
    Ok(c)
}

/// A config from flags alone; D, L, H, dh and V are required.
fn from_essentials(s: &Sizes) -> anyhow::Result<Config> {
    let need = |name: &str, v: Option<usize>| {
        v.with_context(|| format!("without --preset, --{} is required", name.replace('_', "-")))
    };
    let json = serde_json::json!({
        "vocab_size": need("vocab_size", s.vocab_size)?,
        "d_model": need("d_model", s.d_model)?,
        "n_layers": need("n_layers", s.n_layers)?,
        "n_heads": need("n_heads", s.n_heads)?,
        "d_head": need("d_head", s.d_head)?,
        "pos_encoding": "xl",
    });
    let c: Config = serde_json::from_value(json)?;
    if s.ffn != Some(FfnKind::SigmaMoe) && s.d_ff.is_none() {
        bail!("without --preset, --d-ff is required for a dense FFN");
    }
    Ok(c)
}

fn apply(c: &mut Config, s: &Sizes) {
    set(&mut c.d_model, s.d_model);
    set(&mut c.n_layers, s.n_layers);
    set(&mut c.n_heads, s.n_heads);
    set(&mut c.n_experts, s.n_experts);
    set(&mut c.moe_k, s.moe_k);
    set(&mut c.d_head, s.d_head);
    set(&mut c.vocab_size, s.vocab_size);
    set(&mut c.pos_encoding, s.pos_encoding);
    set(&mut c.ffn, s.ffn);
    set(&mut c.attention, s.attention);
    c.d_ff = s.d_ff.or(c.d_ff);
    c.ffn_n_experts = s.ffn_n_experts.or(c.ffn_n_experts);
    c.ffn_expert_size = s.ffn_expert_size.or(c.ffn_expert_size);
    c.ffn_k = s.ffn_k.or(c.ffn_k);
    c.chunk_size = s.chunk_size.or(c.chunk_size);
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        _ => Err(format!("expected f32, f16 or bf16, got {s:?}")),
    }
}

fn parse_json_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

fn parse_pos(s: &str) -> Result<PosEncodingKind, String> {
    parse_json_enum(s)
}

fn parse_ffn(s: &str) -> Result<FfnKind, String> {
    parse_json_enum(s)
}

fn parse_attention(s: &str) -> Result<AttentionKind, String> {
    parse_json_enum(s)
}
