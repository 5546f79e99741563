//! [`PackedWeight`]: building the packed layout (see the module docs) from the plan's bytes,
//! and widening it back to f32.

use switchhead_ops::plan::PANEL;

use crate::KernelError;

/// Bytes of one step of a panel: 4 bytes for each of its 32 columns.
pub(super) const STEP: usize = 4 * PANEL;
/// Logical K values per block of an int8 weight (the activations' quantization block).
const INT8_BLOCK: usize = 128;
/// The longest int4 block: its i32 sums of `(q + 8) * x_q` (at most 15 * 127 each) stay
/// below 2^31.
const MAX_INT4_BLOCK: usize = 1 << 20;

/// What a [`PackedWeight`] stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackedKind {
    /// Signed bytes with one f32 scale per output channel.
    Int8,
    /// Signed nibbles with one f32 scale per `group` consecutive input elements of a channel.
    Int4 { group: usize },
    /// bfloat16 values.
    Bf16,
}

/// `count` matrices, each a logical `[out, inp]` W applied as `x @ W^T`, in the kernels'
/// own layout (owned, built once at load; the layout is private to this module).
#[derive(Debug)]
pub struct PackedWeight {
    pub(super) kind: PackedKind,
    pub(super) count: usize,
    pub(super) out: usize,
    pub(super) inp: usize,
    pub(super) geom: Geom,
    /// `count * panels * steps` steps of [`STEP`] bytes.
    pub(super) data: Vec<u8>,
    /// `[count, panels, blocks, 32]` f32 scales (zero for missing columns; empty for bf16).
    pub(super) scales: Vec<f32>,
}

/// Where K values and panels lie in [`PackedWeight::data`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    /// K values per step and column: 4 (int8), 8 (int4), 2 (bf16).
    pub per: usize,
    /// Logical K values per block (the last block may be shorter).
    pub block: usize,
    /// Steps of a full block.
    pub bsteps: usize,
    pub blocks: usize,
    /// Steps of one panel.
    pub steps: usize,
    pub panels: usize,
}

impl Geom {
    fn new(per: usize, block: usize, inp: usize, out: usize) -> Self {
        let block = block.min(inp).max(1);
        let bsteps = block.div_ceil(per);
        let blocks = inp.div_ceil(block);
        let steps = match blocks {
            0 => 0,
            _ => (blocks - 1) * bsteps + (inp - (blocks - 1) * block).div_ceil(per),
        };
        let panels = out.div_ceil(PANEL);
        Geom {
            per,
            block,
            bsteps,
            blocks,
            steps,
            panels,
        }
    }

    /// Block `b`: its first logical K, its length and its first step.
    pub fn block_at(&self, b: usize, inp: usize) -> (usize, usize, usize) {
        let k0 = b * self.block;
        (k0, self.block.min(inp - k0), b * self.bsteps)
    }

    /// Padded K values of one row of activations (`steps * per`).
    pub fn padded_k(&self) -> usize {
        self.steps * self.per
    }

    /// Bytes of one panel.
    pub fn panel_bytes(&self) -> usize {
        self.steps * STEP
    }

    /// (step, index inside the step) of logical K value `k`.
    fn place(&self, k: usize) -> (usize, usize) {
        let padded = (k / self.block) * self.bsteps * self.per + k % self.block;
        (padded / self.per, padded % self.per)
    }
}

/// `a * b * c`, or a shape error naming `what`.
fn elements(what: &'static str, dims: &[usize]) -> Result<usize, KernelError> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| KernelError::Shape {
            what,
            expected: "a size that fits in memory".into(),
            got: format!("dimensions {dims:?}"),
        })
}

fn check(what: &'static str, got: usize, expected: usize) -> Result<(), KernelError> {
    match got == expected {
        true => Ok(()),
        false => Err(KernelError::Shape {
            what,
            expected: format!("{expected} elements"),
            got: format!("{got} elements"),
        }),
    }
}

impl PackedWeight {
    /// From int8 values (one two's-complement byte per element, row-major `[count, out, inp]`)
    /// and one scale per output channel (`[count, out]`).
    pub fn from_int8(
        values: &[u8],
        scales: &[f32],
        count: usize,
        out: usize,
        inp: usize,
    ) -> Result<Self, KernelError> {
        check(
            "int8 weight values",
            values.len(),
            elements("int8 weight", &[count, out, inp])?,
        )?;
        check("int8 weight scales", scales.len(), count * out)?;
        let mut w = Self::empty(
            PackedKind::Int8,
            Geom::new(4, INT8_BLOCK, inp, out),
            count,
            out,
            inp,
        );
        w.data.fill(0x80);
        for (row, q) in values
            .chunks_exact(inp.max(1))
            .take(count * out)
            .enumerate()
        {
            for (k, &q) in q.iter().enumerate() {
                let at = w.byte_at(row, k);
                w.data[at] = q ^ 0x80;
            }
        }
        w.fill_scales(|row, _| scales[row]);
        Ok(w)
    }

    /// From int4 values (per row `ceil(inp / 2)` bytes, element `2j` in the low nibble of byte
    /// `j`, two's complement) and `[count, out, ceil(inp / group)]` scales.
    pub fn from_int4(
        values: &[u8],
        scales: &[f32],
        count: usize,
        out: usize,
        inp: usize,
        group: usize,
    ) -> Result<Self, KernelError> {
        if group == 0 {
            return Err(KernelError::attr(
                "int4 weight",
                "group",
                "must be at least 1",
            ));
        }
        if group.min(inp) > MAX_INT4_BLOCK {
            let reason = format!(
                "blocks of {} values; at most {MAX_INT4_BLOCK}",
                group.min(inp)
            );
            return Err(KernelError::attr("int4 weight", "group", reason));
        }
        let row_bytes = inp.div_ceil(2);
        check(
            "int4 weight values",
            values.len(),
            elements("int4 weight", &[count, out, row_bytes])?,
        )?;
        let groups = inp.div_ceil(group);
        check("int4 weight scales", scales.len(), count * out * groups)?;
        let kind = PackedKind::Int4 { group };
        let mut w = Self::empty(kind, Geom::new(8, group, inp, out), count, out, inp);
        w.data.fill(0x88);
        for (row, bytes) in values
            .chunks_exact(row_bytes.max(1))
            .take(count * out)
            .enumerate()
        {
            for k in 0..inp {
                let nibble = (bytes[k / 2] >> (4 * (k % 2))) & 0xf;
                let at = w.byte_at(row, k);
                let shift = 4 * (w.geom.place(k).1 / 4);
                w.data[at] = (w.data[at] & !(0xf << shift)) | ((nibble ^ 8) << shift);
            }
        }
        w.fill_scales(|row, b| scales[row * groups + b]);
        Ok(w)
    }

    /// From bf16 values (the high halves of f32s), row-major `[count, out, inp]`.
    pub fn from_bf16(
        bits: &[u16],
        count: usize,
        out: usize,
        inp: usize,
    ) -> Result<Self, KernelError> {
        check(
            "bf16 weight values",
            bits.len(),
            elements("bf16 weight", &[count, out, inp])?,
        )?;
        let mut w = Self::empty(
            PackedKind::Bf16,
            Geom::new(2, inp, inp, out),
            count,
            out,
            inp,
        );
        for (row, v) in bits.chunks_exact(inp.max(1)).take(count * out).enumerate() {
            for (k, &v) in v.iter().enumerate() {
                let at = w.byte_at(row, k);
                w.data[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        w.scales.clear();
        Ok(w)
    }

    fn empty(kind: PackedKind, geom: Geom, count: usize, out: usize, inp: usize) -> Self {
        PackedWeight {
            kind,
            count,
            out,
            inp,
            geom,
            data: vec![0; count * geom.panels * geom.panel_bytes()],
            scales: vec![0.0; count * geom.panels * geom.blocks * PANEL],
        }
    }

    /// The byte of `data` holding K value `k` of stored row `row` (`matrix * out + o`).
    fn byte_at(&self, row: usize, k: usize) -> usize {
        let (m, o) = (row / self.out, row % self.out);
        let (step, j) = self.geom.place(k);
        let within = match self.kind {
            PackedKind::Int8 => j,
            PackedKind::Int4 { .. } => j % 4,
            PackedKind::Bf16 => 2 * j,
        };
        self.panel_offset(m, o / PANEL) + step * STEP + (o % PANEL) * 4 + within
    }

    /// `scales[(m, panel, block, column)] = scale(row, block)` for every stored row.
    fn fill_scales(&mut self, scale: impl Fn(usize, usize) -> f32) {
        for row in 0..self.count * self.out {
            let (m, o) = (row / self.out, row % self.out);
            for b in 0..self.geom.blocks {
                let at = self.scale_offset(m, o / PANEL) + b * PANEL + o % PANEL;
                self.scales[at] = scale(row, b);
            }
        }
    }

    /// Where panel `p` of matrix `m` starts in `data`.
    pub(super) fn panel_offset(&self, m: usize, p: usize) -> usize {
        (m * self.geom.panels + p) * self.geom.panel_bytes()
    }

    /// Where the scales of panel `p` of matrix `m` start in `scales`.
    pub(super) fn scale_offset(&self, m: usize, p: usize) -> usize {
        (m * self.geom.panels + p) * self.geom.blocks * PANEL
    }

    /// What it stores.
    pub fn kind(&self) -> PackedKind {
        self.kind
    }

    /// Matrices it holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Output channels of each matrix.
    pub fn out(&self) -> usize {
        self.out
    }

    /// Reduction length of each matrix.
    pub fn inp(&self) -> usize {
        self.inp
    }

    /// Bytes it holds (packed values and scales).
    pub fn bytes(&self) -> usize {
        self.data.len() + self.scales.len() * size_of::<f32>()
    }

    /// Matrix `m` as f32, row-major `[out, inp]`: exactly the weights the products use.
    pub fn dequantize(&self, m: usize) -> Vec<f32> {
        assert!(m < self.count, "dequantize: matrix {m} of {}", self.count);
        let (mut res, mut panel) = (vec![0.0; self.out * self.inp], Vec::new());
        for p in 0..self.geom.panels {
            self.decode_panel(m, p, &mut panel);
            for cc in 0..PANEL.min(self.out - p * PANEL) {
                let row = &mut res[(p * PANEL + cc) * self.inp..][..self.inp];
                for (k, v) in row.iter_mut().enumerate() {
                    *v = panel[k * PANEL + cc];
                }
            }
        }
        res
    }

    /// Panel `p` of matrix `m` widened to f32, `[inp, 32]` row-major (missing columns zero).
    pub(super) fn decode_panel(&self, m: usize, p: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(self.inp * PANEL, 0.0);
        let g = self.geom;
        let data = &self.data[self.panel_offset(m, p)..][..g.panel_bytes()];
        for b in 0..g.blocks {
            let (k0, len, s0) = g.block_at(b, self.inp);
            let scale = match self.kind {
                PackedKind::Bf16 => &[1.0; PANEL][..],
                _ => &self.scales[self.scale_offset(m, p) + b * PANEL..][..PANEL],
            };
            for i in 0..len {
                let (step, j) = (&data[(s0 + i / g.per) * STEP..][..STEP], i % g.per);
                let row = &mut out[(k0 + i) * PANEL..][..PANEL];
                decode_values(self.kind, step, j, scale, row);
            }
        }
    }
}

/// Value `j` of each of a step's 32 columns, times its column's scale.
fn decode_values(kind: PackedKind, step: &[u8], j: usize, scale: &[f32], row: &mut [f32]) {
    let columns = step.chunks_exact(4).zip(scale).zip(row);
    match kind {
        PackedKind::Int8 => {
            for ((v, &s), out) in columns {
                *out = f32::from((v[j] ^ 0x80) as i8) * s;
            }
        }
        PackedKind::Int4 { .. } => {
            let shift = 4 * (j / 4);
            for ((v, &s), out) in columns {
                let nibble = (v[j % 4] >> shift) & 0xf;
                *out = f32::from(((nibble ^ 8) << 4) as i8 >> 4) * s;
            }
        }
        PackedKind::Bf16 => {
            for ((v, _), out) in columns {
                let bits = u16::from_le_bytes([v[2 * j], v[2 * j + 1]]);
                *out = f32::from_bits(u32::from(bits) << 16);
            }
        }
    }
}
