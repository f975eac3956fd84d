//! `Tokenizer::from_gguf`: a GGUF file's `tokenizer.ggml.*` metadata read as llama.cpp
//! reads it (`llama_vocab::impl::load`, commit 0c1e57098): the model kind (`gpt2`
//! byte-level BPE or `llama` SentencePiece), tokens, scores, token types, merges, the
//! special ids with llama.cpp's defaults, `add_bos_token`/`add_eos_token`/
//! `add_space_prefix`, the EOG set (whose texts llama.cpp forces to control tokens), and
//! the special tokens that split text (control, user-defined and unknown tokens).

use super::gguf_vocab::{
    self, TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_USER_DEFINED,
};
use super::special::{Special, Specials};
use super::{eog_ids, spm, Model, Tokenizer, EOG_TEXTS};
use crate::error::{Error, Result};
use crate::model::gguf::GgufFile;

/// llama.cpp's fill-in-the-middle tokens: the key naming each, the texts it looks for
/// when the key is absent, and whether the token ends generation.
const FIM: &[(&str, &[&str], bool)] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_pad_token_id",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
        true,
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
        true,
    ),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"], true),
];

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let bad = |m: String| Error::model(&gguf.path, m);
        let kind = gguf.req_str("tokenizer.ggml.model")?;
        if kind != "gpt2" && kind != "llama" {
            return Err(bad(format!(
                "tokenizer.ggml.model {kind:?} is not supported (\"gpt2\" byte-level BPE and \
                 \"llama\" SentencePiece are)"
            )));
        }
        let tokens = gguf.str_array("tokenizer.ggml.tokens")?;
        let numbers = |key: &str| -> Result<Option<Vec<f64>>> {
            let Some(v) = gguf.get(key) else {
                return Ok(None);
            };
            let arr = v
                .as_array()
                .ok_or_else(|| bad(format!("{key} is not an array")))?;
            if arr.len() < tokens.len() {
                return Err(bad(format!(
                    "{key} has {} entries for {} tokens",
                    arr.len(),
                    tokens.len()
                )));
            }
            arr.iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| bad(format!("{key} holds a non-number")))
                })
                .collect::<Result<Vec<f64>>>()
                .map(Some)
        };
        let mut types: Vec<i64> = match numbers("tokenizer.ggml.token_type")? {
            Some(t) => t.into_iter().map(|t| t as i64).collect(),
            None => vec![TOKEN_NORMAL; tokens.len()],
        };
        let id = |k: &str| gguf.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        let flag = |k: &str| gguf.get(k).and_then(|v| v.as_bool());
        let spm_kind = kind == "llama";
        // llama.cpp's defaults when the file names no id.
        let (def_bos, def_eos) = if spm_kind { (1, 2) } else { (11, 11) };
        let pre = gguf
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let (model, def_add_bos, no_bos) = if spm_kind {
            let scores: Vec<f32> = numbers("tokenizer.ggml.scores")?
                .map(|s| s.into_iter().map(|x| x as f32).collect())
                .unwrap_or_else(|| vec![0.0; tokens.len()]);
            let model = Model::Spm {
                spm: Box::new(spm::Spm::new(&tokens, scores)),
                add_space_prefix: flag("tokenizer.ggml.add_space_prefix").unwrap_or(true),
            };
            (model, true, false)
        } else {
            let spec = gguf_vocab::pre_tokenizer(pre).ok_or_else(|| {
                bad(format!(
                    "tokenizer.ggml.pre {pre:?} is not supported: unknown to llama.cpp \
                     0c1e57098, or it needs llama.cpp's custom non-regex code"
                ))
            })?;
            let merges = gguf.str_array("tokenizer.ggml.merges")?;
            let tk = gguf_vocab::build(&tokens, &merges, pre)
                .map_err(|e| bad(format!("tokenizer: {e}")))?;
            (Model::Bpe(Box::new(tk)), spec.add_bos, spec.no_bos)
        };
        let in_vocab = |i: u32| ((i as usize) < tokens.len()).then_some(i);
        let bos_id = if no_bos {
            None
        } else {
            in_vocab(id("tokenizer.ggml.bos_token_id").unwrap_or(def_bos))
        };
        let eos_id = in_vocab(id("tokenizer.ggml.eos_token_id").unwrap_or(def_eos));
        let owned: Vec<String> = tokens.iter().map(|s| s.to_string()).collect();
        // FIM tokens: from their keys, else the first token with one of llama.cpp's
        // texts; all become control tokens, the pad/repo/sep ones also end generation.
        let fim: Vec<(Option<u32>, bool)> = FIM
            .iter()
            .map(|(key, texts, ends)| {
                let found = id(key).or_else(|| {
                    owned
                        .iter()
                        .position(|t| texts.contains(&t.as_str()))
                        .map(|i| i as u32)
                });
                (found.and_then(in_vocab), *ends)
            })
            .collect();
        let mut always: Vec<Option<u32>> = fim.iter().filter(|f| f.1).map(|f| f.0).collect();
        always.extend([
            eos_id,
            id("tokenizer.ggml.eot_token_id"),
            id("tokenizer.ggml.eom_token_id"),
        ]);
        let eog = eog_ids(&owned, &always);
        for i in fim.iter().filter_map(|f| f.0) {
            types[i as usize] = TOKEN_CONTROL;
        }
        // llama.cpp's attribute fix-ups: EOG texts become control tokens (except the two
        // it demotes), gpt-oss's channel markers user-defined.
        for (i, t) in owned.iter().enumerate() {
            if EOG_TEXTS.contains(&t.as_str()) {
                types[i] = if eog.contains(&(i as u32)) {
                    TOKEN_CONTROL
                } else if t == "<|end|>" {
                    TOKEN_USER_DEFINED
                } else {
                    TOKEN_NORMAL
                };
            }
            if matches!(
                t.as_str(),
                "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>"
            ) {
                types[i] = TOKEN_USER_DEFINED;
            }
        }
        let specials = Specials::new(
            owned
                .iter()
                .zip(&types)
                .enumerate()
                .filter(|(_, (_, &ty))| {
                    matches!(ty, TOKEN_CONTROL | TOKEN_USER_DEFINED | TOKEN_UNKNOWN)
                })
                .map(|(i, (t, &ty))| Special {
                    text: t.clone(),
                    id: i as u32,
                    control: ty != TOKEN_USER_DEFINED,
                })
                .collect(),
        );
        let token_bytes = if spm_kind {
            spm_token_bytes(&owned, &types)
        } else {
            bpe_token_bytes(&owned, &types)
        };
        Ok(Tokenizer {
            model,
            specials,
            token_bytes,
            tokens: owned,
            bos_id,
            eos_id,
            add_bos: flag("tokenizer.ggml.add_bos_token").unwrap_or(def_add_bos)
                && bos_id.is_some(),
            add_eos: flag("tokenizer.ggml.add_eos_token").unwrap_or(false) && eos_id.is_some(),
            eog_ids: eog,
        })
    }
}

/// Byte-level BPE pieces: GPT-2's printable chars back to bytes; user-defined tokens are
/// their own UTF-8 text; control tokens print nothing.
pub(super) fn bpe_token_bytes(tokens: &[String], types: &[i64]) -> Vec<Vec<u8>> {
    let dec = gguf_vocab::byte_decoder();
    tokens
        .iter()
        .zip(types)
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
        .collect()
}

/// SentencePiece pieces as llama.cpp's `token_to_piece` gives them: `▁` is a space,
/// `<0xXX>` the byte, unknown tokens `▅`, control tokens nothing.
pub(super) fn spm_token_bytes(tokens: &[String], types: &[i64]) -> Vec<Vec<u8>> {
    tokens
        .iter()
        .zip(types)
        .map(|(t, &ty)| match ty {
            TOKEN_CONTROL => Vec::new(),
            TOKEN_UNKNOWN => "\u{2585}".as_bytes().to_vec(),
            TOKEN_USER_DEFINED => t.as_bytes().to_vec(),
            TOKEN_BYTE => byte_token(t).map(|b| vec![b]).unwrap_or_default(),
            _ => t.replace(spm::SPACE_MARK, " ").into_bytes(),
        })
        .collect()
}

/// The byte of a `<0xXX>` token.
pub(super) fn byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}
