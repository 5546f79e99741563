//! Writing a plan to any `Write`, weights streamed one at a time, checksum computed on the
//! way (nothing is held but the graph and the weight being written).

use std::io::{self, Write};

use super::{ALIGN, Header, PlanGraph, PlanWeight};

/// Assigns each weight, in list order, a 64-byte aligned offset after the previous one;
/// returns the padded length of the weights section.
pub fn layout_weights(weights: &mut [PlanWeight]) -> u64 {
    let mut end = 0u64;
    for w in weights {
        w.offset = end;
        end = (end + w.nbytes).next_multiple_of(ALIGN);
    }
    end
}

/// Writes the plan of `graph` (offsets assigned by [`layout_weights`]) to `out`, as format
/// version 3 if it holds a quantized weight, else 2. `fill` must write exactly the `nbytes`
/// stored bytes of the weight it is given; it is called once per weight in list order.
pub fn write_plan(
    out: &mut dyn Write,
    graph: &PlanGraph,
    mut fill: impl FnMut(&PlanWeight, &mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut weights = graph.weights.clone();
    let weights_len = layout_weights(&mut weights);
    if weights != graph.weights {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "plan weights are not laid out (call layout_weights first)",
        ));
    }
    let json = graph.to_json();
    let mut header = Header::new(json.len() as u64, weights_len);
    header.version = graph.format_version();
    let mut w = Crc {
        inner: out,
        hasher: crc32fast::Hasher::new(),
        written: 0,
    };
    w.write_all(&header.encode())?;
    w.write_all(&json)?;
    w.pad_to(header.weights_offset)?;
    for weight in &graph.weights {
        let start = w.written;
        fill(weight, &mut w)?;
        if w.written - start != weight.nbytes {
            return Err(io::Error::other(format!(
                "weight {:?}: {} bytes written, {} expected",
                weight.name,
                w.written - start,
                weight.nbytes
            )));
        }
        w.pad_to((w.written).next_multiple_of(ALIGN))?;
    }
    let checksum = u64::from(w.hasher.clone().finalize());
    w.inner.write_all(&checksum.to_le_bytes())
}

/// A writer that hashes and counts what passes through.
struct Crc<'a> {
    inner: &'a mut dyn Write,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl Crc<'_> {
    fn pad_to(&mut self, offset: u64) -> io::Result<()> {
        let pad = offset.saturating_sub(self.written) as usize;
        self.write_all(&vec![0u8; pad])
    }
}

impl Write for Crc<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
