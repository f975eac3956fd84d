//! Tokenization, three ways behind one [`Tokenizer`]:
//! - GGUF byte-level BPE (`tokenizer.ggml.model = gpt2`): a `tokenizers` BPE with
//!   llama.cpp's pre-tokenizer regexes (`gguf_vocab`), text split at special tokens as
//!   llama.cpp splits it (`special`);
//! - GGUF SentencePiece (`llama`): llama.cpp's SPM algorithm in Rust (`spm`);
//! - a Hugging Face `tokenizer.json` through the `tokenizers` crate (`hf`).
//!
//! It also holds the byte table for decoding ids back to UTF-8 (`detok` streams it) and
//! the special ids the engine needs (BOS, EOS, the end-of-generation set), and keeps user
//! text from injecting control tokens: [`Tokenizer::escape_specials`] on every
//! user-supplied string before the chat template, [`Tokenizer::encode_prompt`] on the
//! rendered prompt.
//!
//! Public operations: `from_gguf`, `from_hf_dir`, `encode`, `encode_prompt`,
//! `escape_specials`, `token_bytes`, `token_text`, `decode`, `vocab_size`.

pub mod detok;
mod from_gguf;
pub mod gguf_vocab;
mod hf;
pub mod special;
pub mod spm;

use std::borrow::Cow;

use crate::error::{Error, Result};
use special::{Frag, Specials};

/// Token texts llama.cpp (0c1e57098, `llama_vocab::impl::load`) treats as
/// end-of-generation; it also makes them control tokens.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// How text between special tokens becomes ids.
enum Model {
    /// GGUF byte-level BPE: the `tokenizers` model holds no added tokens.
    Bpe(Box<tokenizers::Tokenizer>),
    /// GGUF SentencePiece; `add_space_prefix` as `tokenizer.ggml.add_space_prefix`.
    Spm {
        spm: Box<spm::Spm>,
        add_space_prefix: bool,
    },
    /// tokenizer.json: `special` matches special added tokens, `plain` leaves them text.
    Hf {
        special: Box<tokenizers::Tokenizer>,
        plain: Box<tokenizers::Tokenizer>,
    },
}

/// A model's tokenizer.
pub struct Tokenizer {
    model: Model,
    /// Special tokens for partitioning text (all of them for GGUF; for tokenizer.json the
    /// control ones, which `encode_prompt` splits at).
    specials: Specials,
    /// The UTF-8 bytes each token stands for; empty for control tokens.
    token_bytes: Vec<Vec<u8>>,
    tokens: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
    /// Whether llama.cpp would append EOS to a tokenized prompt (`add_eos_token`).
    pub add_eos: bool,
    /// Tokens that end generation (EOS, EOT and the control tokens llama.cpp treats so).
    pub eog_ids: Vec<u32>,
}

impl Tokenizer {
    /// Token ids of `text`. With `parse_special`, control tokens written in the text
    /// (as a chat template writes them) become their ids; without it they stay text.
    /// User-defined tokens always match (as in llama.cpp). No BOS is added here.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        match &self.model {
            Model::Hf { special, plain } => {
                let tk = if parse_special { special } else { plain };
                hf_encode(tk, text)
            }
            _ => self.encode_frags(&self.specials.partition(text, parse_special)),
        }
    }

    /// Ids of a rendered chat prompt whose user-supplied strings went through
    /// [`Tokenizer::escape_specials`]: split at the control tokens the template wrote
    /// (the user's look-alikes are broken by the escape), each piece between them
    /// tokenized as plain text with the escape marks removed. No BOS is added here.
    pub fn encode_prompt(&self, rendered: &str) -> Result<Vec<u32>> {
        match &self.model {
            Model::Hf { plain, .. } => {
                let mut ids = Vec::new();
                for f in self.specials.partition_control(rendered) {
                    match f {
                        Frag::Token(id) => ids.push(id),
                        Frag::Text(t) => ids.extend(hf_encode(plain, &special::unescape(t))?),
                    }
                }
                Ok(ids)
            }
            _ => {
                let pieces: Vec<(Frag, Option<String>)> = self
                    .specials
                    .partition(rendered, true)
                    .into_iter()
                    .map(|f| match f {
                        Frag::Text(t) => match special::unescape(t) {
                            Cow::Borrowed(_) => (f, None),
                            Cow::Owned(s) => (f, Some(s)),
                        },
                        tok => (tok, None),
                    })
                    .collect();
                let mut frags = Vec::with_capacity(pieces.len());
                for (f, owned) in &pieces {
                    match (f, owned) {
                        (_, Some(s)) => frags.extend(self.specials.partition(s, false)),
                        (f, None) => frags.push(f.clone()),
                    }
                }
                self.encode_frags(&frags)
            }
        }
    }

    /// `text` with every control-token look-alike broken by an invisible mark (and marks
    /// already there escaped), for any user-supplied string before template rendering;
    /// [`Tokenizer::encode_prompt`] then tokenizes it as the plain text it was.
    pub fn escape_specials<'a>(&self, text: &'a str) -> Cow<'a, str> {
        special::escape(text, self.specials.control_texts())
    }

    /// `text` with the marks of [`Tokenizer::escape_specials`] removed (for display).
    pub fn unescape_specials<'a>(&self, text: &'a str) -> Cow<'a, str> {
        special::unescape(text)
    }

    /// llama.cpp's `tokenize` over partitioned fragments (GGUF vocabularies).
    fn encode_frags(&self, frags: &[Frag]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        // SentencePiece: a text fragment after a special token (or at the start) gets a
        // space prefix, as llama.cpp's `is_prev_special` does.
        let mut prev_special = true;
        for f in frags {
            match *f {
                Frag::Token(id) => {
                    ids.push(id);
                    prev_special = true;
                }
                Frag::Text(t) => {
                    match &self.model {
                        Model::Bpe(tk) => ids.extend(hf_encode(tk, t)?),
                        Model::Spm {
                            spm,
                            add_space_prefix,
                        } => {
                            let mut text = String::with_capacity(t.len() + 3);
                            if *add_space_prefix && prev_special {
                                text.push(' ');
                            }
                            text.push_str(t);
                            spm.tokenize(&spm::escape_whitespace(&text), &mut ids)?;
                        }
                        Model::Hf { plain, .. } => ids.extend(hf_encode(plain, t)?),
                    }
                    prev_special = false;
                }
            }
        }
        Ok(ids)
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

    /// The id of the token whose vocabulary string is exactly `text` (e.g. `<think>`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokens.iter().position(|t| t == text).map(|i| i as u32)
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

fn hf_encode(tk: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let enc = tk
        .encode_fast(text, false)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(enc.get_ids().to_vec())
}

/// The end-of-generation ids: `always` (EOS, EOT, EOM), then every token whose text is
/// one of llama.cpp's EOG texts, minus llama.cpp's two exceptions (`<|end|>` when
/// `<|return|>`/`<|call|>` or `<|calls|>`/`<|flush|>` exist; `</s>` next to
/// `<|tool_response>` or `<|plamo:eos|>`).
fn eog_ids(tokens: &[String], always: &[Option<u32>]) -> Vec<u32> {
    let mut eog: Vec<u32> = Vec::new();
    let mut push = |i: u32| {
        if (i as usize) < tokens.len() && !eog.contains(&i) {
            eog.push(i);
        }
    };
    always.iter().flatten().for_each(|&i| push(i));
    for (i, t) in tokens.iter().enumerate() {
        if EOG_TEXTS.contains(&t.as_str()) {
            push(i as u32);
        }
    }
    let has = |s: &str| eog.iter().any(|&i| tokens[i as usize] == s);
    let drop_end = (has("<|return|>") && has("<|call|>") && has("<|end|>"))
        || (has("<|calls|>") && has("<|flush|>") && has("<|end|>"));
    let drop_s = has("</s>") && (has("<|tool_response>") || has("<|plamo:eos|>"));
    eog.retain(|&i| {
        let t = tokens[i as usize].as_str();
        !((drop_end && t == "<|end|>") || (drop_s && t == "</s>"))
    });
    eog
}
