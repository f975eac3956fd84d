//! `Tokenizer::from_hf_dir`: a Hugging Face tokenizer directory (`tokenizer.json` through
//! the `tokenizers` crate, `tokenizer_config.json` for the special tokens), as
//! transformers' fast tokenizers read it. Special added tokens are control tokens
//! (matched only where special tokens are parsed, never in escaped user text); other
//! added tokens always match. BOS/EOS come from `bos_token`/`eos_token` (a string or a
//! `{"content": ...}` object), `add_bos_token`/`add_eos_token` from the config (when
//! absent: whether the post-processor's template starts with BOS / ends with EOS).
//! Token bytes follow the vocabulary's kind: byte-level (GPT-2 chars) or byte-fallback
//! SentencePiece-style (`▁` is a space, `<0xXX>` a byte).

use std::path::Path;

use serde_json::Value;

use super::from_gguf::byte_token;
use super::special::{Special, Specials};
use super::{eog_ids, gguf_vocab, spm, Model, Tokenizer};
use crate::error::{Error, Result};

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::model(path, format!("not valid JSON: {e}")))
}

/// A special-token entry of tokenizer_config.json: a string or `{"content": ...}`.
fn token_content(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("content")?.as_str(),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

/// Whether the post-processor's single-sequence template puts `token` first (`first`)
/// or last.
fn template_has(tj: &Value, token: &str, first: bool) -> bool {
    let Some(pp) = tj.get("post_processor") else {
        return false;
    };
    let procs: Vec<&Value> = match pp.get("processors").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![pp],
    };
    procs.iter().any(|p| {
        let Some(single) = p.get("single").and_then(Value::as_array) else {
            return false;
        };
        let end = if first { single.first() } else { single.last() };
        end.and_then(|e| e.get("SpecialToken"))
            .and_then(|s| s.get("id"))
            .and_then(Value::as_str)
            == Some(token)
    })
}

impl Tokenizer {
    /// Builds the tokenizer from `dir/tokenizer.json` and `dir/tokenizer_config.json`
    /// (the config is optional).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let tj_path = dir.join("tokenizer.json");
        let tj = read_json(&tj_path)?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.is_file() {
            read_json(&cfg_path)?
        } else {
            Value::Null
        };
        let special = tokenizers::Tokenizer::from_file(&tj_path)
            .map_err(|e| Error::model(&tj_path, format!("tokenizers cannot load it: {e}")))?;
        let mut plain = special.clone();
        plain.set_encode_special_tokens(true);

        let n = special.get_vocab_size(true);
        let added = special.get_added_tokens_decoder();
        let tokens: Vec<String> = (0..n as u32)
            .map(|i| special.id_to_token(i).unwrap_or_default())
            .collect();
        let byte_level = ["pre_tokenizer", "decoder"].iter().any(|k| {
            tj.get(k)
                .is_some_and(|v| v.to_string().contains("\"ByteLevel\""))
        });
        let dec = gguf_vocab::byte_decoder();
        let token_bytes = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| match added.get(&(i as u32)) {
                Some(a) if a.special => Vec::new(),
                Some(a) => a.content.as_bytes().to_vec(),
                None if byte_level => t
                    .chars()
                    .flat_map(|c| match dec.get(&c) {
                        Some(&b) => vec![b],
                        None => c.to_string().into_bytes(),
                    })
                    .collect(),
                None => match byte_token(t) {
                    Some(b) => vec![b],
                    None => t.replace(spm::SPACE_MARK, " ").into_bytes(),
                },
            })
            .collect();
        let mut control: Vec<Special> = added
            .iter()
            .filter(|(_, a)| a.special)
            .map(|(&id, a)| Special {
                text: a.content.clone(),
                id,
                control: true,
            })
            .collect();
        control.sort_by_key(|s| s.id);
        let specials = Specials::new(control);
        let lookup = |key: &str| -> Result<Option<(u32, String)>> {
            match token_content(cfg.get(key)) {
                None => Ok(None),
                Some(t) => special
                    .token_to_id(t)
                    .map(|i| Some((i, t.to_string())))
                    .ok_or_else(|| {
                        Error::model(&cfg_path, format!("{key} {t:?} is not in tokenizer.json"))
                    }),
            }
        };
        let bos = lookup("bos_token")?;
        let eos = lookup("eos_token")?;
        let add = |key: &str, tok: &Option<(u32, String)>, first: bool| {
            tok.is_some()
                && match cfg.get(key).and_then(Value::as_bool) {
                    Some(b) => b,
                    None => tok
                        .as_ref()
                        .is_some_and(|(_, t)| template_has(&tj, t, first)),
                }
        };
        let add_bos = add("add_bos_token", &bos, true);
        let add_eos = add("add_eos_token", &eos, false);
        let eog = eog_ids(&tokens, &[eos.as_ref().map(|e| e.0)]);
        Ok(Tokenizer {
            model: Model::Hf {
                special: Box::new(special),
                plain: Box::new(plain),
            },
            specials,
            token_bytes,
            tokens,
            bos_id: bos.map(|b| b.0),
            eos_id: eos.map(|e| e.0),
            add_bos,
            add_eos,
            eog_ids: eog,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bos_from_the_post_processor_template() {
        let tj = json!({"post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel"},
            {"type": "TemplateProcessing", "single": [
                {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}}]}]}});
        assert!(template_has(&tj, "<|begin_of_text|>", true));
        assert!(!template_has(&tj, "<|begin_of_text|>", false));
        assert!(!template_has(
            &json!({"post_processor": {"type": "ByteLevel"}}),
            "<s>",
            true
        ));
        assert_eq!(token_content(Some(&json!({"content": "<s>"}))), Some("<s>"));
        assert_eq!(token_content(Some(&json!(""))), None);
    }
}
