//! Models: hyperparameters and weights read from model files, and the forward pass of
//! each architecture. Models see the backend and their config, never the engine.

pub mod ggml;
pub mod gguf;
pub mod llama;

/// Hyperparameters of a decoder-only transformer.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub arch: String,
    pub name: String,
    pub n_layers: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    pub rope_freq_scale: f32,
    pub n_rot: usize,
}

impl ModelConfig {
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// One sequence's slice of a forward pass: `tokens` at positions `start_pos..`, KV in `slot`.
pub struct BatchEntry<'a> {
    pub slot: usize,
    pub tokens: &'a [u32],
    pub start_pos: usize,
    /// Whether the logits of the last token are needed (the last chunk of a prefill, or a decode).
    pub want_logits: bool,
}
