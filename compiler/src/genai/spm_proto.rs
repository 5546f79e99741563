//! Hand-written prost messages for the part of SentencePiece's `sentencepiece_model.proto` that
//! the tokenizer conversion reads. Field numbers and proto2 defaults follow the official
//! proto (as its Python descriptor lists them); other fields are skipped on decode.

/// `ModelProto`: the pieces, how they were trained, how text is normalized.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<Piece>,
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
}

/// `ModelProto.SentencePiece`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Piece {
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// [`piece_type`]; default `NORMAL`.
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
}

/// `ModelProto.SentencePiece.Type` values.
pub mod piece_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const BYTE: i32 = 6;
}

/// `TrainerSpec` (the fields that say how ids and pieces are used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainerSpec {
    /// 1 UNIGRAM (default), 2 BPE, 3 WORD, 4 CHAR.
    #[prost(int32, optional, tag = "3")]
    pub model_type: Option<i32>,
    #[prost(bool, optional, tag = "22")]
    pub split_by_whitespace: Option<bool>,
    #[prost(bool, optional, tag = "24")]
    pub treat_whitespace_as_suffix: Option<bool>,
    #[prost(bool, optional, tag = "35")]
    pub byte_fallback: Option<bool>,
    #[prost(int32, optional, tag = "40")]
    pub unk_id: Option<i32>,
    #[prost(int32, optional, tag = "41")]
    pub bos_id: Option<i32>,
    #[prost(int32, optional, tag = "42")]
    pub eos_id: Option<i32>,
    #[prost(int32, optional, tag = "43")]
    pub pad_id: Option<i32>,
}

/// `NormalizerSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NormalizerSpec {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    #[prost(bool, optional, tag = "3")]
    pub add_dummy_prefix: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub remove_extra_whitespaces: Option<bool>,
}

impl TrainerSpec {
    /// Unigram (`model_type` 1, the default).
    pub fn is_unigram(&self) -> bool {
        self.model_type.unwrap_or(1) == 1
    }
}

impl NormalizerSpec {
    /// `add_dummy_prefix` (default true).
    pub fn dummy_prefix(&self) -> bool {
        self.add_dummy_prefix.unwrap_or(true)
    }

    /// `remove_extra_whitespaces` (default true).
    pub fn folds_whitespace(&self) -> bool {
        self.remove_extra_whitespaces.unwrap_or(true)
    }

    /// The precompiled normalization rules (empty for `identity`).
    pub fn charsmap(&self) -> &[u8] {
        self.precompiled_charsmap.as_deref().unwrap_or_default()
    }
}
