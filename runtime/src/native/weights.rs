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

/// Little-endian stored bytes of `w` as f32.
fn widen(w: &PlanWeight, bytes: &[u8]) -> Vec<f32> {
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
