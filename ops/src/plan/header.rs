//! The fixed 64-byte header of a plan file (layout in the module doc of `plan`).

use super::PlanError;

/// The first 8 bytes of every plan file.
pub const MAGIC: [u8; 8] = *b"\x89SHPLAN\n";
/// The newest format version this code reads and writes (for plans with quantized weights;
/// others are written as version 2, which older readers read).
pub const FORMAT_VERSION: u32 = 3;
/// Bytes of the version-1 header.
pub const HEADER_LEN: u32 = 64;
/// Alignment of the weights section and of every weight in it.
pub const ALIGN: u64 = 64;
/// Bytes of the checksum trailer.
pub const TRAILER_LEN: u64 = 8;

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub header_len: u32,
    pub graph_offset: u64,
    pub graph_len: u64,
    pub weights_offset: u64,
    pub weights_len: u64,
    pub file_len: u64,
    pub flags: u32,
}

impl Header {
    /// The header of a version-2 file with `graph_len` bytes of graph and `weights_len`
    /// bytes of (padded) weights (`write_plan` sets the version its graph needs).
    pub fn new(graph_len: u64, weights_len: u64) -> Self {
        let graph_offset = u64::from(HEADER_LEN);
        let weights_offset = (graph_offset + graph_len).next_multiple_of(ALIGN);
        Header {
            version: 2,
            header_len: HEADER_LEN,
            graph_offset,
            graph_len,
            weights_offset,
            weights_len,
            file_len: weights_offset + weights_len + TRAILER_LEN,
            flags: 0,
        }
    }

    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.header_len.to_le_bytes());
        let u64s = [
            self.graph_offset,
            self.graph_len,
            self.weights_offset,
            self.weights_len,
            self.file_len,
        ];
        for (i, v) in u64s.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[56..60].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Decodes and checks the header of a file of `bytes` (the whole file).
    pub fn decode(bytes: &[u8]) -> Result<Header, PlanError> {
        if bytes.len() < MAGIC.len() || bytes[..8] != MAGIC {
            return Err(PlanError::NotAPlan);
        }
        let got = bytes.len() as u64;
        let version = u32_at(bytes, 8).ok_or(truncated("the header", 12, got))?;
        if version == 0 {
            return Err(PlanError::Header("format version 0 is invalid".into()));
        }
        if version > FORMAT_VERSION {
            return Err(PlanError::FutureVersion {
                version,
                supported: FORMAT_VERSION,
            });
        }
        if got < u64::from(HEADER_LEN) {
            return Err(truncated("the header", u64::from(HEADER_LEN), got));
        }
        let u = |at| u64_at(bytes, at).unwrap_or(0);
        let h = Header {
            version,
            header_len: u32_at(bytes, 12).unwrap_or(0),
            graph_offset: u(16),
            graph_len: u(24),
            weights_offset: u(32),
            weights_len: u(40),
            file_len: u(48),
            flags: u32_at(bytes, 56).unwrap_or(0),
        };
        h.check(got)?;
        Ok(h)
    }

    fn check(&self, got: u64) -> Result<(), PlanError> {
        let bad = |s: String| Err(PlanError::Header(s));
        if self.file_len > got {
            return Err(truncated(
                "the file (header's file_len)",
                self.file_len,
                got,
            ));
        }
        if self.file_len < got {
            return bad(format!(
                "{} bytes of trailing data after file_len {}",
                got - self.file_len,
                self.file_len
            ));
        }
        if self.header_len < HEADER_LEN || self.graph_offset < u64::from(self.header_len) {
            return bad(format!(
                "header_len {} / graph_offset {} below {HEADER_LEN}",
                self.header_len, self.graph_offset
            ));
        }
        if self.flags != 0 {
            return bad(format!("unknown flags {:#x}", self.flags));
        }
        let graph_end = self.graph_offset.checked_add(self.graph_len);
        if graph_end.is_none_or(|e| e > self.weights_offset) {
            return bad("the graph overlaps the weights".into());
        }
        if !self.weights_offset.is_multiple_of(ALIGN) || !self.weights_len.is_multiple_of(ALIGN) {
            return bad(format!(
                "weights_offset {} / weights_len {} not multiples of {ALIGN}",
                self.weights_offset, self.weights_len
            ));
        }
        let end = self.weights_offset.checked_add(self.weights_len);
        if end.and_then(|e| e.checked_add(TRAILER_LEN)) != Some(self.file_len) {
            return bad("file_len is not weights_offset + weights_len + 8".into());
        }
        Ok(())
    }
}

fn truncated(what: &'static str, expected: u64, got: u64) -> PlanError {
    PlanError::Truncated {
        what,
        expected,
        got,
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
