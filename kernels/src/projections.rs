//! The input projections of an attention layer: q, k and the routers' logits, from separate
//! weights, from one merged `qkr` weight or from the two merged sides `qo` and `kv` (the
//! `merge-projections` pass).
//!
//! Either way every projection is a [`Block`] of columns of a row-major buffer: merged, all
//! four are column ranges of the one product `[rows, 2*H*dh + R]` (or q and `sel_o` of the
//! query side's, k and `sel_v` of the key side's), read in place (views, no copies);
//! separate, each is a whole buffer of its own. Later stages (scaling, RoPE,
//! routing, attention, the KV cache) read and write through the blocks.

use switchhead_ops::op::MoeAttentionAttrs;

use crate::gemm::Mat;
use crate::linear::project_rows;
use crate::weight::WeightRef;

/// How q, k and the routers of an attention layer are stored.
#[derive(Debug, Clone, Copy)]
pub enum Projections<'a> {
    /// Separate weights: q and k `[H*dh, D]`, the routers `sel_v [H*E, D]` (experts
    /// variant), `sel_o [H*E, D]` (experts) or `[H, D]` (gated).
    Separate {
        q: WeightRef<'a>,
        k: WeightRef<'a>,
        sel_v: Option<WeightRef<'a>>,
        sel_o: Option<WeightRef<'a>>,
    },
    /// One `qkr` weight, blocks as `MoeAttentionAttrs::merged_blocks`; the layer's xq and
    /// xkv are then the same rows.
    Merged(WeightRef<'a>),
    /// Merged by sides: `qo` (rows q, `sel_o`) for xq and `kv` (rows k, `sel_v`) for xkv.
    Sides {
        qo: WeightRef<'a>,
        kv: WeightRef<'a>,
    },
}

/// `width` columns from column `at` of buffer `buf`, whose rows are `stride` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    buf: usize,
    at: usize,
    pub width: usize,
    stride: usize,
}

/// The projections of one call.
pub(crate) struct Projected {
    bufs: Vec<Vec<f32>>,
    pub q: Block,
    pub k: Block,
    pub sel_v: Option<Block>,
    pub sel_o: Option<Block>,
}

/// One product: `x` `[n, d]` times a weight `[width, d]`.
pub(crate) struct Product<'a> {
    pub x: &'a [f32],
    pub n: usize,
    pub w: WeightRef<'a>,
    pub width: usize,
}

impl Projected {
    /// Projects `xq` (`nq` rows) and `xkv` (`nkv` rows, `d` wide) with `proj`.
    pub fn new(
        a: &MoeAttentionAttrs,
        proj: Projections<'_>,
        (xq, nq): (&[f32], usize),
        (xkv, nkv): (&[f32], usize),
        d: usize,
        threads: usize,
    ) -> Self {
        let mut p = Projected {
            bufs: Vec::new(),
            q: Block::EMPTY,
            k: Block::EMPTY,
            sel_v: None,
            sel_o: None,
        };
        let b = a.merged_blocks();
        let query = |w, width| Product {
            x: xq,
            n: nq,
            w,
            width,
        };
        let keys = |w, width| Product {
            x: xkv,
            n: nkv,
            w,
            width,
        };
        let mut run = |pr: Product<'_>| p.product(pr, d, threads);
        let [q, k, sel_v, sel_o] = match proj {
            Projections::Merged(w) => {
                let all = run(query(w, b.total()));
                let (q0, k0, v0, o0) = b.starts();
                [
                    all.cols(q0, b.q),
                    all.cols(k0, b.k),
                    all.cols(v0, b.sel_v),
                    all.cols(o0, b.sel_o),
                ]
            }
            Projections::Sides { qo, kv } => {
                let (wq, wk) = b.sides();
                let qo = run(query(qo, wq));
                let kv = run(keys(kv, wk));
                [
                    qo.cols(0, b.q),
                    kv.cols(0, b.k),
                    kv.cols(b.k, b.sel_v),
                    qo.cols(b.q, b.sel_o),
                ]
            }
            Projections::Separate { q, k, sel_v, sel_o } => [
                Some(run(query(q, b.q))),
                Some(run(keys(k, b.k))),
                sel_v.filter(|_| b.sel_v > 0).map(|s| run(keys(s, b.sel_v))),
                sel_o
                    .filter(|_| b.sel_o > 0)
                    .map(|s| run(query(s, b.sel_o))),
            ],
        };
        p.q = q.unwrap_or(Block::EMPTY);
        p.k = k.unwrap_or(Block::EMPTY);
        (p.sel_v, p.sel_o) = (sel_v, sel_o);
        p
    }

    /// Runs one product into a new buffer; its block is the whole buffer.
    fn product(&mut self, pr: Product<'_>, d: usize, threads: usize) -> Block {
        let y = project_rows(&pr.x[..pr.n * d], d, pr.w, pr.width, threads);
        self.bufs.push(y);
        Block {
            buf: self.bufs.len() - 1,
            at: 0,
            width: pr.width,
            stride: pr.width,
        }
    }

    /// The block's rows.
    pub fn rows(&self, b: Block) -> impl ExactSizeIterator<Item = &[f32]> {
        self.bufs[b.buf]
            .chunks_exact(b.stride.max(1))
            .map(move |row| &row[b.at..b.at + b.width])
    }

    /// The block's rows, writable.
    /// Row `i` of block `b`.
    pub fn row(&self, b: Block, i: usize) -> &[f32] {
        let at = i * b.stride + b.at;
        &self.bufs[b.buf][at..at + b.width]
    }

    pub fn rows_mut(&mut self, b: Block) -> impl Iterator<Item = &mut [f32]> {
        self.bufs[b.buf]
            .chunks_exact_mut(b.stride.max(1))
            .map(move |row| &mut row[b.at..b.at + b.width])
    }

    /// The block as a strided matrix view.
    pub fn mat(&self, b: Block) -> Mat<'_> {
        let data = &self.bufs[b.buf];
        Mat {
            data,
            rows: data.len() / b.stride.max(1),
            cols: b.stride,
            rs: b.stride,
            cs: 1,
        }
        .col_range(b.at, b.width)
    }

    /// Multiplies q and k by `scale` (as the reference: in f64, rounded to f32).
    pub fn scale_qk(&mut self, scale: f64) {
        for b in [self.q, self.k] {
            self.rows_mut(b)
                .flatten()
                .for_each(|v| *v = (*v as f64 * scale) as f32);
        }
    }
}

impl Block {
    const EMPTY: Block = Block {
        buf: 0,
        at: 0,
        width: 0,
        stride: 0,
    };

    /// Columns `at .. at + width` of this block (`None` when empty: a router the variant
    /// lacks).
    fn cols(self, at: usize, width: usize) -> Option<Block> {
        (width > 0).then_some(Block {
            at: self.at + at,
            width,
            ..self
        })
    }
}
