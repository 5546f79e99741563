//! The weights of a loaded plan: f32 slices into the memory map, or f32 copies widened from
//! f16/bf16 at load.

use std::ops::Range;

use memmap2::Mmap;
use switchhead_ops::plan::{PlanDType, PlanLayout, PlanWeight};

/// Where one weight's f32 elements are.
#[derive(Debug)]
enum Stored {
    /// Element range of the map viewed as f32 (byte offset / 4).
    Mapped(Range<usize>),
    Owned(Vec<f32>),
}

/// All weights of a plan, indexed like `PlanGraph::weights`.
#[derive(Debug)]
pub(crate) struct WeightStore {
    map: Mmap,
    stored: Vec<Stored>,
    shapes: Vec<Vec<usize>>,
    layouts: Vec<PlanLayout>,
}

impl WeightStore {
    /// Takes ownership of `map`, a verified plan whose weights section starts at
    /// `weights_offset` and holds `weights` (bounds checked by `read_plan`).
    pub fn new(map: Mmap, weights: &[PlanWeight], weights_offset: u64) -> Self {
        let in_place = (map.as_ptr() as usize).is_multiple_of(4) && cfg!(target_endian = "little");
        let stored = weights
            .iter()
            .map(|w| {
                let start = (weights_offset + w.offset) as usize;
                match w.dtype {
                    PlanDType::F32 if in_place => Mapped(start / 4..start / 4 + w.stored_len()),
                    _ => Stored::Owned(widen(w, &map[start..start + w.nbytes as usize])),
                }
            })
            .collect();
        let shapes = weights.iter().map(|w| w.shape.clone()).collect();
        let layouts = weights.iter().map(|w| w.layout).collect();
        WeightStore {
            map,
            stored,
            shapes,
            layouts,
        }
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// The element order of weight `i`.
    pub fn layout(&self, i: usize) -> PlanLayout {
        self.layouts[i]
    }

    /// The f32 stored elements of weight `i` (in its layout).
    pub fn data(&self, i: usize) -> &[f32] {
        match &self.stored[i] {
            Stored::Owned(v) => v,
            Stored::Mapped(r) => &self.as_f32()[r.clone()],
        }
    }

    /// The shape of weight `i`.
    pub fn shape(&self, i: usize) -> &[usize] {
        &self.shapes[i]
    }

    fn as_f32(&self) -> &[f32] {
        // SAFETY: the map's base is 4-byte aligned (checked in `new` before any range is
        // `Mapped`), every f32 bit pattern is valid, the length rounds down to whole
        // elements, and the slice lives as long as `&self` (which owns the map).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<f32>(), self.map.len() / 4) }
    }
}

use Stored::Mapped;

/// Little-endian stored bytes of `w` as f32 (quantized ones dequantized, row-major).
fn widen(w: &PlanWeight, bytes: &[u8]) -> Vec<f32> {
    if let Some((bits, s)) = w.quant() {
        return dequantized(w, bits, bytes, s);
    }
    match w.dtype {
        PlanDType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        PlanDType::Bf16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

/// A quantized weight as f32 in its logical row-major shape: `[out, in]`, or an `[E, in,
/// out]` stack transposed back from its stored `[out, in]` matrices. Temporary: f32 compute
/// until the executor runs packed kernels. `read_plan` checked `bytes.len()` against `s`,
/// so the error arm is unreachable for a verified plan (it yields an empty weight).
fn dequantized(
    w: &PlanWeight,
    bits: switchhead_ops::plan::QuantBits,
    bytes: &[u8],
    s: switchhead_ops::plan::QuantShape,
) -> Vec<f32> {
    let Ok(m) = switchhead_ops::plan::dequantize(bits, bytes, s) else {
        return Vec::new();
    };
    if w.shape.len() != 3 {
        return m;
    }
    let per = s.out * s.inp;
    let mut stack = vec![0f32; m.len()];
    for (src, dst) in m
        .chunks_exact(per.max(1))
        .zip(stack.chunks_exact_mut(per.max(1)))
    {
        for (o, row) in src.chunks_exact(s.inp.max(1)).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                dst[i * s.out + o] = v;
            }
        }
    }
    stack
}
