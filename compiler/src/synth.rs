//! Synthetic checkpoints: the paper's configurations (SPEC.md section 5) with random weights.
//!
//! [`write_model`] streams `model.safetensors` tensor by tensor (no full copy in memory) and
//! writes `config.json` beside it. Both go to temporary files in the target directory first and
//! are renamed into place only when both are complete, so an error leaves nothing behind.
//! The weights are a deterministic function of the config, the seed and the dtype.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{AttentionKind, Config, FfnKind, PosEncodingKind};
use crate::import::{ExpectedTensor, Init, expected_tensors, validate_config};
use crate::model::DType;

/// Names of the built-in presets.
pub const PRESETS: [&str; 7] = [
    "c4-47m",
    "c4-262m",
    "wt103-262m",
    "wt103-rope-243m",
    "enwik8-41m",
    "switchall-259m",
    "dense-c4-262m",
];

/// Why a synthetic model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The config is invalid on its own.
    #[error("invalid config: {0}")]
    BadConfig(String),
    /// Writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The preset called `name` (one of [`PRESETS`]).
///
/// `dense-c4-262m` is the paper's dense Transformer-XL baseline without its u/v content and
/// position biases (our dense attention has none), so it has 262,443,068 parameters rather
/// than the paper's 262,479,968.
pub fn preset(name: &str) -> Option<Config> {
    let c = match name {
        "c4-47m" => switchhead(412, 16, (2, 5, 3, 76), 2080, 256),
        "c4-262m" => switchhead(1024, 18, (4, 4, 2, 112), 4188, 512),
        "wt103-262m" => switchhead(1024, 18, (2, 8, 4, 132), 4147, 512),
        "wt103-rope-243m" => Config {
            pos_encoding: PosEncodingKind::Rope,
            ..switchhead(1024, 18, (4, 4, 2, 100), 4136, 1024)
        },
        "enwik8-41m" => Config {
            vocab_size: 256,
            ..switchhead(512, 12, (2, 4, 2, 112), 2088, 512)
        },
        "switchall-259m" => Config {
            d_ff: None,
            ffn: FfnKind::SigmaMoe,
            ffn_n_experts: Some(32),
            ffn_expert_size: Some(128),
            ffn_k: Some(4),
            ..switchhead(1024, 18, (4, 4, 2, 112), 0, 512)
        },
        "dense-c4-262m" => Config {
            attention: AttentionKind::Dense,
            ..switchhead(1024, 18, (16, 1, 1, 64), 4110, 512)
        },
        _ => return None,
    };
    Some(c)
}

/// A SwitchHead-XL config with V = 8000; `heads` is `(H, E, k, dh)`.
fn switchhead(
    d_model: usize,
    n_layers: usize,
    heads: (usize, usize, usize, usize),
    d_ff: usize,
    chunk: usize,
) -> Config {
    let (n_heads, n_experts, moe_k, d_head) = heads;
    Config {
        vocab_size: 8000,
        d_model,
        n_layers,
        n_heads,
        n_experts,
        moe_k,
        d_head,
        d_ff: Some(d_ff),
        pos_encoding: PosEncodingKind::Xl,
        rotate_fraction: 0.5,
        rope_base: 10000.0,
        ffn: FfnKind::Dense,
        ffn_n_experts: None,
        ffn_expert_size: None,
        ffn_k: None,
        layer_norm_eps: 1e-5,
        chunk_size: Some(chunk),
        attention: AttentionKind::Switchhead,
    }
}

/// Number of parameters of the model `config` describes.
pub fn parameter_count(config: &Config) -> u64 {
    expected_tensors(config)
        .iter()
        .map(ExpectedTensor::numel)
        .sum()
}

/// Options of [`write_model`].
#[derive(Debug, Clone, Copy)]
pub struct SynthOptions {
    /// Seed of the ChaCha8 generator.
    pub seed: u64,
    /// Stored element type.
    pub dtype: DType,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            seed: 0,
            dtype: DType::F32,
        }
    }
}

/// Writes `dir/model.safetensors` (config also in its `__metadata__`) and `dir/config.json`;
/// returns the checkpoint path.
pub fn write_model(
    config: &Config,
    dir: &Path,
    opts: &SynthOptions,
) -> Result<PathBuf, SynthError> {
    validate_config(config).map_err(SynthError::BadConfig)?;
    let existed = dir.exists();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let model = dir.join("model.safetensors");
    let config_path = dir.join("config.json");
    let tmp_model = dir.join(format!(".model.safetensors.tmp.{}", std::process::id()));
    let tmp_config = dir.join(format!(".config.json.tmp.{}", std::process::id()));
    let result = write_both(config, opts, &tmp_model, &tmp_config)
        .and_then(|()| std::fs::rename(&tmp_config, &config_path).map_err(io_err(&config_path)))
        .and_then(|()| std::fs::rename(&tmp_model, &model).map_err(io_err(&model)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_model);
        let _ = std::fs::remove_file(&tmp_config);
        if !existed {
            // Only removes the directory we created, and only if it is still empty.
            let _ = std::fs::remove_dir(dir);
        }
    }
    result.map(|()| model)
}

fn write_both(
    config: &Config,
    opts: &SynthOptions,
    model: &Path,
    config_path: &Path,
) -> Result<(), SynthError> {
    let json =
        serde_json::to_string_pretty(config).map_err(|e| SynthError::BadConfig(e.to_string()))?;
    std::fs::write(config_path, format!("{json}\n")).map_err(io_err(config_path))?;
    write_safetensors(config, opts, &json, model).map_err(io_err(model))
}

/// Streams the checkpoint: header, then each tensor's elements generated block by block.
fn write_safetensors(
    config: &Config,
    opts: &SynthOptions,
    config_json: &str,
    path: &Path,
) -> std::io::Result<()> {
    let tensors = expected_tensors(config);
    let header = header(&tensors, opts.dtype, config_json)?;
    let file = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    for (index, t) in tensors.iter().enumerate() {
        write_tensor(&mut out, t, index as u64, opts)?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// The JSON header, space-padded to a multiple of 8 bytes.
fn header(tensors: &[ExpectedTensor], dtype: DType, config_json: &str) -> std::io::Result<Vec<u8>> {
    let mut map = serde_json::Map::new();
    let meta = serde_json::json!({ "format": "pt", "config": config_json });
    map.insert("__metadata__".into(), meta);
    let mut offset = 0usize;
    for t in tensors {
        let len = t.numel() as usize * dtype.size();
        let entry = serde_json::json!({
            "dtype": safetensors_dtype(dtype),
            "shape": t.shape(),
            "data_offsets": [offset, offset + len],
        });
        map.insert(t.name.clone(), entry);
        offset += len;
    }
    let mut bytes =
        serde_json::to_vec(&serde_json::Value::Object(map)).map_err(std::io::Error::other)?;
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    Ok(bytes)
}

fn safetensors_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
    }
}

/// Writes one tensor; its generator is the seed's ChaCha8 stream number `index`.
fn write_tensor(
    out: &mut impl Write,
    t: &ExpectedTensor,
    index: u64,
    opts: &SynthOptions,
) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(index);
    let (lo, hi) = range(t.init);
    let mut left = t.numel() as usize;
    let mut buf = Vec::with_capacity(BLOCK * 4);
    while left > 0 {
        let n = left.min(BLOCK);
        buf.clear();
        for _ in 0..n {
            let x = if lo == hi {
                lo
            } else {
                lo + (hi - lo) * rng.random::<f32>()
            };
            push(&mut buf, x, opts.dtype);
        }
        out.write_all(&buf)?;
        left -= n;
    }
    Ok(())
}

/// Elements generated per block.
const BLOCK: usize = 1 << 16;

/// Uniform range with standard deviation `1/sqrt(fan_in)` for weights, PyTorch's linear-bias
/// range `±1/sqrt(fan_in)` for biases.
fn range(init: Init) -> (f32, f32) {
    match init {
        Init::Ones => (1.0, 1.0),
        Init::Zeros => (0.0, 0.0),
        Init::Weight { fan_in } => {
            let a = (3.0 / fan_in.max(1) as f32).sqrt();
            (-a, a)
        }
        Init::Bias { fan_in } => {
            let a = 1.0 / (fan_in.max(1) as f32).sqrt();
            (-a, a)
        }
    }
}

fn push(buf: &mut Vec<u8>, x: f32, dtype: DType) {
    match dtype {
        DType::F32 => buf.extend_from_slice(&x.to_le_bytes()),
        DType::F16 => buf.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
        DType::BF16 => buf.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
    }
}

/// Wraps an I/O error with the path it concerns.
fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}
