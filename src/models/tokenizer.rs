//! The tokenizer, built from the GGUF's own metadata.
//!
//! Special tokens typed by the user as text are encoded as plain text: only
//! the prompt builder can put a special token into a prompt, by id.

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer: {0}")]
    Build(String),
    #[error("tokenizer: encoding failed: {0}")]
    Encode(String),
    #[error("tokenizer: the vocabulary has no token '{0}'")]
    MissingToken(String),
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The bytes each id stands for (byte-level BPE decoded); special tokens
    /// hold their literal text.
    token_bytes: Vec<Vec<u8>>,
    special: Vec<bool>,
    by_text: HashMap<String, u32>,
    pub eos_id: Option<u32>,
    pub bos_id: Option<u32>,
    pub chat_template: Option<String>,
}

impl Tokenizer {
    pub fn from_gguf(content: &Content) -> Result<Self, TokenizerError> {
        let mut inner = tokenizers::Tokenizer::from_gguf(content)
            .map_err(|e| TokenizerError::Build(e.to_string().lines().next().unwrap_or("").to_string()))?;
        // Text that merely looks like a special token is encoded as text.
        inner.set_encode_special_tokens(true);
        let tokens = match content.metadata.get("tokenizer.ggml.tokens") {
            Some(Value::Array(a)) => a.iter().map(|v| v.to_string().cloned().unwrap_or_default()).collect::<Vec<_>>(),
            _ => return Err(TokenizerError::Build("missing tokenizer.ggml.tokens".into())),
        };
        let types: Vec<i64> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(value_i64).collect(),
            _ => vec![1; tokens.len()],
        };
        let decoder = byte_decoder();
        let mut token_bytes = Vec::with_capacity(tokens.len());
        let mut special = Vec::with_capacity(tokens.len());
        let mut by_text = HashMap::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            // llama_token_type: 1 normal, 2 unknown, 3 control, 4 user-defined,
            // 5 unused, 6 byte. 2..=5 are special, as candle marks them.
            let is_special = matches!(types.get(i), Some(2..=5));
            let bytes = if is_special {
                t.as_bytes().to_vec()
            } else {
                let mut b = Vec::with_capacity(t.len());
                for c in t.chars() {
                    match decoder.get(&c) {
                        Some(&x) => b.push(x),
                        None => b.extend_from_slice(c.to_string().as_bytes()),
                    }
                }
                b
            };
            token_bytes.push(bytes);
            special.push(is_special);
            by_text.entry(t.clone()).or_insert(i as u32);
        }
        let get_id = |k: &str| match content.metadata.get(k) {
            Some(v) => u32::try_from(value_i64(v)).ok(),
            None => None,
        };
        let chat_template = match content.metadata.get("tokenizer.chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(Tokenizer {
            inner,
            token_bytes,
            special,
            by_text,
            eos_id: get_id("tokenizer.ggml.eos_token_id"),
            bos_id: get_id("tokenizer.ggml.bos_token_id"),
            chat_template,
        })
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Encodes text as text: special-token look-alikes are not special.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.inner.encode_fast(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of a vocabulary entry by its exact text (used for special tokens).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.by_text.get(text).copied()
    }

    pub fn require(&self, text: &str) -> Result<u32, TokenizerError> {
        self.token_id(text).ok_or_else(|| TokenizerError::MissingToken(text.to_string()))
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// The bytes a token stands for. Special tokens give their literal text.
    pub fn bytes_of(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Decodes ids to bytes; special tokens are skipped.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            if !self.is_special(id) {
                out.extend_from_slice(self.bytes_of(id));
            }
        }
        out
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }
}

fn value_i64(v: &Value) -> i64 {
    match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => *x as i64,
        Value::I64(x) => *x,
        _ => -1,
    }
}

/// GPT-2's byte-to-unicode table, inverted: byte-level BPE vocabularies spell
/// every byte as a printable character.
fn byte_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter().zip(cs).map(|(b, c)| (char::from_u32(c).unwrap_or('\u{0}'), b as u8)).collect()
}

/// GPT-2's byte-to-unicode table (for building vocabularies in tests).
pub(crate) fn byte_encoder() -> HashMap<u8, char> {
    byte_decoder().into_iter().map(|(c, b)| (b, c)).collect()
}
