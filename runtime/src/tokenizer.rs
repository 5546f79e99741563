//! The model's tokenizer: text to token ids and back, shared by the CLI, the Python package and
//! the server.
//!
//! Three kinds, none written here:
//! - byte-level: the UTF-8 bytes are the tokens (vocabulary 256);
//! - a Hugging Face `tokenizer.json`, through the `tokenizers` crate;
//! - a SentencePiece `.model`, through the `sentencepiece` crate (Google's C++ library).
//!
//! [`Tokenizer::for_model`] finds the one a model uses: an explicit path, else `tokenizer.json`
//! or a SentencePiece `*.model` in the model's directory (beside a model file: only
//! `tokenizer.json` or `tokenizer.model`), else byte-level when the vocabulary is 256, else a
//! [`TokenizerError::NotFound`] that names the fix. Its vocabulary must fit the model's.
//!
//! Contract: [`Tokenizer::encode`] adds no special tokens (no BOS/EOS); [`Tokenizer::decode`]
//! drops special tokens and rejects ids outside the vocabulary. [`Tokenizer::encode_bytes`]
//! also says which text bytes each token covers (token i covers the bytes from the end of token
//! i-1's span to the end of its own), so that scores can be reported per byte whatever the
//! tokenizer. [`DecodeStream`] turns generated ids into text as they come.

mod find;
mod stream;

use std::path::{Path, PathBuf};

use sentencepiece::SentencePieceProcessor;

pub use stream::DecodeStream;

/// Why a tokenizer could not be found, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The model has no tokenizer file and is not byte-level.
    #[error(
        "{model}: the vocabulary has {vocab_size} tokens but there is no tokenizer: put tokenizer.json \
         (Hugging Face) or tokenizer.model (SentencePiece) in {dir}, or pass --tokenizer PATH \
         (without one, only a vocabulary of 256 is byte-level)"
    )]
    NotFound {
        model: PathBuf,
        dir: PathBuf,
        vocab_size: usize,
    },
    /// The model's directory holds several SentencePiece models, none named `tokenizer.model`,
    /// and no `tokenizer.json`.
    #[error("{dir}: several SentencePiece models ({names}): pass --tokenizer PATH to pick one")]
    Ambiguous { dir: PathBuf, names: String },
    /// The file could not be read.
    #[error("tokenizer {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a tokenizer of its kind.
    #[error("tokenizer {path}: not a valid {kind}: {reason}")]
    Invalid {
        path: PathBuf,
        kind: &'static str,
        reason: String,
    },
    /// The tokenizer has more tokens than the model's vocabulary.
    #[error(
        "tokenizer {path} has {tokenizer} tokens but the model's vocabulary has {model}: not this model's tokenizer"
    )]
    VocabMismatch {
        path: PathBuf,
        tokenizer: usize,
        model: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token {id} is outside the tokenizer's vocabulary of {vocab_size}")]
    UnknownId { id: i64, vocab_size: usize },
    /// The text is not UTF-8 (byte-level models read any bytes; tokenizers read text).
    #[error(
        "the text is not UTF-8 (first invalid byte at offset {offset}): {tokenizer} reads UTF-8 text"
    )]
    NotUtf8 { offset: usize, tokenizer: String },
    /// The tokenizer library failed on this input.
    #[error("{tokenizer}: {reason}")]
    Failed { tokenizer: String, reason: String },
}

/// Result of tokenizer operations.
pub type Result<T> = std::result::Result<T, TokenizerError>;

/// A text's token ids and the text bytes each token covers (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids.
    pub ids: Vec<i64>,
    /// `covered[i]`: the bytes token i covers; they add up to the bytes the tokens span.
    pub covered: Vec<usize>,
}

/// Text to token ids and back for one model.
#[derive(Debug)]
pub struct Tokenizer {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Bytes,
    HuggingFace {
        path: PathBuf,
        inner: Box<tokenizers::Tokenizer>,
    },
    SentencePiece {
        path: PathBuf,
        inner: SentencePieceProcessor,
    },
}

impl Tokenizer {
    /// The byte-level tokenizer: token = byte, vocabulary 256.
    pub fn bytes() -> Self {
        Tokenizer { kind: Kind::Bytes }
    }

    /// Loads `path`: a `.json` file is a Hugging Face tokenizer, any other file a SentencePiece
    /// model; a directory is searched as a model directory is (`tokenizer.json`, `*.model`).
    pub fn from_file(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return find::in_dir(path)?.ok_or_else(|| TokenizerError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no tokenizer.json or *.model in this directory",
                ),
            });
        }
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match path.extension().is_some_and(|e| e == "json") {
            true => Self::hugging_face(path, &bytes),
            false => Self::sentence_piece(path, &bytes),
        }
    }

    /// The tokenizer of the model at `model` with `vocab_size` tokens: `explicit` if given, else
    /// for a directory its `tokenizer.json`, `tokenizer.model` or one `*.model`, for a file the
    /// `tokenizer.json` or `tokenizer.model` beside it, else byte-level for a vocabulary of 256.
    /// The tokenizer's vocabulary must fit the model's.
    pub fn for_model(model: &Path, explicit: Option<&Path>, vocab_size: usize) -> Result<Self> {
        let found = match explicit {
            Some(path) => Some(Self::from_file(path)?),
            None => find::for_model(model)?,
        };
        let tokenizer = match found {
            Some(t) => t,
            None if vocab_size == 256 => Self::bytes(),
            None => {
                return Err(TokenizerError::NotFound {
                    model: model.to_path_buf(),
                    dir: find::model_dir(model),
                    vocab_size,
                });
            }
        };
        tokenizer.check_fits(vocab_size)?;
        Ok(tokenizer)
    }

    fn hugging_face(path: &Path, bytes: &[u8]) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::Invalid {
                path: path.to_path_buf(),
                kind: "Hugging Face tokenizer.json",
                reason: e.to_string(),
            })?;
        let path = path.to_path_buf();
        let inner = Box::new(inner);
        Ok(Tokenizer {
            kind: Kind::HuggingFace { path, inner },
        })
    }

    fn sentence_piece(path: &Path, bytes: &[u8]) -> Result<Self> {
        let invalid = |reason: String| TokenizerError::Invalid {
            path: path.to_path_buf(),
            kind: "SentencePiece model",
            reason,
        };
        let inner = SentencePieceProcessor::from_serialized_proto(bytes)
            .map_err(|e| invalid(e.to_string()))?;
        if inner.is_empty() {
            return Err(invalid("no pieces".into()));
        }
        let path = path.to_path_buf();
        Ok(Tokenizer {
            kind: Kind::SentencePiece { path, inner },
        })
    }

    fn check_fits(&self, model: usize) -> Result<()> {
        let tokenizer = self.vocab_size();
        match tokenizer <= model {
            true => Ok(()),
            false => Err(TokenizerError::VocabMismatch {
                path: self.path().map(Path::to_path_buf).unwrap_or_default(),
                tokenizer,
                model,
            }),
        }
    }

    /// True for the byte-level tokenizer.
    pub fn is_byte_level(&self) -> bool {
        matches!(self.kind, Kind::Bytes)
    }

    /// The file the tokenizer came from (`None` for byte-level).
    pub fn path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Bytes => None,
            Kind::HuggingFace { path, .. } | Kind::SentencePiece { path, .. } => Some(path),
        }
    }

    /// One line naming the tokenizer, e.g. `SentencePiece testdata/models/spm/tokenizer.model`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Bytes => "byte-level".into(),
            Kind::HuggingFace { path, .. } => format!("tokenizer.json {}", path.display()),
            Kind::SentencePiece { path, .. } => format!("SentencePiece {}", path.display()),
        }
    }

    /// Number of token ids the tokenizer can produce (with added and special tokens).
    pub fn vocab_size(&self) -> usize {
        match &self.kind {
            Kind::Bytes => 256,
            Kind::HuggingFace { inner, .. } => inner.get_vocab_size(true),
            Kind::SentencePiece { inner, .. } => inner.len(),
        }
    }

    /// The token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        Ok(self.encode_str(text)?.ids)
    }

    /// The tokens of `text` and the bytes each covers. Byte-level tokenizers take any bytes; the
    /// others need UTF-8 ([`TokenizerError::NotUtf8`] otherwise).
    pub fn encode_bytes(&self, text: &[u8]) -> Result<Encoding> {
        if self.is_byte_level() {
            let ids = text.iter().map(|&b| i64::from(b)).collect();
            let covered = vec![1; text.len()];
            return Ok(Encoding { ids, covered });
        }
        let text = std::str::from_utf8(text).map_err(|e| TokenizerError::NotUtf8 {
            offset: e.valid_up_to(),
            tokenizer: self.describe(),
        })?;
        self.encode_str(text)
    }

    fn encode_str(&self, text: &str) -> Result<Encoding> {
        let ends: Vec<(i64, usize)> = match &self.kind {
            Kind::Bytes => return self.encode_bytes(text.as_bytes()),
            Kind::HuggingFace { inner, .. } => {
                let enc = inner.encode(text, false).map_err(|e| self.failed(e))?;
                let ids = enc.get_ids().iter().map(|&id| i64::from(id));
                ids.zip(enc.get_offsets().iter().map(|o| o.1)).collect()
            }
            Kind::SentencePiece { inner, .. } => {
                let pieces = inner.encode(text).map_err(|e| self.failed(e))?;
                let spans = pieces.iter().map(|p| (i64::from(p.id), p.span.1 as usize));
                spans.collect()
            }
        };
        Ok(coverage(ends))
    }

    /// The text of `ids` (special tokens dropped).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids = self.checked_ids(ids)?;
        match &self.kind {
            Kind::Bytes => {
                let bytes: Vec<u8> = ids.iter().map(|&id| id as u8).collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Kind::HuggingFace { inner, .. } => inner.decode(&ids, true).map_err(|e| self.failed(e)),
            Kind::SentencePiece { inner, .. } => {
                inner.decode_piece_ids(&ids).map_err(|e| self.failed(e))
            }
        }
    }

    /// A decoder for generated tokens, one id at a time.
    pub fn stream(&self) -> DecodeStream<'_> {
        DecodeStream::new(self)
    }

    fn checked_ids(&self, ids: &[i64]) -> Result<Vec<u32>> {
        let vocab_size = self.vocab_size();
        ids.iter()
            .map(|&id| {
                u32::try_from(id)
                    .ok()
                    .filter(|&u| (u as usize) < vocab_size)
                    .ok_or(TokenizerError::UnknownId { id, vocab_size })
            })
            .collect()
    }

    fn failed(&self, reason: impl std::fmt::Display) -> TokenizerError {
        TokenizerError::Failed {
            tokenizer: self.describe(),
            reason: reason.to_string(),
        }
    }
}

/// Ids with their span ends to ids with the bytes each covers (ends made non-decreasing).
fn coverage(ends: Vec<(i64, usize)>) -> Encoding {
    let mut last = 0;
    let (ids, covered) = ends
        .into_iter()
        .map(|(id, end)| {
            let end = end.max(last);
            let n = end - last;
            last = end;
            (id, n)
        })
        .unzip();
    Encoding { ids, covered }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_cover_one_byte_each() -> Result<()> {
        let t = Tokenizer::bytes();
        let enc = t.encode_bytes("Ab\u{e9}".as_bytes())?;
        assert_eq!(enc.ids, vec![65, 98, 0xc3, 0xa9]);
        assert_eq!(enc.covered, vec![1; 4]);
        assert_eq!(t.decode(&enc.ids)?, "Ab\u{e9}");
        assert!(matches!(
            t.decode(&[256]),
            Err(TokenizerError::UnknownId { id: 256, .. })
        ));
        Ok(())
    }

    #[test]
    fn coverage_attributes_gaps_to_the_next_token() {
        let enc = coverage(vec![(7, 3), (8, 3), (9, 2), (10, 6)]);
        assert_eq!(enc.ids, vec![7, 8, 9, 10]);
        assert_eq!(enc.covered, vec![3, 0, 0, 3]);
    }
}
