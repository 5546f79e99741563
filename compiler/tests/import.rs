//! Import tests: every layout and variant we accept, and every error case with its variant
//! and a one-line message naming the file and the tensor or key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use switchhead_compiler::config::{AttentionKind, FfnKind, PosEncodingKind};
use switchhead_compiler::import::{LoadOptions, expected_tensors, load_model, parse_override};
use switchhead_compiler::model::Layout;
use switchhead_compiler::{Config, ImportError, Model, synth};

// ---------- fixtures ----------

/// A fresh, empty directory under the system temp dir.
fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "switchhead-import-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A tiny SwitchHead-XL config: D=8, L=2, H=2, E=3, k=2, dh=4, d_ff=12, V=16.
fn tiny() -> Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 16, "d_model": 8, "n_layers": 2, "n_heads": 2, "n_experts": 3,
        "moe_k": 2, "d_head": 4, "d_ff": 12, "pos_encoding": "xl"
    }))
    .expect("tiny config")
}

/// One tensor of a fixture: dtype, shape and f32 values (converted on write).
#[derive(Clone)]
struct T {
    dtype: Dtype,
    shape: Vec<usize>,
    values: Vec<f32>,
}

type Tensors = BTreeMap<String, T>;

/// Values exactly representable in f16 and bf16.
fn values(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + seed * 3) % 11) as f32 * 0.25 - 1.25)
        .collect()
}

/// Every tensor `c` requires, in f32.
fn tensors_for(c: &Config) -> Tensors {
    expected_tensors(c)
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let shape = e.shape();
            let values = values(i, shape.iter().product());
            (
                e.name,
                T {
                    dtype: Dtype::F32,
                    shape,
                    values,
                },
            )
        })
        .collect()
}

fn bytes(t: &T) -> Vec<u8> {
    match t.dtype {
        Dtype::F32 => t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => t
            .values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => t
            .values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::I64 => t
            .values
            .iter()
            .flat_map(|v| (*v as i64).to_le_bytes())
            .collect(),
        Dtype::I32 => t
            .values
            .iter()
            .flat_map(|v| (*v as i32).to_le_bytes())
            .collect(),
        other => panic!("fixture dtype {other:?} not supported"),
    }
}

/// Writes `tensors` to `path` with an optional `config` metadata entry.
fn write_st(path: &Path, tensors: &Tensors, config_meta: Option<&Config>) {
    let data: Vec<(String, Vec<u8>, &T)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), bytes(t), t))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, b, t)| {
            (
                n.clone(),
                TensorView::new(t.dtype, t.shape.clone(), b).expect("view"),
            )
        })
        .collect();
    let meta = config_meta.map(|c| {
        HashMap::from([(
            "config".to_string(),
            serde_json::to_string(c).expect("config json"),
        )])
    });
    safetensors::serialize_to_file(views, meta, path).expect("write safetensors");
}

fn write_config(dir: &Path, c: &Config) {
    let json = serde_json::to_string_pretty(c).expect("config json");
    std::fs::write(dir.join("config.json"), json).expect("write config");
}

/// A directory holding `model.safetensors` (from `tensors`) and `config.json` (from `c`).
fn fixture(tag: &str, c: &Config, tensors: &Tensors) -> PathBuf {
    let dir = tmpdir(tag);
    write_st(&dir.join("model.safetensors"), tensors, None);
    write_config(&dir, c);
    dir
}

fn load(path: &Path) -> Result<Model, ImportError> {
    load_model(path, &LoadOptions::default())
}

fn load_with(path: &Path, overrides: &[&str]) -> Result<Model, ImportError> {
    let overrides = overrides
        .iter()
        .map(|s| parse_override(s).expect("override"))
        .collect();
    load_model(path, &LoadOptions { overrides })
}

/// The error, checking that its message is one line and names the file and `mentions`.
fn err(result: Result<Model, ImportError>, mentions: &[&str]) -> ImportError {
    let e = match result {
        Ok(m) => panic!("expected an error, loaded {}", m.describe()),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "multi-line message: {msg}");
    for m in mentions {
        assert!(msg.contains(m), "message {msg:?} does not mention {m:?}");
    }
    e
}

fn rename(tensors: &mut Tensors, from: &str, to: &str) {
    let t = tensors.remove(from).expect("tensor to rename");
    tensors.insert(to.to_string(), t);
}

fn set_shape(tensors: &mut Tensors, name: &str, shape: Vec<usize>) {
    let n = shape.iter().product();
    tensors.insert(
        name.to_string(),
        T {
            dtype: Dtype::F32,
            shape,
            values: values(0, n),
        },
    );
}

const Q0: &str = "unique_layers.0.self_attn.projections.q";
const V1: &str = "unique_layers.1.self_attn.projections.v";
const POS0: &str = "unique_layers.0.self_attn.pos_to_pk";

// ---------- happy paths ----------

#[test]
fn training_layout_loads_with_all_values() {
    let c = tiny();
    let tensors = tensors_for(&c);
    let dir = fixture("training", &c, &tensors);
    let m = load(&dir).expect("load");
    assert_eq!(m.layout, Layout::Training);
    assert_eq!(m.config, c);
    assert_eq!(m.source, dir.join("model.safetensors"));
    assert_eq!(m.weights.parameter_count(), synth::parameter_count(&c));
    let names: Vec<&str> = m.weights.names().collect();
    let want: Vec<&str> = tensors.keys().map(String::as_str).collect();
    assert_eq!(names, want);
    for (name, t) in &tensors {
        let got = m.weights.tensor(name).expect("tensor");
        assert_eq!(got.shape(), t.shape.as_slice());
        assert_eq!(got.data(), t.values.as_slice(), "{name}");
    }
    assert!(m.describe().contains("parameters: "));
}

#[test]
fn file_path_works_as_well_as_directory() {
    let c = tiny();
    let dir = fixture("filepath", &c, &tensors_for(&c));
    let m = load(&dir.join("model.safetensors")).expect("load");
    assert_eq!(m.config, c);
}

fn standalone_names(c: &Config, tensors: &mut Tensors, prefix: impl Fn(usize) -> String) {
    for i in 0..c.n_layers {
        let p = prefix(i);
        let l = format!("unique_layers.{i}.self_attn.");
        for (from, to) in [
            ("projections.q", "q.weight"),
            ("projections.k", "k.weight"),
            ("projections.v", "v"),
            ("projections.o", "o"),
            ("selections.v", "sel_v"),
            ("selections.o", "sel_o"),
            ("pos_to_pk", "pos_to_pk"),
        ] {
            rename(tensors, &format!("{l}{from}"), &format!("{p}.{to}"));
        }
    }
}

#[test]
fn standalone_layout_under_a_prefix_maps_to_canonical_names() {
    let c = tiny();
    let canonical = tensors_for(&c);
    let mut tensors = canonical.clone();
    standalone_names(&c, &mut tensors, |i| format!("blocks.{i}.mixer.attn"));
    let dir = fixture("standalone", &c, &tensors);
    let m = load(&dir).expect("load");
    assert_eq!(
        m.layout,
        Layout::Standalone {
            prefix_example: "blocks.0.mixer.attn".into()
        }
    );
    let names: Vec<&str> = m.weights.names().collect();
    let want: Vec<&str> = canonical.keys().map(String::as_str).collect();
    assert_eq!(names, want);
    assert_eq!(m.weights.file_name(V1), Some("blocks.1.mixer.attn.v"));
    assert_eq!(
        m.weights.tensor(V1).expect("v").data(),
        canonical[V1].values.as_slice()
    );
}

#[test]
fn standalone_two_modules_for_one_layer_are_rejected() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    standalone_names(&c, &mut tensors, |i| format!("blocks.{i}.attn"));
    rename(&mut tensors, "blocks.1.attn.sel_o", "blocks.1.other.sel_o");
    let dir = fixture("standalone2", &c, &tensors);
    let e = err(
        load(&dir),
        &["model.safetensors", "blocks.1.attn", "blocks.1.other"],
    );
    assert!(matches!(e, ImportError::Unsupported { .. }), "{e:?}");
}

#[test]
fn global_prefixes_are_stripped() {
    let c = tiny();
    for prefix in ["module.", "model.", "module.model."] {
        let tensors: Tensors = tensors_for(&c)
            .into_iter()
            .map(|(n, t)| (format!("{prefix}{n}"), t))
            .collect();
        let dir = fixture("prefix", &c, &tensors);
        let m = load(&dir).unwrap_or_else(|e| panic!("{prefix}: {e}"));
        assert_eq!(m.layout, Layout::Training);
        assert!(m.weights.info(Q0).is_some());
        assert_eq!(
            m.weights.file_name(Q0),
            Some(format!("{prefix}{Q0}").as_str())
        );
    }
}

#[test]
fn f16_and_bf16_are_widened_to_f32() {
    let c = tiny();
    for dtype in [Dtype::F16, Dtype::BF16] {
        let mut tensors = tensors_for(&c);
        for t in tensors.values_mut() {
            t.dtype = dtype;
        }
        let dir = fixture("half", &c, &tensors);
        let m = load(&dir).expect("load");
        let got = m.weights.tensor(V1).expect("v");
        assert_eq!(got.data(), tensors[V1].values.as_slice());
        let want = if dtype == Dtype::F16 { "f16" } else { "bf16" };
        assert_eq!(m.weights.info(V1).map(|i| i.dtype.name()), Some(want));
        assert!(m.describe().contains(&format!("dtype: {want}")));
    }
}

#[test]
fn statistics_buffer_is_ignored_in_any_layer_and_dtype() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    for (i, dtype) in [(0, Dtype::F32), (1, Dtype::I64)] {
        let name = format!("unique_layers.{i}.pkm.kv_sel_counts_100");
        tensors.insert(
            name,
            T {
                dtype,
                shape: vec![3, 4],
                values: values(1, 12),
            },
        );
    }
    let dir = fixture("buffer", &c, &tensors);
    let m = load(&dir).expect("load");
    assert!(m.weights.names().all(|n| !n.contains("kv_sel_counts")));
    assert_eq!(m.weights.parameter_count(), synth::parameter_count(&c));
}

#[test]
fn config_from_safetensors_metadata() {
    let c = tiny();
    let dir = tmpdir("meta");
    write_st(&dir.join("model.safetensors"), &tensors_for(&c), Some(&c));
    let m = load(&dir).expect("load");
    assert_eq!(m.config, c);
}

#[test]
fn config_json_wins_over_metadata() {
    let c = tiny();
    let dir = tmpdir("meta-json");
    let meta = Config {
        moe_k: 1,
        ..c.clone()
    };
    write_st(
        &dir.join("model.safetensors"),
        &tensors_for(&c),
        Some(&meta),
    );
    write_config(&dir, &c);
    assert_eq!(load(&dir).expect("load").config.moe_k, 2);
}

#[test]
fn overrides_apply_json_values_and_strings() {
    let c = Config {
        pos_encoding: PosEncodingKind::Rope,
        ..tiny()
    };
    let tensors = tensors_for(&tiny()); // XL tensors (with pos_to_pk)
    let dir = fixture("override", &c, &tensors);
    err(load(&dir), &["model.safetensors", POS0]);
    let m = load_with(&dir, &["pos_encoding=xl", "moe_k=3", "chunk_size=64"]).expect("load");
    assert_eq!(m.config.pos_encoding, PosEncodingKind::Xl);
    assert_eq!(m.config.moe_k, 3);
    assert_eq!(m.config.chunk_size, Some(64));
}

#[test]
fn parse_override_needs_key_and_equals() {
    assert_eq!(parse_override("moe_k=3"), Ok(("moe_k".into(), "3".into())));
    assert_eq!(parse_override("a=b=c"), Ok(("a".into(), "b=c".into())));
    assert!(parse_override("moe_k").is_err());
    assert!(parse_override("=3").is_err());
}

#[test]
fn gated_e1_variant_loads() {
    let c = Config {
        n_experts: 1,
        moe_k: 1,
        ..tiny()
    };
    let tensors = tensors_for(&c);
    assert_eq!(
        tensors["unique_layers.0.self_attn.projections.v"].shape,
        vec![8, 8]
    );
    assert_eq!(
        tensors["unique_layers.0.self_attn.projections.o"].shape,
        vec![8, 8]
    );
    assert_eq!(
        tensors["unique_layers.0.self_attn.selections.o"].shape,
        vec![2, 8]
    );
    assert!(!tensors.contains_key("unique_layers.0.self_attn.selections.v"));
    let dir = fixture("e1", &c, &tensors);
    assert_eq!(load(&dir).expect("load").config, c);
}

#[test]
fn dense_attention_variant_loads() {
    let c = Config {
        attention: AttentionKind::Dense,
        d_head: 3,
        ..tiny()
    };
    let tensors = tensors_for(&c);
    assert_eq!(
        tensors["unique_layers.0.self_attn.projections.o"].shape,
        vec![8, 6]
    );
    assert!(tensors.keys().all(|n| !n.contains("selections")));
    let dir = fixture("dense", &c, &tensors);
    assert_eq!(load(&dir).expect("load").config, c);
}

#[test]
fn sigma_moe_ffn_loads_and_checks_expert_sizes() {
    let c = Config {
        ffn: FfnKind::SigmaMoe,
        d_ff: None,
        ffn_n_experts: Some(5),
        ffn_expert_size: Some(6),
        ffn_k: Some(2),
        ..tiny()
    };
    let mut tensors = tensors_for(&c);
    let dir = fixture("moe", &c, &tensors);
    assert_eq!(load(&dir).expect("load").config, c);
    set_shape(&mut tensors, "unique_layers.1.pkm.keys", vec![5, 8, 7]);
    let dir = fixture("moe-bad", &c, &tensors);
    let e = err(
        load(&dir),
        &[
            "ffn_expert_size = 6",
            "unique_layers.1.pkm.keys",
            "[5, 8, 7]",
        ],
    );
    assert!(
        matches!(e, ImportError::ConfigContradiction { .. }),
        "{e:?}"
    );
}

// ---------- errors ----------

#[test]
fn missing_tensor() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    tensors.remove(V1);
    let dir = fixture("missing", &c, &tensors);
    let e = err(load(&dir), &["model.safetensors", V1]);
    assert!(matches!(e, ImportError::MissingTensor { .. }), "{e:?}");
}

#[test]
fn unexpected_tensor() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    tensors.insert(
        "unique_layers.0.extra.weight".into(),
        T {
            dtype: Dtype::F32,
            shape: vec![2],
            values: vec![0.0; 2],
        },
    );
    let dir = fixture("unexpected", &c, &tensors);
    let e = err(
        load(&dir),
        &["model.safetensors", "unique_layers.0.extra.weight"],
    );
    assert!(matches!(e, ImportError::UnexpectedTensor { .. }), "{e:?}");
}

#[test]
fn pos_to_pk_only_with_xl() {
    let rope = Config {
        pos_encoding: PosEncodingKind::Rope,
        ..tiny()
    };
    let mut tensors = tensors_for(&rope);
    tensors.insert(
        POS0.into(),
        T {
            dtype: Dtype::F32,
            shape: vec![8, 8],
            values: values(0, 64),
        },
    );
    let dir = fixture("pos-rope", &rope, &tensors);
    let e = err(load(&dir), &[POS0]);
    assert!(matches!(e, ImportError::UnexpectedTensor { .. }), "{e:?}");
    let dir = fixture("pos-xl", &tiny(), &tensors_for(&rope));
    let e = err(load(&dir), &[POS0]);
    assert!(matches!(e, ImportError::MissingTensor { .. }), "{e:?}");
}

#[test]
fn d_model_contradiction_names_config_and_tensor() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    set_shape(&mut tensors, "embedding.weight", vec![16, 12]);
    let dir = fixture("dmodel", &c, &tensors);
    let e = err(
        load(&dir),
        &[
            "model.safetensors",
            "config says d_model = 8 but embedding.weight has shape [16, 12]",
        ],
    );
    match e {
        ImportError::ConfigContradiction {
            key,
            config_value,
            from_shapes,
            tensor,
            ..
        } => {
            assert_eq!((key, config_value, from_shapes), ("d_model", 8, 12));
            assert_eq!(tensor, "embedding.weight");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vocab_and_expert_contradictions() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    set_shape(&mut tensors, "embedding.weight", vec![20, 8]);
    let dir = fixture("vocab", &c, &tensors);
    err(load(&dir), &["config says vocab_size = 16", "[20, 8]"]);

    let four = Config {
        n_experts: 4,
        ..c.clone()
    };
    let dir = fixture("experts", &four, &tensors_for(&c));
    let e = err(
        load(&dir),
        &[
            "config says n_heads*n_experts = 8",
            "unique_layers.0.self_attn.projections.v",
            "= 6",
        ],
    );
    assert!(
        matches!(e, ImportError::ConfigContradiction { .. }),
        "{e:?}"
    );

    let wide = Config {
        d_ff: Some(10),
        ..c.clone()
    };
    let dir = fixture("dff", &wide, &tensors_for(&c));
    err(
        load(&dir),
        &["config says d_ff = 10", "unique_layers.0.linear1.weight"],
    );

    let dh = Config { d_head: 5, ..c };
    let dir = fixture("dh", &dh, &tensors_for(&tiny()));
    err(
        load(&dir),
        &["config says n_heads*d_head = 10", Q0, "[8, 8]"],
    );
}

#[test]
fn rank_mismatch_is_a_shape_mismatch() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    set_shape(&mut tensors, V1, vec![8, 8]);
    let dir = fixture("rank", &c, &tensors);
    let e = err(
        load(&dir),
        &["model.safetensors", V1, "[8, 8]", "[6, 8, 4]"],
    );
    assert!(matches!(e, ImportError::ShapeMismatch { .. }), "{e:?}");
}

#[test]
fn transposed_tensor_is_a_shape_mismatch() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    set_shape(&mut tensors, "unique_layers.0.linear1.weight", vec![8, 12]);
    let dir = fixture("transposed", &c, &tensors);
    let e = err(
        load(&dir),
        &["unique_layers.0.linear1.weight", "[8, 12]", "[12, 8]"],
    );
    assert!(matches!(e, ImportError::ShapeMismatch { .. }), "{e:?}");
}

#[test]
fn layer_count_contradiction() {
    let c = Config {
        n_layers: 1,
        ..tiny()
    };
    let dir = fixture("layers", &c, &tensors_for(&tiny()));
    let e = err(
        load(&dir),
        &[
            "model.safetensors",
            "n_layers = 1",
            "2 layers",
            "unique_layers.1.",
        ],
    );
    assert!(
        matches!(e, ImportError::LayerCount { found: 2, .. }),
        "{e:?}"
    );
    let c = Config {
        n_layers: 3,
        ..tiny()
    };
    let dir = fixture("layers3", &c, &tensors_for(&tiny()));
    let e = err(load(&dir), &["unique_layers.2."]);
    assert!(matches!(e, ImportError::MissingTensor { .. }), "{e:?}");
}

#[test]
fn odd_rope_rotation_is_rejected() {
    let c = Config {
        pos_encoding: PosEncodingKind::Rope,
        rotate_fraction: 0.75,
        ..tiny()
    };
    let dir = fixture("oddrot", &c, &tensors_for(&c));
    let e = err(load(&dir), &["config.json", "n_rot", "= 3", "even"]);
    assert!(matches!(e, ImportError::BadConfig { .. }), "{e:?}");
    let ok = Config {
        rotate_fraction: 0.5,
        ..c
    };
    let dir = fixture("evenrot", &ok, &tensors_for(&ok));
    load(&dir).expect("n_rot = 2 loads");
}

#[test]
fn moe_k_above_n_experts_is_rejected() {
    let c = tiny();
    let dir = fixture("moek", &c, &tensors_for(&c));
    let e = err(
        load_with(&dir, &["moe_k=4"]),
        &["config.json", "moe_k = 4", "n_experts = 3"],
    );
    assert!(matches!(e, ImportError::BadConfig { .. }), "{e:?}");
    let moe = Config {
        ffn: FfnKind::SigmaMoe,
        d_ff: None,
        ffn_n_experts: Some(2),
        ffn_expert_size: Some(4),
        ffn_k: Some(3),
        ..c
    };
    let dir = fixture("ffnk", &moe, &tensors_for(&moe));
    err(load(&dir), &["ffn_k = 3", "ffn_n_experts = 2"]);
}

#[test]
fn unknown_or_missing_config_keys_are_rejected() {
    let c = tiny();
    let dir = fixture("unknown-key", &c, &tensors_for(&c));
    let e = err(load_with(&dir, &["moe_kk=3"]), &["config.json", "moe_kk"]);
    assert!(matches!(e, ImportError::BadConfig { .. }), "{e:?}");
    std::fs::write(dir.join("config.json"), r#"{"vocab_size": 16}"#).expect("write");
    let e = err(load(&dir), &["config.json", "d_model"]);
    assert!(matches!(e, ImportError::BadConfig { .. }), "{e:?}");
    std::fs::write(dir.join("config.json"), "{not json").expect("write");
    err(load(&dir), &["config.json", "JSON"]);
}

#[test]
fn missing_config_says_where_it_looked() {
    let c = tiny();
    let dir = tmpdir("noconfig");
    write_st(&dir.join("model.safetensors"), &tensors_for(&c), None);
    let e = err(load(&dir), &["config.json", "__metadata__"]);
    assert!(matches!(e, ImportError::MissingConfig { .. }), "{e:?}");
}

#[test]
fn non_finite_weight_is_named() {
    let c = tiny();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let mut tensors = tensors_for(&c);
            let t = tensors.get_mut(V1).expect("v");
            t.values[5] = bad;
            t.dtype = dtype;
            let dir = fixture("nan", &c, &tensors);
            let e = err(load(&dir), &["model.safetensors", V1]);
            assert!(
                matches!(e, ImportError::NonFinite { index: 5, .. }),
                "{e:?}"
            );
        }
    }
}

#[test]
fn unsupported_dtype_is_named() {
    let c = tiny();
    let mut tensors = tensors_for(&c);
    tensors.get_mut(Q0).expect("q").dtype = Dtype::I32;
    let dir = fixture("dtype", &c, &tensors);
    let e = err(load(&dir), &["model.safetensors", Q0, "I32"]);
    assert!(matches!(e, ImportError::UnsupportedDtype { .. }), "{e:?}");
}

#[test]
fn truncated_and_garbage_files_are_corrupt() {
    let c = tiny();
    let dir = fixture("trunc", &c, &tensors_for(&c));
    let file = dir.join("model.safetensors");
    let full = std::fs::read(&file).expect("read");
    for len in [full.len() - 1, full.len() / 2, 20, 3, 0] {
        std::fs::write(&file, &full[..len]).expect("truncate");
        let e = err(load(&dir), &["model.safetensors"]);
        assert!(matches!(e, ImportError::Corrupt { .. }), "{len}: {e:?}");
    }
    let pth_dir = tmpdir("garbage-pth");
    write_config(&pth_dir, &c);
    std::fs::write(pth_dir.join("model.pth"), b"this is not a zip file").expect("write");
    let e = err(load(&pth_dir), &["model.pth"]);
    assert!(matches!(e, ImportError::Corrupt { .. }), "{e:?}");
}

#[test]
fn bad_model_paths() {
    let c = tiny();
    let dir = fixture("twockpt", &c, &tensors_for(&c));
    std::fs::copy(dir.join("model.safetensors"), dir.join("other.safetensors")).expect("copy");
    load(&dir).expect("model.* wins beside another tensor file");
    std::fs::rename(dir.join("model.safetensors"), dir.join("a.safetensors")).expect("rename");
    let e = err(load(&dir), &["a.safetensors", "other.safetensors"]);
    assert!(matches!(e, ImportError::BadPath { .. }), "{e:?}");
    let e = err(
        load(&dir.join("config.json")),
        &["config.json", ".safetensors"],
    );
    assert!(matches!(e, ImportError::BadPath { .. }), "{e:?}");
    let empty = tmpdir("empty");
    let e = err(load(&empty), &["no .safetensors"]);
    assert!(matches!(e, ImportError::BadPath { .. }), "{e:?}");
    let e = err(load(&empty.join("nope.safetensors")), &["nope.safetensors"]);
    assert!(matches!(e, ImportError::Io { .. }), "{e:?}");
}

// ---------- shared test models (skipped with a reason when absent) ----------

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn testdata_rope_pth_loads_if_present() {
    let path = repo_path("testdata/models/rope-pth/model.pth");
    if !path.exists() {
        println!("skipped: {} does not exist yet", path.display());
        return;
    }
    let m = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.config.pos_encoding, PosEncodingKind::Rope);
    assert_eq!(
        m.weights.parameter_count(),
        synth::parameter_count(&m.config)
    );
    for name in m.weights.names() {
        m.weights.tensor(name).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn testdata_xl_standalone_loads_if_present() {
    let path = repo_path("testdata/models/xl-standalone/model.safetensors");
    if !path.exists() {
        println!("skipped: {} does not exist yet", path.display());
        return;
    }
    let m = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(m.layout, Layout::Standalone { .. }),
        "{:?}",
        m.layout
    );
    assert_eq!(m.config.pos_encoding, PosEncodingKind::Xl);
    assert_eq!(
        m.weights.parameter_count(),
        synth::parameter_count(&m.config)
    );
}

#[test]
fn official_golden_models_load_with_their_configs() {
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/official-golden"
    ));
    if !root.exists() {
        println!("skipped: {} does not exist", root.display());
        return;
    }
    let mut seen = 0;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("read golden")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        let text = std::fs::read_to_string(dir.join("config.json")).expect("golden config");
        let want: Config = serde_json::from_str(&text).expect("golden config parses");
        let m = load(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(m.config, want, "{}", dir.display());
        assert_eq!(m.layout, Layout::Training);
        assert_eq!(
            m.weights.parameter_count(),
            synth::parameter_count(&want),
            "{}",
            dir.display()
        );
        assert!(m.weights.names().all(|n| !n.contains("kv_sel_counts")));
        seen += 1;
    }
    assert_eq!(
        seen,
        3,
        "expected three golden models under {}",
        root.display()
    );
}
