//! Builds a `tokenizers` byte-level BPE tokenizer from a GGUF vocabulary (tokens, merges,
//! token types), with the pre-tokenizer regexes llama.cpp uses for the `tokenizer.ggml.pre`
//! name, so that token ids match llama.cpp's. Control tokens are matched only where
//! special tokens are parsed; user-defined tokens always (as llama.cpp does).

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use crate::error::{Error, Result};

/// GGUF token types (`tokenizer.ggml.token_type`).
pub(crate) const TOKEN_NORMAL: i64 = 1;
pub(crate) const TOKEN_CONTROL: i64 = 3;
pub(crate) const TOKEN_USER_DEFINED: i64 = 4;

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// The pre-tokenizer regexes llama.cpp applies, in order, for a `tokenizer.ggml.pre` name.
pub fn pre_tokenizer_regexes(pre: &str) -> Option<Vec<&'static str>> {
    Some(match pre {
        "gpt2" | "mpt" | "olmo" | "jais" => vec![GPT2_RE],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![r"\p{N}", GPT2_RE]
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => vec![
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "qwen2" | "deepseek-r1-qwen" => vec![
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        _ => return None,
    })
}

/// The two tokenizers built from one vocabulary.
pub struct BuiltTokenizers {
    /// Parses control tokens (for template-rendered prompts).
    pub with_special: HfTokenizer,
    /// Leaves control tokens as plain text (for text that must not inject them).
    pub plain: HfTokenizer,
}

/// Builds the tokenizers from vocabulary arrays.
pub fn build(
    tokens: &[&str],
    types: &[i64],
    merges: &[&str],
    pre: &str,
) -> Result<BuiltTokenizers> {
    let regexes = pre_tokenizer_regexes(pre).ok_or_else(|| {
        Error::Tokenizer(format!(
            "pre-tokenizer {pre:?} is not supported yet (tokenizer.ggml.pre)"
        ))
    })?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| Error::Tokenizer(format!("malformed merge {m:?}")))
        })
        .collect::<Result<_>>()?;
    let make = |with_control: bool| -> Result<HfTokenizer> {
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.clone(), merges.clone())
            .build()
            .map_err(|e| Error::Tokenizer(format!("BPE: {e}")))?;
        let mut tk = HfTokenizer::new(bpe);
        let mut pres: Vec<PreTokenizerWrapper> = Vec::new();
        for re in &regexes {
            let split = Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::Tokenizer(format!("regex {re:?}: {e}")))?;
            pres.push(split.into());
        }
        pres.push(ByteLevel::new(false, false, false).into());
        tk.with_pre_tokenizer(Some(Sequence::new(pres)));
        tk.with_decoder(Some(ByteLevelDecoder::default()));
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(types)
            .filter(|(_, &ty)| ty == TOKEN_USER_DEFINED || (with_control && ty == TOKEN_CONTROL))
            .map(|(t, _)| AddedToken::from(t.to_string(), true).normalized(false))
            .collect();
        tk.add_special_tokens(&added);
        Ok(tk)
    };
    Ok(BuiltTokenizers {
        with_special: make(true)?,
        plain: make(false)?,
    })
}

/// GPT-2's byte <-> printable-char mapping, inverted: char -> byte.
pub fn byte_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .filter_map(|(b, c)| char::from_u32(c).map(|ch| (ch, b as u8)))
        .collect()
}
