//! Writing a [`ModelProto`] without holding its encoded bytes in memory.
//!
//! Protobuf fields may come in any order, so the model is written as: every field but the
//! graph (encoded as one small message), then the graph field's tag and length, the graph's
//! fields but its initializers, and then each initializer encoded and written on its own. Peak
//! memory is the model itself plus one encoded initializer. With external data, initializer
//! payloads are streamed to the data file and dropped from the model before it is written.

use std::io::{self, Write};
use std::path::Path;

use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};

use super::proto::{ModelProto, StringStringEntryProto, TensorProto, data_location};
use crate::tensor_io::{IoError, write_atomic_with};

/// Tag byte of a length-delimited field `n` (n < 16).
fn tag(field: u32) -> u8 {
    ((field << 3) | 2) as u8
}

const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;

/// Writes `model` to `path` atomically; initializers above `limit` bytes in total go to
/// `<file name>.data` as ONNX external data (64-byte aligned, payloads of 1 KiB or more).
pub fn write_model(mut model: ModelProto, path: &Path, limit: u64) -> Result<(), IoError> {
    let total: u64 = model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .map(|t| t.raw_data.len() as u64)
        .sum();
    if total > limit {
        let file = data_file_name(path);
        let inits = model.graph.iter_mut().flat_map(|g| &mut g.initializer);
        write_atomic_with(&path.with_file_name(&file), |w| {
            externalize(inits, &file, w)
        })?;
    }
    write_atomic_with(path, |w| encode_streaming(&mut model, w))
}

fn data_file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || "model.onnx.data".into(),
        |n| format!("{}.data", n.to_string_lossy()),
    )
}

/// Moves every payload of 1 KiB or more into `w`, pointing its tensor at the data file.
fn externalize<'a>(
    inits: impl Iterator<Item = &'a mut TensorProto>,
    file: &str,
    w: &mut dyn Write,
) -> io::Result<()> {
    let mut offset = 0usize;
    for t in inits.filter(|t| t.raw_data.len() >= 1024) {
        let pad = offset.next_multiple_of(64) - offset;
        w.write_all(&vec![0u8; pad])?;
        offset += pad;
        let entry = |k: &str, v: String| StringStringEntryProto {
            key: k.into(),
            value: v,
        };
        t.external_data = vec![
            entry("location", file.into()),
            entry("offset", offset.to_string()),
            entry("length", t.raw_data.len().to_string()),
        ];
        t.data_location = data_location::EXTERNAL;
        w.write_all(&t.raw_data)?;
        offset += t.raw_data.len();
        t.raw_data = Vec::new();
    }
    Ok(())
}

/// Encodes `model` into `w` field by field (the model is restored before returning).
fn encode_streaming(model: &mut ModelProto, w: &mut dyn Write) -> io::Result<()> {
    let Some(mut graph) = model.graph.take() else {
        return w.write_all(&model.encode_to_vec());
    };
    let inits = std::mem::take(&mut graph.initializer);
    let result = write_parts(model, &graph, &inits, w);
    graph.initializer = inits;
    model.graph = Some(graph);
    result
}

fn write_parts(
    model: &ModelProto,
    graph: &super::proto::GraphProto,
    inits: &[TensorProto],
    w: &mut dyn Write,
) -> io::Result<()> {
    let rest = graph.encode_to_vec();
    let inits_len: usize = inits.iter().map(|t| field_len(t.encoded_len())).sum();
    w.write_all(&model.encode_to_vec())?;
    w.write_all(&[tag(MODEL_GRAPH)])?;
    w.write_all(&varint(rest.len() + inits_len))?;
    w.write_all(&rest)?;
    for t in inits {
        w.write_all(&[tag(GRAPH_INITIALIZER)])?;
        w.write_all(&varint(t.encoded_len()))?;
        w.write_all(&t.encode_to_vec())?;
    }
    Ok(())
}

/// Bytes of a length-delimited field with a one-byte tag and `len` bytes of payload.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn varint(n: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(10);
    encode_varint(n as u64, &mut buf);
    buf
}
