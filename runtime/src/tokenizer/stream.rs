//! Decoding generated tokens as they come.
//!
//! A token's text can depend on its neighbours (a SentencePiece `▁` is a space except at the
//! start, a character may be split over byte-fallback pieces), so the stream decodes a short
//! window of recent ids and returns what it added, as Hugging Face's `DecodeStream` does: the
//! window restarts after each returned piece, and nothing is returned while the text ends in an
//! incomplete character (U+FFFD). Byte-level tokens are returned as their byte at once (the
//! bytes of a multi-byte character come one by one), exactly as the model made them.

use super::{Result, Tokenizer};

/// Turns token ids, one at a time, into the bytes of text they add.
#[derive(Debug)]
pub struct DecodeStream<'t> {
    tokenizer: &'t Tokenizer,
    /// The ids since the start of the previous returned piece.
    ids: Vec<i64>,
    /// The text of `ids[..prefix_len]`.
    prefix: String,
    prefix_len: usize,
}

impl<'t> DecodeStream<'t> {
    pub(super) fn new(tokenizer: &'t Tokenizer) -> Self {
        DecodeStream {
            tokenizer,
            ids: Vec::new(),
            prefix: String::new(),
            prefix_len: 0,
        }
    }

    /// The bytes `id` adds to the text (empty while a character is incomplete).
    pub fn step(&mut self, id: i64) -> Result<Vec<u8>> {
        if self.tokenizer.is_byte_level() {
            let ids = self.tokenizer.checked_ids(&[id])?;
            return Ok(ids.iter().map(|&b| b as u8).collect());
        }
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids)?;
        if text.len() <= self.prefix.len() || text.ends_with('\u{fffd}') {
            return Ok(Vec::new());
        }
        let added = match text.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.as_bytes().to_vec(),
            // The window decodes differently now: emit from where the texts part.
            None => text.as_bytes()[common_prefix(&text, &self.prefix)..].to_vec(),
        };
        self.ids.drain(..self.prefix_len);
        self.prefix = self.tokenizer.decode(&self.ids)?;
        self.prefix_len = self.ids.len();
        Ok(added)
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    let same = a
        .char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y);
    same.last().map_or(0, |((i, c), _)| i + c.len_utf8())
}
