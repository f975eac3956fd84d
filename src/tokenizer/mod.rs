//! Tokenization: a `tokenizers` BPE built from the GGUF vocabulary (see `gguf_vocab`),
//! a byte table for decoding token ids back to UTF-8 (see `detok`), and the special token
//! ids the engine needs (BOS, the end-of-generation set).

pub mod detok;
pub mod gguf_vocab;

use crate::error::{Error, Result};
use crate::model::gguf::GgufFile;
use gguf_vocab::{TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_USER_DEFINED};

/// Strings llama.cpp also treats as end-of-generation when they are control tokens.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "<|end_of_text|>",
    "<|eom_id|>",
];

/// A model's tokenizer.
pub struct Tokenizer {
    hf_special: tokenizers::Tokenizer,
    hf_plain: tokenizers::Tokenizer,
    /// The UTF-8 bytes each token stands for; empty for control tokens.
    token_bytes: Vec<Vec<u8>>,
    tokens: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
    /// Tokens that end generation (EOS, EOT and the control tokens llama.cpp treats so).
    pub eog_ids: Vec<u32>,
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = gguf.req_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::model(
                &gguf.path,
                format!(
                    "tokenizer model {model:?} is not supported yet (byte-level BPE \"gpt2\" is)"
                ),
            ));
        }
        let pre = gguf
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("gpt2");
        let tokens = gguf.str_array("tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match gguf
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
        {
            Some(a) => a
                .iter()
                .map(|v| {
                    let bad =
                        || Error::model(&gguf.path, "tokenizer.ggml.token_type holds a non-number");
                    v.as_f64().map(|t| t as i64).ok_or_else(bad)
                })
                .collect::<Result<_>>()?,
            None => vec![TOKEN_NORMAL; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(Error::model(
                &gguf.path,
                "tokenizer.ggml.token_type length differs from tokens",
            ));
        }
        let merges = gguf.str_array("tokenizer.ggml.merges")?;
        let built = gguf_vocab::build(&tokens, &types, &merges, pre)
            .map_err(|e| Error::model(&gguf.path, e.to_string()))?;
        let dec = gguf_vocab::byte_decoder();
        let token_bytes = tokens
            .iter()
            .zip(&types)
            .map(|(t, &ty)| match ty {
                TOKEN_CONTROL => Vec::new(),
                TOKEN_USER_DEFINED => t.as_bytes().to_vec(),
                _ => t
                    .chars()
                    .flat_map(|c| match dec.get(&c) {
                        Some(&b) => vec![b],
                        None => c.to_string().into_bytes(),
                    })
                    .collect(),
            })
            .collect();
        let id = |k: &str| {
            gguf.get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as u32)
                .filter(|&v| (v as usize) < tokens.len())
        };
        let bos_id = id("tokenizer.ggml.bos_token_id");
        let eos_id = id("tokenizer.ggml.eos_token_id");
        let mut eog_ids: Vec<u32> = [
            eos_id,
            id("tokenizer.ggml.eot_token_id"),
            id("tokenizer.ggml.eom_token_id"),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
            if ty == TOKEN_CONTROL && EOG_TEXTS.contains(t) && !eog_ids.contains(&(i as u32)) {
                eog_ids.push(i as u32);
            }
        }
        Ok(Tokenizer {
            hf_special: built.with_special,
            hf_plain: built.plain,
            token_bytes,
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            bos_id,
            eos_id,
            add_bos: gguf
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            eog_ids,
        })
    }

    /// Token ids of `text`. With `parse_special`, control tokens written in the text
    /// (as a chat template writes them) become their ids; without it they stay text.
    /// No BOS is added here.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tk = if parse_special {
            &self.hf_special
        } else {
            &self.hf_plain
        };
        let enc = tk
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The UTF-8 bytes of one token (empty for control tokens and unknown ids).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// A token's vocabulary string (for BOS/EOS in templates).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Decodes a whole id sequence (lossy at invalid UTF-8).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| self.token_bytes(i).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
}
