//! Models: hyperparameters and weights read from model files, and the forward pass of
//! the decoder architectures (llama, qwen2, qwen3). Models see the backend and their
//! config, never the engine. Files: `gguf`/`ggml` (GGUF reader), `safetensors` + `hf`
//! (Hugging Face directories), `arch` (hyperparameters per architecture), `weights`
//! (tensor loading by llama.cpp names from either source), `decoder` (the forward pass).
//! Public operations: [`load`] (a `.gguf` file or a checkpoint directory ->
//! [`LoadedModel`]), [`StepBatch`], [`ModelConfig`].

pub mod arch;
pub mod decoder;
pub mod dense;
pub mod ggml;
pub mod gguf;
pub mod hf;
pub mod safetensors;
pub mod weights;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use arch::{Arch, ModelConfig};
pub use decoder::Decoder;
pub use hf::GenerationConfig;

use crate::error::{Error, Result};
use gguf::GgufFile;
use hf::HfWeights;
use weights::Source;

/// Where a loaded model came from: what the engine needs besides the weights (the
/// tokenizer and chat template live in the GGUF metadata, or in the directory).
pub enum ModelSource {
    Gguf(GgufFile),
    Hf {
        dir: PathBuf,
        /// `generation_config.json` (default when absent).
        generation: GenerationConfig,
    },
}

/// A model ready to run, with its source and load statistics.
pub struct LoadedModel {
    pub model: Decoder,
    pub source: ModelSource,
    /// Wall time of parsing, mapping and checking (weights are paged in lazily).
    pub load_time: Duration,
    /// Bytes of weight matrices used in place from memory maps.
    pub mapped_bytes: usize,
}

/// Loads a model: a `.gguf` file, or a Hugging Face directory (`config.json` +
/// safetensors). An architecture other than llama, qwen2, qwen3 is refused by name.
pub fn load(path: &Path) -> Result<LoadedModel> {
    let t0 = Instant::now();
    let (model, source) = if path.is_dir() {
        let config_path = path.join("config.json");
        let json = hf::read_json(&config_path)?
            .ok_or_else(|| Error::model(path, "a model directory needs a config.json"))?;
        let config = ModelConfig::from_hf_config(&config_path, &json)?;
        let weights = HfWeights::open(path)?;
        let model = Decoder::load(config, Source::Hf(&weights))?;
        let generation = GenerationConfig::read(path)?;
        let dir = path.to_owned();
        (model, ModelSource::Hf { dir, generation })
    } else {
        let gguf = GgufFile::open(path)?;
        (Decoder::from_gguf(&gguf)?, ModelSource::Gguf(gguf))
    };
    Ok(LoadedModel {
        mapped_bytes: model.mapped_bytes(),
        model,
        source,
        load_time: t0.elapsed(),
    })
}

/// One sequence's part of a step: `num_tokens` flat tokens from `token_start`, K/V
/// reached through its block table, `StepBatch::block_tables[blocks]`.
#[derive(Clone, Debug, Default)]
pub struct SeqMeta {
    pub token_start: usize,
    pub num_tokens: usize,
    pub blocks: std::ops::Range<usize>,
    /// Whether the logits of the last token are needed (the last chunk of a prefill, or a
    /// decode).
    pub want_logits: bool,
}

/// The flat input of one forward pass (vLLM's model runner inputs): every token of every
/// scheduled sequence, its position and its KV slot, plus per-sequence metadata.
#[derive(Clone, Debug, Default)]
pub struct StepBatch {
    pub token_ids: Vec<u32>,
    pub positions: Vec<usize>,
    /// Where each token's K/V is written: `block * block_size + offset`.
    pub slot_mapping: Vec<usize>,
    /// The sequence (index into `seqs`) of each token.
    pub token_seq: Vec<usize>,
    pub seqs: Vec<SeqMeta>,
    /// Every sequence's block table, back to back.
    pub block_tables: Vec<u32>,
    pub block_size: usize,
}

impl StepBatch {
    /// One sequence whose KV lives in blocks `0..num_blocks` (identity block table, slot =
    /// position): `tokens` at positions `start_pos..`, logits wanted for the last one.
    /// For tests and tools that run a model without the scheduler.
    pub fn one_sequence(
        tokens: &[u32],
        start_pos: usize,
        num_blocks: usize,
        block_size: usize,
    ) -> StepBatch {
        let n = tokens.len();
        let positions: Vec<usize> = (start_pos..start_pos + n).collect();
        StepBatch {
            token_ids: tokens.to_vec(),
            slot_mapping: positions.clone(),
            positions,
            token_seq: vec![0; n],
            seqs: vec![SeqMeta {
                token_start: 0,
                num_tokens: n,
                blocks: 0..num_blocks,
                want_logits: true,
            }],
            block_tables: (0..num_blocks as u32).collect(),
            block_size,
        }
    }

    /// The block table of sequence `seq`.
    pub fn block_table(&self, seq: usize) -> &[u32] {
        &self.block_tables[self.seqs[seq].blocks.clone()]
    }
}
