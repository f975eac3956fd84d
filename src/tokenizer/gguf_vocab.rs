//! GGUF byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`) as a `tokenizers`
//! BPE model with the pre-tokenizer llama.cpp uses for the `tokenizer.ggml.pre` name
//! (llama-vocab.cpp at commit 0c1e57098: the name -> `LLAMA_VOCAB_PRE_TYPE_*` mapping in
//! `llama_vocab::impl::load` and the regex lists in `llm_tokenizer_bpe`), so that token
//! ids match llama.cpp's. Special tokens are not part of the model: the caller partitions
//! text at them first (`special.rs`), as llama.cpp does.
//!
//! Public operations: [`pre_tokenizer`], [`build`], [`byte_decoder`].
//!
//! Pre-tokenizers llama.cpp implements with custom code rather than a regex
//! (`kimi-k2`, `afmoe`, `superbpe`) or without GPT-2 byte encoding (`gemma4`,
//! `sarvam-moe`, `whitespace`) are refused, naming them.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use crate::error::{Error, Result};

/// GGUF token types (`tokenizer.ggml.token_type`, llama.cpp's `llama_token_type`).
pub(crate) const TOKEN_NORMAL: i64 = 1;
pub(crate) const TOKEN_UNKNOWN: i64 = 2;
pub(crate) const TOKEN_CONTROL: i64 = 3;
pub(crate) const TOKEN_USER_DEFINED: i64 = 4;
pub(crate) const TOKEN_BYTE: i64 = 6;

/// What llama.cpp does for one `tokenizer.ggml.pre` name.
pub struct PreTokenizer {
    /// The regexes applied in order, each splitting the pieces of the one before.
    pub regexes: &'static [&'static str],
    /// A word that is itself a token is not merged (llama.cpp's `ignore_merges`).
    pub ignore_merges: bool,
    /// The default of `add_bos_token` when the file does not set it.
    pub add_bos: bool,
    /// llama.cpp drops the BOS id for this vocabulary (ChatGLM).
    pub no_bos: bool,
}

/// llama.cpp's pre-tokenizer for `name` (`""` means missing: llama.cpp's default).
pub fn pre_tokenizer(name: &str) -> Option<PreTokenizer> {
    let p = |regexes, ignore_merges, add_bos| PreTokenizer {
        regexes,
        ignore_merges,
        add_bos,
        no_bos: false,
    };
    Some(match name {
        "" | "default" => p(RE_DEFAULT, false, false),
        "minicpm5" => p(RE_MINICPM5, true, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => p(RE_LLAMA3, true, true),
        "deepseek-llm" => p(RE_DEEPSEEK_LLM, false, false),
        "deepseek-coder" => p(RE_DEEPSEEK_CODER, false, false),
        "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => {
            p(RE_DEEPSEEK3_LLM, false, false)
        }
        "spark2_5" => p(RE_SPARK2_5, false, false),
        "youtu" => p(RE_YOUTU, true, false),
        "falcon" => p(RE_FALCON, false, false),
        "mpt" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
        | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code"
        | "roberta-bpe" | "olmo" | "jais" | "exaone4" | "trillion" | "granite-docling" => {
            p(RE_GPT2, false, false)
        }
        "gpt2" => p(RE_GPT2, false, false),
        "jais-2" => p(RE_JAIS2, false, false),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => p(RE_STARCODER, false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez" | "hunyuan"
        | "solar-open" => p(RE_STABLELM2, false, false),
        "qwen35" => p(RE_QWEN35, false, false),
        "dbrx" | "smaug-bpe" => p(RE_DBRX, false, false),
        "poro-chat" | "bloom" | "gpt3-finnish" => p(RE_PORO, false, false),
        "chatglm-bpe" | "glm4" | "glm5" => PreTokenizer {
            regexes: RE_CHATGLM4,
            ignore_merges: name != "chatglm-bpe",
            add_bos: false,
            no_bos: true,
        },
        "viking" => p(RE_VIKING, false, false),
        "tekken" => p(RE_TEKKEN, true, true),
        "exaone-moe" => p(RE_EXAONE_MOE, false, false),
        "chameleon" => p(RE_CHAMELEON, false, true),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => p(RE_GPT4O, false, false),
        "granite-embed-multi-97m" => p(RE_GRANITE_EMB_MULTI, true, false),
        "tiny_aya" | "cohere2moe" => p(RE_TINY_AYA, false, false),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => p(RE_BAILINGMOE, false, false),
        "seed-coder" => p(RE_SEED_CODER, false, false),
        "ufakzeka" => p(RE_UFAKZEKA, false, false),
        "grok-2" => p(RE_GROK_2, false, false),
        "laguna" => p(RE_LAGUNA, false, false),
        _ => return None,
    })
}

/// Builds the BPE model with its pre-tokenizer; no added tokens.
pub fn build(tokens: &[&str], merges: &[&str], pre: &str) -> Result<HfTokenizer> {
    let spec = pre_tokenizer(pre).ok_or_else(|| {
        Error::Tokenizer(format!(
            "pre-tokenizer {pre:?} (tokenizer.ggml.pre) is not supported: it is unknown to \
             llama.cpp 0c1e57098 or needs its custom, non-regex code"
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
                .ok_or_else(|| {
                    Error::Tokenizer(format!("malformed merge {m:?} (tokenizer.ggml.merges)"))
                })
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("BPE from tokenizer.ggml.tokens/merges: {e}")))?;
    let mut tk = HfTokenizer::new(bpe);
    let mut pres: Vec<PreTokenizerWrapper> = Vec::new();
    for re in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::Tokenizer(format!("pre-tokenizer {pre:?} regex {re:?}: {e}")))?;
        pres.push(split.into());
    }
    pres.push(ByteLevel::new(false, false, false).into());
    tk.with_pre_tokenizer(Some(Sequence::new(pres)));
    tk.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tk)
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

// The regex lists of `llm_tokenizer_bpe` (llama-vocab.cpp, 0c1e57098), copied verbatim,
// named after the first `LLAMA_VOCAB_PRE_TYPE_*` of each case group.
// LLAMA3
const RE_LLAMA3: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// JAIS2
const RE_JAIS2: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
];
// DBRX, SMAUG
const RE_DBRX: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// DEEPSEEK_LLM
const RE_DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
];
// DEEPSEEK3_LLM, HUNYUAN_DENSE, JOYAI_LLM, HY_V4
const RE_DEEPSEEK3_LLM: &[&str] = &[
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];
// SPARK2_5
const RE_SPARK2_5: &[&str] = &[
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
    "\\p{N}",
];
// YOUTU
const RE_YOUTU: &[&str] = &[
    "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// DEEPSEEK_CODER
const RE_DEEPSEEK_CODER: &[&str] = &[
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}",
];
// FALCON
const RE_FALCON: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]",
];
// STARCODER, REFACT, COMMAND_R, SMOLLM, CODESHELL, EXAONE, MINERVA, MELLUM2
const RE_STARCODER: &[&str] = &[
    "\\p{N}",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
];
// GPT2, MPT, OLMO, JAIS, TRILLION, GRANITE_DOCLING
const RE_GPT2: &[&str] =
    &["'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"];
// STABLELM2, QWEN2, HUNYUAN, SOLAR_OPEN
const RE_STABLELM2: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// QWEN35
const RE_QWEN35: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// PORO, BLOOM, GPT3_FINNISH
const RE_PORO: &[&str] = &[" ?[^(\\s|.,!?…。，、।۔،)]+"];
// CHATGLM4
const RE_CHATGLM4: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// VIKING
const RE_VIKING: &[&str] = &[" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"];
// TEKKEN
const RE_TEKKEN: &[&str] = &[
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// CHAMELEON
const RE_CHAMELEON: &[&str] = &[
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
];
// GPT4O, MINIMAX_M2
const RE_GPT4O: &[&str] = &[
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// GRANITE_EMB_MULTI
const RE_GRANITE_EMB_MULTI: &[&str] = &[
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// TINY_AYA
const RE_TINY_AYA: &[&str] = &[
    "\\d{1,3}(?=(?:\\d{3})*\\b)",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// BAILINGMOE
const RE_BAILINGMOE: &[&str] = &[
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
];
// SEED_CODER
const RE_SEED_CODER: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// UFAKZEKA
const RE_UFAKZEKA: &[&str] = &[
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// GROK_2
const RE_GROK_2: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// LAGUNA
const RE_LAGUNA: &[&str] = &[
    "[^\\n]+|[\\n]+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// EXAONE_MOE
const RE_EXAONE_MOE: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
];
// MINICPM5
const RE_MINICPM5: &[&str] = &[
    "\\p{N}{1,3}",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
// DEFAULT
const RE_DEFAULT: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_regex_compiles() {
        for name in [
            "default",
            "llama-bpe",
            "qwen2",
            "smollm",
            "gpt2",
            "deepseek-llm",
            "deepseek-v3",
            "spark2_5",
            "youtu",
            "deepseek-coder",
            "falcon",
            "jais-2",
            "qwen35",
            "poro-chat",
            "glm4",
            "viking",
            "tekken",
            "chameleon",
            "gpt-4o",
            "granite-embed-multi-97m",
            "tiny_aya",
            "bailingmoe",
            "seed-coder",
            "ufakzeka",
            "grok-2",
            "laguna",
            "exaone-moe",
            "minicpm5",
            "dbrx",
        ] {
            let spec = pre_tokenizer(name).unwrap();
            for re in spec.regexes {
                assert!(
                    Split::new(
                        SplitPattern::Regex(re.to_string()),
                        SplitDelimiterBehavior::Isolated,
                        false
                    )
                    .is_ok(),
                    "{name}: {re}"
                );
            }
        }
        assert!(pre_tokenizer("kimi-k2").is_none());
        let err = build(&["a"], &[], "no-such-pre")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("\"no-such-pre\"")));
        assert!(pre_tokenizer("no-such-pre").is_none());
    }
}
