//! The tokenizer files of an ONNX Runtime GenAI folder: `tokenizer.json` (Hugging Face format)
//! and `tokenizer_config.json`, which ORT GenAI reads through onnxruntime-extensions.
//!
//! - Byte-level (vocabulary 256): a byte-level BPE with no merges whose vocabulary maps each
//!   byte (in GPT-2's byte-to-character alphabet) to its own id, so every byte is one token.
//! - A SentencePiece Unigram `.model`: its pieces and scores as a Unigram `tokenizer.json`
//!   (Metaspace pre-tokenizer, byte fallback, the model's normalization settings), class
//!   `T5Tokenizer`, which onnxruntime-extensions runs with its SentencePiece Unigram tokenizer.
//!   Byte pieces get the score SentencePiece gives a character no piece spells (the lowest
//!   piece score minus 10): onnxruntime-extensions offers them as ordinary candidates, and with
//!   that score it picks one exactly where SentencePiece falls back to bytes.
//! - A `tokenizer.json`: copied, with the `tokenizer_config.json` beside it if there is one.
//!
//! What onnxruntime-extensions cannot express comes back as notes (see [`TokenizerFiles`]).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::GenaiError;
use super::spm_proto::{ModelProto, piece_type};

/// Where an export's tokenizer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// The UTF-8 bytes are the tokens (vocabulary 256).
    Bytes,
    /// A Hugging Face `tokenizer.json`.
    HuggingFace(PathBuf),
    /// A SentencePiece `.model`.
    SentencePiece(PathBuf),
}

/// The files to write and the special-token ids `genai_config.json` names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerFiles {
    /// File name in the export folder and contents.
    pub files: Vec<(&'static str, Vec<u8>)>,
    /// Beginning-of-sequence id, if the tokenizer has one.
    pub bos: Option<u32>,
    /// Ids that end generation (none for byte-level models).
    pub eos: Vec<u32>,
    /// Padding id, if the tokenizer has one.
    pub pad: Option<u32>,
    /// Where ORT GenAI's tokenizer will differ from ours (one sentence each).
    pub notes: Vec<String>,
}

/// The tokenizer files for `source`, `model_max_length` = `context`.
pub fn tokenizer_files(
    source: &TokenizerSource,
    context: usize,
) -> Result<TokenizerFiles, GenaiError> {
    match source {
        TokenizerSource::Bytes => Ok(byte_level(context)),
        TokenizerSource::HuggingFace(path) => hugging_face(path, context),
        TokenizerSource::SentencePiece(path) => sentence_piece(path, context),
    }
}

fn to_bytes(v: &Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the others for
/// U+0100 onwards in byte order.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn byte_level(context: usize) -> TokenizerFiles {
    let vocab: serde_json::Map<String, Value> = (0..=255u8)
        .map(|b| (byte_char(b).to_string(), json!(b)))
        .collect();
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": false, "use_regex": false});
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []},
    });
    let config = json!({"tokenizer_class": "GPT2Tokenizer", "add_bos_token": false,
                        "add_eos_token": false, "model_max_length": context,
                        "clean_up_tokenization_spaces": false});
    TokenizerFiles {
        files: vec![
            ("tokenizer.json", to_bytes(&tokenizer)),
            ("tokenizer_config.json", to_bytes(&config)),
        ],
        ..Default::default()
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> GenaiError {
    GenaiError::Tokenizer {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, GenaiError> {
    std::fs::read(path).map_err(|source| GenaiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn sentence_piece(path: &Path, context: usize) -> Result<TokenizerFiles, GenaiError> {
    let proto: ModelProto = prost::Message::decode(read(path)?.as_slice())
        .map_err(|e| invalid(path, format!("not a SentencePiece model: {e}")))?;
    let trainer = proto.trainer_spec.clone().unwrap_or_default();
    if !trainer.is_unigram() {
        return Err(invalid(
            path,
            "not a Unigram SentencePiece model: the conversion for ORT GenAI reads Unigram \
             models only (convert a BPE model to a tokenizer.json and put that beside the model)",
        ));
    }
    let norm = proto.normalizer_spec.clone().unwrap_or_default();
    let piece = |id: Option<i32>| -> Option<(u32, String)> {
        let id = u32::try_from(id?).ok()?;
        let p = proto.pieces.get(id as usize)?;
        Some((id, p.piece.clone().unwrap_or_default()))
    };
    let (bos, eos) = (
        piece(trainer.bos_id.or(Some(1))),
        piece(trainer.eos_id.or(Some(2))),
    );
    let (unk, pad) = (piece(trainer.unk_id.or(Some(0))), piece(trainer.pad_id));
    let tokenizer = unigram_json(&proto, &trainer, &norm, unk.as_ref().map_or(0, |u| u.0));
    let name = |p: &Option<(u32, String)>| p.as_ref().map(|p| p.1.clone());
    let config = json!({"tokenizer_class": "T5Tokenizer", "add_bos_token": false,
                        "add_eos_token": false, "bos_token": name(&bos),
                        "eos_token": name(&eos), "unk_token": name(&unk),
                        "pad_token": name(&pad), "model_max_length": context,
                        "clean_up_tokenization_spaces": false});
    Ok(TokenizerFiles {
        files: vec![
            ("tokenizer.json", to_bytes(&tokenizer)),
            ("tokenizer_config.json", to_bytes(&config)),
        ],
        bos: bos.map(|p| p.0),
        eos: eos.map(|p| p.0).into_iter().collect(),
        pad: pad.map(|p| p.0),
        notes: spm_notes(path, &norm, trainer.byte_fallback.unwrap_or(false)),
    })
}

/// What onnxruntime-extensions' Unigram tokenizer does differently from this model's
/// SentencePiece settings: it always adds the dummy prefix, always folds runs of spaces, and
/// has no byte fallback for multi-byte characters.
fn spm_notes(
    path: &Path,
    norm: &super::spm_proto::NormalizerSpec,
    byte_fallback: bool,
) -> Vec<String> {
    let p = path.display();
    let mut notes = Vec::new();
    if !norm.dummy_prefix() {
        notes.push(format!(
            "{p} adds no dummy prefix, but ORT GenAI's Unigram tokenizer (onnxruntime-extensions) \
             always puts a word boundary before the text: its prompt ids equal ours only for text \
             that starts with a space"
        ));
    }
    if !norm.folds_whitespace() {
        notes.push(format!(
            "{p} keeps runs of spaces, but ORT GenAI's tokenizer folds them into one and drops \
             trailing spaces"
        ));
    }
    if byte_fallback {
        notes.push(format!(
            "ORT GenAI's tokenizer has no byte fallback for multi-byte characters that no piece of \
             {p} spells: it encodes them as the unknown token"
        ));
    }
    notes
}

fn unigram_json(
    proto: &ModelProto,
    trainer: &super::spm_proto::TrainerSpec,
    norm: &super::spm_proto::NormalizerSpec,
    unk_id: u32,
) -> Value {
    let kind = |p: &super::spm_proto::Piece| p.r#type.unwrap_or(piece_type::NORMAL);
    let lowest = proto
        .pieces
        .iter()
        .filter(|p| kind(p) == piece_type::NORMAL)
        .map(|p| p.score.unwrap_or(0.0))
        .fold(0f32, f32::min);
    let vocab: Vec<Value> = proto
        .pieces
        .iter()
        .map(|p| {
            let score = match kind(p) {
                piece_type::BYTE => lowest - 10.0,
                _ => p.score.unwrap_or(0.0),
            };
            json!([p.piece.clone().unwrap_or_default(), score])
        })
        .collect();
    let added: Vec<Value> = proto
        .pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            matches!(
                kind(p),
                piece_type::CONTROL | piece_type::UNKNOWN | piece_type::USER_DEFINED
            )
        })
        .map(|(id, p)| {
            json!({"id": id, "content": p.piece.clone().unwrap_or_default(),
                   "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": kind(p) == piece_type::USER_DEFINED,
                   "special": kind(p) != piece_type::USER_DEFINED})
        })
        .collect();
    let prepend = if norm.dummy_prefix() {
        "always"
    } else {
        "never"
    };
    let split = trainer.split_by_whitespace.unwrap_or(true);
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if norm.dummy_prefix() {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": normalizer(norm),
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}",
                          "prepend_scheme": prepend, "split": split},
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": vocab,
                  "byte_fallback": trainer.byte_fallback.unwrap_or(false)},
    })
}

/// The model's normalization: its precompiled rules, then SentencePiece's whitespace folding.
fn normalizer(norm: &super::spm_proto::NormalizerSpec) -> Value {
    let mut steps = Vec::new();
    if !norm.charsmap().is_empty() {
        steps.push(json!({"type": "Precompiled",
                          "precompiled_charsmap": base64(norm.charsmap())}));
    }
    if norm.folds_whitespace() {
        steps.push(json!({"type": "Strip", "strip_left": true, "strip_right": true}));
        steps.push(json!({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}));
    }
    match steps.is_empty() {
        true => Value::Null,
        false => json!({"type": "Sequence", "normalizers": steps}),
    }
}

/// Standard base64 with padding (the charsmap's encoding in tokenizer.json).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            let c = match i <= chunk.len() {
                true => char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]),
                false => '=',
            };
            out.push(c);
        }
    }
    out
}

/// The tokenizer class onnxruntime-extensions needs for a tokenizer.json's model type.
fn class_for(path: &Path, tokenizer: &Value) -> Result<&'static str, GenaiError> {
    let model = &tokenizer["model"];
    match model["type"].as_str() {
        Some("Unigram") => Ok("T5Tokenizer"),
        Some("BPE") if model["byte_fallback"].as_bool() == Some(true) => Ok("LlamaTokenizer"),
        Some("BPE") => Ok("GPT2Tokenizer"),
        other => Err(invalid(
            path,
            format!(
                "model type {other:?}: ORT GenAI's tokenizer (onnxruntime-extensions) reads BPE and \
                 Unigram tokenizers"
            ),
        )),
    }
}

fn hugging_face(path: &Path, context: usize) -> Result<TokenizerFiles, GenaiError> {
    let bytes = read(path)?;
    let tokenizer: Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(path, format!("not JSON: {e}")))?;
    let class = class_for(path, &tokenizer)?;
    let beside = path.with_file_name("tokenizer_config.json");
    let config: Value = match beside.is_file() {
        true => serde_json::from_slice(&read(&beside)?)
            .map_err(|e| invalid(&beside, format!("not JSON: {e}")))?,
        false => json!({"tokenizer_class": class, "add_bos_token": false,
                        "add_eos_token": false, "model_max_length": context,
                        "clean_up_tokenization_spaces": false}),
    };
    let id = |field: &str| special_id(&tokenizer, &config[field]);
    Ok(TokenizerFiles {
        files: vec![
            ("tokenizer.json", bytes),
            ("tokenizer_config.json", to_bytes(&config)),
        ],
        bos: id("bos_token"),
        eos: id("eos_token").into_iter().collect(),
        pad: id("pad_token"),
        notes: Vec::new(),
    })
}

/// The id of a tokenizer_config.json token entry (a string or `{"content": ...}`) among the
/// tokenizer's added tokens.
fn special_id(tokenizer: &Value, entry: &Value) -> Option<u32> {
    let content = entry.as_str().or_else(|| entry["content"].as_str())?;
    let added = tokenizer["added_tokens"].as_array()?;
    let token = added
        .iter()
        .find(|t| t["content"].as_str() == Some(content))?;
    u32::try_from(token["id"].as_u64()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_are_distinct_and_printable_bytes_stand_for_themselves() {
        let chars: std::collections::BTreeSet<char> = (0..=255u8).map(byte_char).collect();
        assert_eq!(chars.len(), 256);
        assert_eq!(byte_char(b'A'), 'A');
        assert_eq!(byte_char(b' '), '\u{120}');
        assert_eq!(byte_char(0), '\u{100}');
        assert_eq!(byte_char(0xad), '\u{143}');
    }

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn a_tokenizer_json_needs_a_model_type_onnxruntime_extensions_reads() {
        let path = Path::new("t.json");
        let wordpiece = json!({"model": {"type": "WordPiece"}});
        assert!(matches!(
            class_for(path, &wordpiece),
            Err(GenaiError::Tokenizer { .. })
        ));
        let bpe = json!({"model": {"type": "BPE"}});
        assert_eq!(class_for(path, &bpe).ok(), Some("GPT2Tokenizer"));
    }
}
