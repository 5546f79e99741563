//! An ONNX file from `switchhead-compile` run as the native plan it embeds, for the device
//! executors (which walk a plan's op list).
//!
//! The emitter records the plan graph of the same model in the metadata entry
//! [`PLAN_GRAPH_KEY`] (row-major weights of the initializers' storage type). Here each plan
//! weight is bound to the initializer of its name (`{name}.bf16` / `{name}.f16` for weights
//! stored in half precision and cast in the graph), which must have the weight's shape and
//! type; its bytes come from `raw_data`, `float_data` or external data beside the file. The
//! plan is written to an anonymous memory map and then read back through the same checks as a
//! `.shplan` file (`read_plan`), so an ONNX file runs exactly as the plan compiled from the
//! same checkpoint. Quantized weights (`DequantizeLinear` of initializers) are folded to f32
//! first ([`super::fold_dequantize`]), so they bind as the f32 weights the embedded graph names.
//! A file without the entry (not ours, or from an older switchhead) is
//! refused with the fix in the message.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use switchhead_ops::plan::{Header, PlanDType, PlanGraph, PlanWeight, layout_weights, write_plan};
use tract_onnx::pb;

use crate::RuntimeError;

/// The metadata key of the embedded plan graph (as `switchhead_compiler::onnx` writes it).
pub const PLAN_GRAPH_KEY: &str = "switchhead.plan_graph";

/// ONNX `TensorProto.DataType` codes of the weight types a plan holds.
const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;
const BFLOAT16: i32 = 16;
const EXTERNAL: i32 = 1;

/// The plan embedded in the ONNX file at `path`, written to an anonymous read-only map
/// (verify it with `read_plan` before use).
pub(crate) fn plan_map(path: &Path) -> Result<memmap2::Mmap, RuntimeError> {
    let err = |reason: String| RuntimeError::OnnxNotPlan {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut model =
        pb::ModelProto::decode(bytes.as_slice()).map_err(|e| RuntimeError::NotOnnx {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    drop(bytes);
    let dir = path.parent().unwrap_or(Path::new("."));
    super::fold_dequantize(&mut model, dir)?;
    let mut graph = embedded_graph(&model).map_err(err)?;
    let weights_len = layout_weights(&mut graph.weights);
    let initializers = model.graph.map(|g| g.initializer).unwrap_or_default();
    let sources = graph
        .weights
        .iter()
        .map(|w| bind(w, &initializers, dir))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    write_map(&graph, weights_len, &sources).map_err(|e| err(e.to_string()))
}

/// The plan graph in the model's metadata.
fn embedded_graph(model: &pb::ModelProto) -> Result<PlanGraph, String> {
    let entry = model
        .metadata_props
        .iter()
        .find(|e| e.key == PLAN_GRAPH_KEY)
        .ok_or_else(|| {
            format!(
                "it has no {PLAN_GRAPH_KEY} metadata (written by switchhead-compile since it \
                 runs on devices): recompile it, or compile a plan (--format plan)"
            )
        })?;
    PlanGraph::from_json(entry.value.as_bytes()).map_err(|e| format!("{PLAN_GRAPH_KEY}: {e}"))
}

/// Where a weight's stored bytes are.
enum Source<'a> {
    Raw(&'a [u8]),
    Floats(&'a [f32]),
    /// `length` bytes at `offset` of an external data file.
    External {
        file: PathBuf,
        offset: u64,
        length: u64,
    },
}

/// The initializer holding `w`, checked against it.
fn bind<'a>(
    w: &PlanWeight,
    inits: &'a [pb::TensorProto],
    dir: &Path,
) -> Result<Source<'a>, String> {
    let (code, stored) = match w.dtype {
        PlanDType::F32 => (FLOAT, w.name.clone()),
        PlanDType::Bf16 => (BFLOAT16, format!("{}.bf16", w.name)),
        PlanDType::F16 => (FLOAT16, format!("{}.f16", w.name)),
        PlanDType::I64 => return Err(format!("weight {:?} is i64", w.name)),
        PlanDType::I8 | PlanDType::I4 => {
            return Err(format!("weight {:?} is quantized ({:?})", w.name, w.dtype));
        }
    };
    let t = inits.iter().find(|t| t.name == stored).ok_or_else(|| {
        format!(
            "the plan's weight {:?} has no initializer {stored:?}",
            w.name
        )
    })?;
    let dims: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
    if t.dims != dims || t.data_type != code {
        return Err(format!(
            "initializer {stored:?} is type {} {:?}, the plan expects type {code} {dims:?}",
            t.data_type, t.dims
        ));
    }
    let source = source(t, dir)?;
    let len = source_len(&source);
    if len != w.nbytes {
        return Err(format!(
            "initializer {stored:?} holds {len} bytes, {} expected",
            w.nbytes
        ));
    }
    Ok(source)
}

fn source<'a>(t: &'a pb::TensorProto, dir: &Path) -> Result<Source<'a>, String> {
    if t.data_location == Some(EXTERNAL) {
        return external(t, dir);
    }
    if !t.float_data.is_empty() {
        return Ok(Source::Floats(&t.float_data));
    }
    Ok(Source::Raw(&t.raw_data))
}

/// An initializer's external data: `location` (relative to the model's folder, inside it),
/// `offset`, `length`.
fn external<'a>(t: &pb::TensorProto, dir: &Path) -> Result<Source<'a>, String> {
    let key = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| &e.value)
    };
    let location = key("location")
        .ok_or_else(|| format!("initializer {:?}: external data without a location", t.name))?;
    let relative = Path::new(location);
    if relative.is_absolute() || relative.components().any(|c| c.as_os_str() == "..") {
        return Err(format!(
            "initializer {:?}: external data location {location:?} is outside the model's folder",
            t.name
        ));
    }
    let number = |k: &str| -> Result<Option<u64>, String> {
        key(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("initializer {:?}: bad {k} {v:?}", t.name))
            })
            .transpose()
    };
    let file = dir.join(relative);
    let size = std::fs::metadata(&file)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?.unwrap_or(size.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(format!(
            "initializer {:?}: {length} bytes at offset {offset} of {} ({size} bytes)",
            t.name,
            file.display()
        ));
    }
    Ok(Source::External {
        file,
        offset,
        length,
    })
}

fn source_len(s: &Source<'_>) -> u64 {
    match s {
        Source::Raw(b) => b.len() as u64,
        Source::Floats(f) => 4 * f.len() as u64,
        Source::External { length, .. } => *length,
    }
}

/// Writes the plan of `graph` into an anonymous map of exactly its file length.
fn write_map(
    graph: &PlanGraph,
    weights_len: u64,
    sources: &[Source<'_>],
) -> std::io::Result<memmap2::Mmap> {
    let header = Header::new(graph.to_json().len() as u64, weights_len);
    let len = usize::try_from(header.file_len).map_err(std::io::Error::other)?;
    let mut map = memmap2::MmapMut::map_anon(len)?;
    let mut next = sources.iter();
    write_plan(&mut &mut map[..], graph, |_, out| match next.next() {
        Some(s) => copy(s, out),
        None => Err(std::io::Error::other("more plan weights than sources")),
    })?;
    map.make_read_only()
}

/// Copies a weight's stored bytes to `out`.
fn copy(s: &Source<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    match s {
        Source::Raw(b) => out.write_all(b),
        Source::Floats(f) => f.iter().try_for_each(|v| out.write_all(&v.to_le_bytes())),
        Source::External {
            file,
            offset,
            length,
        } => {
            let mut f = std::fs::File::open(file)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
            f.seek(SeekFrom::Start(*offset))?;
            let copied = std::io::copy(&mut f.take(*length), out)?;
            if copied != *length {
                return Err(std::io::Error::other(format!(
                    "{}: {copied} bytes at offset {offset}, {length} expected",
                    file.display()
                )));
            }
            Ok(())
        }
    }
}

/// Reads the plan graph embedded in the ONNX file at `path` and verifies the plan it makes,
/// exactly as a device executor loads it, with no device (for tools and the fuzz target).
pub fn verify_embedded_plan(path: &Path) -> Result<(), RuntimeError> {
    crate::native::load_onnx_parts(path).map(|_| ())
}
