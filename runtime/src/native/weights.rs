//! The weights of a loaded plan: f32 slices into the memory map, f32 copies widened from
//! f16 (or bf16 where kept f32), or packed for the quantized kernels (int8, int4, and bf16
//! projections on a CPU with BF16 dot products).

use std::borrow::Cow;
use std::ops::Range;

use memmap2::Mmap;
use switchhead_kernels::WeightRef;
use switchhead_kernels::quant::{PackedWeight, bf16_native};
use switchhead_ops::plan::{
    PlanDType, PlanLayout, PlanWeight, QuantBits, QuantShape, from_expert_panels, from_panels,
    quant_parts,
};

/// Where one weight's elements are.
#[derive(Debug)]
enum Stored {
    /// Element range of the map viewed as f32 (byte offset / 4).
    Mapped(Range<usize>),
    Owned(Vec<f32>),
    /// Packed for the quantized kernels; the logical shape is the plan's.
    Packed(PackedWeight),
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
    /// `weights_offset` and holds `weights` (bounds checked by `read_plan`). A bf16 weight is
    /// packed for bf16 products unless `keep_f32[i]` (router rows: see
    /// `Program::kept_f32`) or the CPU lacks BF16 dot products; then it is widened.
    pub fn new(
        map: Mmap,
        weights: &[PlanWeight],
        weights_offset: u64,
        keep_f32: &[bool],
    ) -> Result<Self, String> {
        let in_place = (map.as_ptr() as usize).is_multiple_of(4) && cfg!(target_endian = "little");
        let mut stored = Vec::with_capacity(weights.len());
        for (i, w) in weights.iter().enumerate() {
            let start = (weights_offset + w.offset) as usize;
            let bytes = &map[start..start + w.nbytes as usize];
            let keep = keep_f32.get(i).copied().unwrap_or(true);
            stored.push(match w.dtype {
                PlanDType::F32 if in_place => Mapped(start / 4..start / 4 + w.stored_len()),
                PlanDType::I8 | PlanDType::I4 => Stored::Packed(quantized(w, bytes)?),
                PlanDType::Bf16 if !keep && bf16_native() && w.shape.len() >= 2 => {
                    Stored::Packed(bf16(w, bytes)?)
                }
                _ => Stored::Owned(widen(w, bytes)),
            });
        }
        let shapes = weights.iter().map(|w| w.shape.clone()).collect();
        let layouts = weights.iter().map(|w| w.layout).collect();
        Ok(WeightStore {
            map,
            stored,
            shapes,
            layouts,
        })
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// The element order of weight `i`.
    pub fn layout(&self, i: usize) -> PlanLayout {
        self.layouts[i]
    }

    /// The f32 stored elements of weight `i` (in its layout); None when it is packed.
    pub fn data(&self, i: usize) -> Option<&[f32]> {
        match &self.stored[i] {
            Stored::Owned(v) => Some(v),
            Stored::Mapped(r) => Some(&self.as_f32()[r.clone()]),
            Stored::Packed(_) => None,
        }
    }

    /// Weight `i` as the kernels take it, when it is not plain row-major f32 (which is read
    /// as a tensor).
    pub fn stored(&self, i: usize) -> Option<WeightRef<'_>> {
        match (&self.stored[i], self.layouts[i]) {
            (Stored::Packed(p), _) => Some(WeightRef::Packed(p)),
            (_, PlanLayout::RowMajor) => None,
            (_, PlanLayout::Panels | PlanLayout::ExpertPanels) => {
                let data = self.data(i)?;
                Some(WeightRef::F32(
                    data,
                    switchhead_kernels::WeightLayout::Panels,
                ))
            }
        }
    }

    /// The f32 elements of weight `i`, row-major in its logical shape (for the device
    /// backends, which upload their own forms).
    pub fn logical_f32(&self, i: usize) -> Cow<'_, [f32]> {
        let shape = &self.shapes[i];
        match (&self.stored[i], self.layouts[i], &shape[..]) {
            (Stored::Packed(p), _, _) => Cow::Owned(packed_logical(p, shape.len() == 3)),
            (_, PlanLayout::Panels, &[out, inp]) => {
                Cow::Owned(from_panels(self.data(i).unwrap_or_default(), out, inp))
            }
            (_, PlanLayout::ExpertPanels, &[e, inp, out]) => Cow::Owned(from_expert_panels(
                self.data(i).unwrap_or_default(),
                e,
                inp,
                out,
            )),
            _ => Cow::Borrowed(self.data(i).unwrap_or_default()),
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

/// The matrices of a stored weight: `[out, in]` is one `[out, in]`; an expert stack
/// `[E, in, out]` is E matrices `[out, in]` (each expert's transpose).
fn matrices(shape: &[usize]) -> Result<(usize, usize, usize), String> {
    match *shape {
        [out, inp] => Ok((1, out, inp)),
        [e, inp, out] => Ok((e, out, inp)),
        _ => Err(format!(
            "a weight of shape {shape:?} cannot be packed (rank 2 or 3)"
        )),
    }
}

/// An `i8`/`i4` weight, packed for the quantized kernels.
fn quantized(w: &PlanWeight, bytes: &[u8]) -> Result<PackedWeight, String> {
    let fail = |e: String| format!("weight {}: {e}", w.name);
    let (bits, s) = w
        .quant()
        .ok_or_else(|| fail(format!("a {:?} weight needs a group", w.dtype)))?;
    let (values, scales) = quant_parts(bits, bytes, s).map_err(|e| fail(e.to_string()))?;
    let QuantShape {
        count, out, inp, ..
    } = s;
    let packed = match bits {
        QuantBits::Int8 => PackedWeight::from_int8(values, &scales, count, out, inp),
        QuantBits::Int4 => PackedWeight::from_int4(values, &scales, count, out, inp, s.group),
    };
    packed.map_err(|e| fail(e.to_string()))
}

/// A bf16 projection or expert stack, packed for bf16 products (its matrices row-major).
fn bf16(w: &PlanWeight, bytes: &[u8]) -> Result<PackedWeight, String> {
    let fail = |e: String| format!("weight {}: {e}", w.name);
    let (count, out, inp) = matrices(&w.shape).map_err(fail)?;
    let stored = widen(w, bytes);
    let rows = match (w.layout, &w.shape[..]) {
        (PlanLayout::Panels, &[out, inp]) => from_panels(&stored, out, inp),
        (PlanLayout::ExpertPanels, &[e, inp, out]) => {
            transpose_stack(&from_expert_panels(&stored, e, inp, out), e, inp, out)
        }
        (_, &[e, inp, out]) => transpose_stack(&stored, e, inp, out),
        _ => stored,
    };
    let bits: Vec<u16> = rows
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    PackedWeight::from_bf16(&bits, count, out, inp).map_err(|e| fail(e.to_string()))
}

/// `[e, a, b]` row-major to `[e, b, a]`.
fn transpose_stack(w: &[f32], e: usize, a: usize, b: usize) -> Vec<f32> {
    let mut t = vec![0f32; e * a * b];
    for m in 0..e {
        for i in 0..a {
            for j in 0..b {
                t[(m * b + j) * a + i] = w[(m * a + i) * b + j];
            }
        }
    }
    t
}

/// A packed weight's f32 elements in the plan's logical shape (`stack`: `[E, in, out]`).
fn packed_logical(p: &PackedWeight, stack: bool) -> Vec<f32> {
    let (out, inp) = (p.out(), p.inp());
    let rows: Vec<f32> = (0..p.count()).flat_map(|m| p.dequantize(m)).collect();
    match stack {
        true => transpose_stack(&rows, p.count(), out, inp),
        false => rows,
    }
}

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
