//! Reading a plan from its bytes (typically a memory map): header, checksum, graph.

use super::{Header, PlanError, PlanGraph, PlanWeight, TRAILER_LEN};

/// A verified plan: its header, its graph, and its weights section (borrowed).
#[derive(Debug, Clone)]
pub struct PlanFile<'a> {
    pub header: Header,
    pub graph: PlanGraph,
    /// The weights section, `weights_len` bytes starting 64-byte aligned in the file.
    pub weights: &'a [u8],
}

impl<'a> PlanFile<'a> {
    /// The stored bytes of `w` (its `offset .. offset + nbytes` in the weights section).
    /// `w` must come from this plan's graph (checked by [`read_plan`]); other weights
    /// yield an empty slice.
    pub fn weight_bytes(&self, w: &PlanWeight) -> &'a [u8] {
        let start = usize::try_from(w.offset).unwrap_or(usize::MAX);
        let len = usize::try_from(w.nbytes).unwrap_or(usize::MAX);
        start
            .checked_add(len)
            .and_then(|end| self.weights.get(start..end))
            .unwrap_or(&[])
    }
}

/// Verifies `bytes` (a whole plan file) as the module doc of `plan` describes: magic,
/// version, lengths, alignment, checksum, then the graph's schema and structure.
pub fn read_plan(bytes: &[u8]) -> Result<PlanFile<'_>, PlanError> {
    let header = Header::decode(bytes)?;
    let body = bytes.len() - TRAILER_LEN as usize;
    let stored = u64::from_le_bytes(bytes[body..].try_into().unwrap_or_default());
    let computed = u64::from(crc32fast::hash(&bytes[..body]));
    if stored != computed {
        return Err(PlanError::Checksum { stored, computed });
    }
    let range = |off: u64, len: u64| off as usize..(off + len) as usize;
    let graph = PlanGraph::from_json(&bytes[range(header.graph_offset, header.graph_len)])?;
    graph.validate(header.weights_len)?;
    if graph.format_version() > header.version {
        return Err(PlanError::Header(format!(
            "the file says format version {}, but holds quantized weights (version 3)",
            header.version
        )));
    }
    Ok(PlanFile {
        header,
        graph,
        weights: &bytes[range(header.weights_offset, header.weights_len)],
    })
}
