//! `switchhead._native.compile`: a checkpoint file, or a training script's tensors with their
//! config, compiled to ONNX or a native plan by the compiler's `compile_to_file`, the sequence
//! `switchhead-compile` runs (so both write the same bytes). `switchhead.compile` in
//! `__init__.py` turns torch tensors and config dicts into what this takes.

use std::path::{Path, PathBuf};

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use switchhead_compiler::Model;
use switchhead_compiler::compile::{CompileOptions, OutputFormat, compile_to_file};
use switchhead_compiler::import::{LoadOptions, load_model, load_tensors};
use switchhead_compiler::onnx::WeightDType;
use switchhead_ops::Tensor;

use crate::errors::err;

/// What stands for in-memory tensors in errors (where a file would be named).
const STATE_DICT: &str = "<state_dict>";

/// Compiles `model` (a path, or a dict of float32 arrays) to `output`; `config` is JSON text:
/// the whole config for tensors, `--set` overrides for a path.
#[pyfunction]
#[pyo3(signature = (model, output, *, format = None, decompose = false, kv_cache = false, dtype = "f32", config = None))]
#[allow(clippy::too_many_arguments)]
pub fn compile(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    output: PathBuf,
    format: Option<&str>,
    decompose: bool,
    kv_cache: bool,
    dtype: &str,
    config: Option<String>,
) -> PyResult<()> {
    let opts = CompileOptions {
        format: output_format(format, &output)?,
        decompose,
        kv_cache,
        dtype: weight_dtype(dtype)?,
        ..Default::default()
    };
    let source = Source::of(model, config)?;
    py.detach(|| {
        let model = source.load()?;
        compile_to_file(&model, &output, &opts, None, &mut |_| {}).map_err(err)
    })
}

/// A checkpoint to load.
enum Source {
    Path(PathBuf, Vec<(String, String)>),
    Tensors(Vec<(String, Tensor)>, String),
}

impl Source {
    fn of(model: &Bound<'_, PyAny>, config: Option<String>) -> PyResult<Self> {
        if let Ok(dict) = model.cast::<PyDict>() {
            let config = config.ok_or_else(|| {
                PyValueError::new_err("compiling tensors needs their config (config={...})")
            })?;
            return Ok(Source::Tensors(tensors(dict)?, config));
        }
        let path: PathBuf = model.extract().map_err(|_| {
            PyTypeError::new_err("model must be a checkpoint path or a dict of tensors")
        })?;
        let overrides = match config {
            Some(text) => overrides(&text)?,
            None => Vec::new(),
        };
        Ok(Source::Path(path, overrides))
    }

    fn load(self) -> PyResult<Model> {
        match self {
            Source::Path(path, overrides) => {
                load_model(&path, &LoadOptions { overrides }).map_err(err)
            }
            Source::Tensors(tensors, config) => {
                load_tensors(Path::new(STATE_DICT), tensors, &config).map_err(err)
            }
        }
    }
}

/// The arrays of `dict` as tensors, in the dict's order.
fn tensors(dict: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Tensor)>> {
    dict.iter()
        .map(|(k, v)| {
            let name: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err("tensor names (the dict's keys) must be str"))?;
            let array: PyReadonlyArrayDyn<'_, f32> = v.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{STATE_DICT}: tensor {name} is not a float32 array"
                ))
            })?;
            let shape = array.shape().to_vec();
            let data = array.as_array().iter().copied().collect();
            let t = Tensor::new(shape, data)
                .map_err(|e| PyValueError::new_err(format!("{STATE_DICT}: tensor {name}: {e}")))?;
            Ok((name, t))
        })
        .collect()
}

/// A JSON object's entries as `--set key=value` overrides.
fn overrides(text: &str) -> PyResult<Vec<(String, String)>> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| PyValueError::new_err(format!("config: invalid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(PyValueError::new_err("config must be a dict"));
    };
    Ok(map.into_iter().map(|(k, v)| (k, v.to_string())).collect())
}

fn output_format(format: Option<&str>, output: &Path) -> PyResult<OutputFormat> {
    match format {
        None => Ok(OutputFormat::for_path(output)),
        Some("onnx") => Ok(OutputFormat::Onnx),
        Some("plan") => Ok(OutputFormat::Plan),
        Some(other) => Err(PyValueError::new_err(format!(
            "format must be \"onnx\" or \"plan\", not {other:?}"
        ))),
    }
}

fn weight_dtype(dtype: &str) -> PyResult<WeightDType> {
    match dtype {
        "f32" => Ok(WeightDType::F32),
        "f16" => Ok(WeightDType::F16),
        "bf16" => Ok(WeightDType::BF16),
        other => Err(PyValueError::new_err(format!(
            "dtype must be \"f32\", \"f16\" or \"bf16\", not {other:?}"
        ))),
    }
}
