//! `Decoder`: feeds a session tokens a step at a time and keeps what the next step needs,
//! so generation costs the new tokens' work, not the whole context's.
//!
//! - RoPE models compiled with a KV cache (`switchhead-compile --kv-cache`): the cache of
//!   keys and values per layer. With a context limit (`with_context`, by default the model's
//!   training context when it is recorded), a step that would overflow it restarts the cache
//!   from the last half of the context (re-encoded once), so positions stay those the model
//!   was trained on.
//! - Transformer-XL models: the memory, chunked as in training. Within a chunk of the
//!   model's `chunk_size`, each step sees the previous chunk's layer inputs and the current
//!   chunk's so far; at a chunk boundary the current chunk becomes the memory. Logits equal
//!   a chunked full pass over the same tokens.
//! - Device backends (CUDA, OpenCL) keep either state in device memory
//!   ([`crate::backend::ResidentDecoder`]); the context limit works as above.
//!
//! Continuous batching ([`Decoder::step_each`]): independent batch-1 decoders of one session,
//! each at its own position, feed one token each through one shared pass where the backend
//! can (the native executor, for RoPE plans: projections, experts and the output head run
//! over all rows, attention per sequence over its own cache); elsewhere each is stepped in
//! turn. Sequences join and leave between steps simply by being passed or not; each row's
//! logits are those the decoder would give alone.

use crate::backend::ResidentDecoder;
use crate::info::ModelInfo;
use crate::{KvCache, Logits, RuntimeError, Session, TokenBatch, XlMemory};

/// A stateful decoder over one [`Session`] (see the module docs).
#[derive(Debug)]
pub struct Decoder<'s> {
    session: &'s Session,
    batch: usize,
    state: State<'s>,
    /// Tokens fed so far, per batch row.
    position: usize,
}

#[derive(Debug)]
enum State<'s> {
    Kv {
        cache: KvCache,
        context: Option<usize>,
        /// The last `context` tokens per row (to re-encode when the cache restarts).
        history: Vec<Vec<i64>>,
    },
    Xl {
        previous: XlMemory,
        current: XlMemory,
        chunk: usize,
    },
    /// The state lives in the backend (a device): a KV cache or the XL memory.
    Resident {
        decoder: Box<dyn ResidentDecoder + 's>,
        /// RoPE models' context limit, as for `Kv` (XL memory bounds itself).
        context: Option<usize>,
        history: Vec<Vec<i64>>,
    },
}

impl<'s> Decoder<'s> {
    pub(crate) fn new(session: &'s Session, batch: usize) -> Result<Self, RuntimeError> {
        let info = session.info();
        if batch == 0 {
            return Err(RuntimeError::EmptyInput { batch, seq: 0 });
        }
        let state = if let Some(decoder) = session.backend().resident_decoder(batch) {
            State::Resident {
                decoder: decoder?,
                context: (!info.is_xl()).then_some(info.chunk_size).flatten(),
                history: vec![Vec::new(); batch],
            }
        } else if info.is_xl() {
            xl_state(session, info, batch)?
        } else {
            let kv = info.kv.ok_or_else(|| RuntimeError::NoKvCache {
                path: session.path().to_path_buf(),
            })?;
            State::Kv {
                cache: KvCache::empty(batch, kv.heads, kv.d_head, kv.layers),
                context: info.chunk_size,
                history: vec![Vec::new(); batch],
            }
        };
        Ok(Decoder {
            session,
            batch,
            state,
            position: 0,
        })
    }

    /// Limits a RoPE model's context to `tokens` (at least 2); `None` removes the limit.
    /// XL models bound their memory by their chunk size and ignore this.
    pub fn with_context(mut self, tokens: Option<usize>) -> Self {
        let xl = self.session.is_xl();
        match &mut self.state {
            State::Kv { context, .. } => *context = tokens.map(|t| t.max(2)),
            State::Resident { context, .. } if !xl => *context = tokens.map(|t| t.max(2)),
            _ => {}
        }
        self
    }

    /// Tokens fed so far (per batch row).
    pub fn position(&self) -> usize {
        self.position
    }

    /// Rows decoded side by side.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Feeds `tokens` `[batch, seq]` and returns their logits `[batch, seq, vocab]`.
    pub fn step(&mut self, tokens: &TokenBatch) -> Result<Logits, RuntimeError> {
        self.session.check_tokens(tokens)?;
        if tokens.batch != self.batch {
            return Err(RuntimeError::ShapeMismatch {
                tensor: "tokens".into(),
                expected: format!("a batch of {} (the decoder's)", self.batch),
                got: format!("a batch of {}", tokens.batch),
            });
        }
        let logits = match &mut self.state {
            State::Kv { .. } => self.step_kv(tokens)?,
            State::Xl { .. } => self.step_xl(tokens)?,
            State::Resident { .. } => self.step_resident(tokens)?,
        };
        self.position += tokens.seq;
        Ok(logits)
    }

    /// Batch-1 convenience: feeds `tokens` and returns the logits of the last one.
    pub fn feed(&mut self, tokens: &[i64]) -> Result<Vec<f32>, RuntimeError> {
        let logits = self.step(&TokenBatch::single(tokens.to_vec()))?;
        let last = logits.seq.saturating_sub(1);
        Ok(logits.row(0, last).map(<[f32]>::to_vec).unwrap_or_default())
    }

    /// Feeds `tokens[i]` to `decoders[i]` (batch-1 decoders of one session) and returns each
    /// one's logits for it, sharing one pass among those the backend can batch (see the
    /// module docs); the others, and any whose cache must restart first, step alone.
    pub fn step_each(
        decoders: &mut [&mut Decoder<'_>],
        tokens: &[i64],
    ) -> Result<Vec<Vec<f32>>, RuntimeError> {
        check_each(decoders, tokens)?;
        let shared: Vec<usize> = (0..decoders.len())
            .filter(|&i| decoders[i].kv_room())
            .collect();
        let mut out: Vec<Option<Vec<f32>>> = vec![None; decoders.len()];
        if shared.len() > 1 {
            // When the backend cannot share the pass, nothing is filled in and all step alone.
            Self::step_shared(decoders, tokens, &shared, &mut out)?;
        }
        for (i, d) in decoders.iter_mut().enumerate() {
            if out[i].is_none() {
                out[i] = Some(d.feed(&tokens[i..i + 1])?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Whether this is a host KV decoder with room for one more token without a restart.
    fn kv_room(&self) -> bool {
        match &self.state {
            State::Kv { cache, context, .. } => context.is_none_or(|l| cache.past < l),
            _ => false,
        }
    }

    /// The decoders at `rows` (ascending) in one pass, their logits into `out`; nothing
    /// when the backend cannot share it.
    fn step_shared(
        decoders: &mut [&mut Decoder<'_>],
        tokens: &[i64],
        rows: &[usize],
        out: &mut [Option<Vec<f32>>],
    ) -> Result<(), RuntimeError> {
        let session = decoders[rows[0]].session;
        let ids: Vec<i64> = rows.iter().map(|&i| tokens[i]).collect();
        let mut caches: Vec<&mut KvCache> = decoders
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| rows.binary_search(i).is_ok())
            .filter_map(|(_, d)| match &mut d.state {
                State::Kv { cache, .. } => Some(cache),
                _ => None,
            })
            .collect();
        if caches.len() != rows.len() {
            return Err(RuntimeError::Interface {
                reason: "internal: a shared step over a decoder without a KV cache".into(),
            });
        }
        let Some(result) = session.backend().run_kv_rows(&ids, &mut caches) else {
            return Ok(());
        };
        let logits = result?;
        let vocab = session.vocab_size();
        if logits.len() != rows.len() * vocab {
            return Err(RuntimeError::Interface {
                reason: format!(
                    "a shared step of {} rows returned {} logits",
                    rows.len(),
                    logits.len()
                ),
            });
        }
        for (&i, row) in rows.iter().zip(logits.chunks_exact(vocab)) {
            let d = &mut *decoders[i];
            if let State::Kv {
                history, context, ..
            } = &mut d.state
            {
                remember(
                    history,
                    &TokenBatch::single(vec![tokens[i]]),
                    context.unwrap_or(usize::MAX),
                );
            }
            d.position += 1;
            out[i] = Some(row.to_vec());
        }
        Ok(())
    }

    fn step_kv(&mut self, tokens: &TokenBatch) -> Result<Logits, RuntimeError> {
        let State::Kv {
            cache,
            context,
            history,
        } = &mut self.state
        else {
            return Err(RuntimeError::NotXl("internal: not a KV decoder".into()));
        };
        let backend = self.session.backend();
        let mut out = Vec::new();
        for piece in split(tokens, context.map_or(usize::MAX, |c| c / 2)) {
            if let Some(limit) = *context
                && cache.past + piece.seq > limit
            {
                *cache = restart(self.session, cache, history, limit / 2)?;
            }
            let logits = backend.run_kv(&piece, cache)?;
            remember(history, &piece, context.unwrap_or(usize::MAX));
            out.push(self.session.logits_of(&piece, logits)?);
        }
        Ok(concat(out, self.session.vocab_size()))
    }

    fn step_resident(&mut self, tokens: &TokenBatch) -> Result<Logits, RuntimeError> {
        let State::Resident {
            decoder,
            context,
            history,
        } = &mut self.state
        else {
            return Err(RuntimeError::NotXl(
                "internal: not a resident decoder".into(),
            ));
        };
        let mut out = Vec::new();
        for piece in split(tokens, context.map_or(usize::MAX, |c| c / 2)) {
            if let Some(limit) = *context
                && decoder.past() + piece.seq > limit
            {
                restart_resident(decoder.as_mut(), history, limit / 2)?;
            }
            let logits = decoder.step(&piece)?;
            remember(history, &piece, context.unwrap_or(usize::MAX));
            out.push(self.session.logits_of(&piece, logits)?);
        }
        Ok(concat(out, self.session.vocab_size()))
    }

    fn step_xl(&mut self, tokens: &TokenBatch) -> Result<Logits, RuntimeError> {
        let State::Xl {
            previous,
            current,
            chunk,
        } = &mut self.state
        else {
            return Err(RuntimeError::NotXl("internal: not an XL decoder".into()));
        };
        let mut out = Vec::new();
        let mut rest = tokens.clone();
        while rest.seq > 0 {
            let room = *chunk - current.mem_len;
            let (piece, tail) = split_at(&rest, room.min(rest.seq));
            let memory = previous.append(current, usize::MAX);
            let (logits, inputs) = self.session.forward_chunk(&piece, Some(&memory))?;
            *current = current.append(&inputs, usize::MAX);
            if current.mem_len == *chunk {
                let (b, d, l) = (current.batch, current.d_model, current.layers.len());
                *previous = std::mem::replace(current, XlMemory::empty(b, d, l));
            }
            out.push(logits);
            rest = tail;
        }
        Ok(concat(out, self.session.vocab_size()))
    }
}

/// `step_each`'s inputs: one token per decoder, every decoder batch 1 and of one session,
/// every token in the vocabulary.
fn check_each(decoders: &[&mut Decoder<'_>], tokens: &[i64]) -> Result<(), RuntimeError> {
    if decoders.len() != tokens.len() {
        return Err(RuntimeError::ShapeMismatch {
            tensor: "tokens".into(),
            expected: format!("one token per decoder ({})", decoders.len()),
            got: format!("{} tokens", tokens.len()),
        });
    }
    let Some(first) = decoders.first() else {
        return Ok(());
    };
    if decoders
        .iter()
        .any(|d| d.batch != 1 || !std::ptr::eq(d.session, first.session))
    {
        return Err(RuntimeError::ShapeMismatch {
            tensor: "decoders".into(),
            expected: "batch-1 decoders of one session".into(),
            got: "a decoder of another batch size or session".into(),
        });
    }
    first
        .session
        .check_tokens(&TokenBatch::new(tokens.len(), 1, tokens.to_vec())?)
}

fn xl_state(
    session: &Session,
    info: &ModelInfo,
    batch: usize,
) -> Result<State<'static>, RuntimeError> {
    let chunk = info.chunk_size.filter(|&c| c > 0).ok_or_else(|| {
        RuntimeError::Interface {
            reason: format!(
                "{} records no switchhead.chunk_size: an XL decoder needs the training chunk length",
                session.path().display()
            ),
        }
    })?;
    let empty = XlMemory::empty(batch, info.d_model, info.memory_layers);
    Ok(State::Xl {
        previous: empty.clone(),
        current: empty,
        chunk,
    })
}

/// Re-encodes the last `keep` remembered tokens of every row into a fresh cache.
fn restart(
    session: &Session,
    cache: &KvCache,
    history: &[Vec<i64>],
    keep: usize,
) -> Result<KvCache, RuntimeError> {
    let mut fresh = KvCache::empty(cache.batch, cache.heads, cache.d_head, cache.layers.len());
    let keep = keep.min(history.iter().map(Vec::len).min().unwrap_or(0));
    if keep == 0 {
        return Ok(fresh);
    }
    let tokens = history
        .iter()
        .flat_map(|h| h[h.len() - keep..].iter().copied())
        .collect();
    let prompt = TokenBatch::new(history.len(), keep, tokens)?;
    session.backend().run_kv(&prompt, &mut fresh)?;
    Ok(fresh)
}

/// Empties a resident cache and re-encodes the last `keep` tokens of every row.
fn restart_resident(
    decoder: &mut dyn ResidentDecoder,
    history: &[Vec<i64>],
    keep: usize,
) -> Result<(), RuntimeError> {
    decoder.reset();
    let keep = keep.min(history.iter().map(Vec::len).min().unwrap_or(0));
    if keep == 0 {
        return Ok(());
    }
    let tokens = history
        .iter()
        .flat_map(|h| h[h.len() - keep..].iter().copied())
        .collect();
    decoder.step(&TokenBatch::new(history.len(), keep, tokens)?)?;
    Ok(())
}

fn remember(history: &mut [Vec<i64>], piece: &TokenBatch, keep: usize) {
    for (row, h) in history.iter_mut().enumerate() {
        h.extend_from_slice(&piece.tokens[row * piece.seq..(row + 1) * piece.seq]);
        if h.len() > keep {
            h.drain(..h.len() - keep);
        }
    }
}

/// `tokens` cut along the sequence into pieces of at most `max` (at least 1).
fn split(tokens: &TokenBatch, max: usize) -> Vec<TokenBatch> {
    let mut pieces = Vec::new();
    let mut rest = tokens.clone();
    while rest.seq > 0 {
        let (piece, tail) = split_at(&rest, max.max(1).min(rest.seq));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The first `n` positions of every row, and the rest.
fn split_at(tokens: &TokenBatch, n: usize) -> (TokenBatch, TokenBatch) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    for row in tokens.tokens.chunks_exact(tokens.seq.max(1)) {
        head.extend_from_slice(&row[..n]);
        tail.extend_from_slice(&row[n..]);
    }
    let batch = tokens.batch;
    (
        TokenBatch {
            batch,
            seq: n,
            tokens: head,
        },
        TokenBatch {
            batch,
            seq: tokens.seq - n,
            tokens: tail,
        },
    )
}

/// Logits pieces of the same batch joined along the sequence.
fn concat(pieces: Vec<Logits>, vocab: usize) -> Logits {
    let batch = pieces.first().map_or(0, |p| p.batch);
    let seq = pieces.iter().map(|p| p.seq).sum();
    let mut data = Vec::with_capacity(batch * seq * vocab);
    for b in 0..batch {
        for p in &pieces {
            data.extend_from_slice(&p.data[b * p.seq * vocab..(b + 1) * p.seq * vocab]);
        }
    }
    Logits {
        batch,
        seq,
        vocab,
        data,
    }
}
