//! Weight loading for the decoder from either source, by llama.cpp's tensor names
//! (`blk.{i}.attn_q.weight` ...; `src/llama-arch.cpp`): a GGUF file directly, or a
//! Hugging Face safetensors directory through the name map of `hf` (the inverse of
//! `convert_hf_to_gguf.py`'s). Matrices stay in their memory map (safetensors `[out, in]`
//! row-major is ggml's row layout); norms and biases are read into f32. Every tensor is
//! checked for shape and type; errors name the tensor as the file calls it, and the file.
//! Public operations: [`Source`], [`Decoder::load`] (the decoder's weights, per arch).

use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use super::arch::ModelConfig;
use super::decoder::{Decoder, Layer};
use super::ggml::GgmlType;
use super::gguf::GgufFile;
use super::hf::HfWeights;
use crate::backend::cpu::dot::Isa;
use crate::backend::cpu::matmul::{Linear, WeightBytes};
use crate::backend::cpu::ops::Rope;
use crate::backend::cpu::quant::dequantize_row;
use crate::error::{Error, Result};

/// Where the weights come from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Gguf(&'a GgufFile),
    Hf(&'a HfWeights),
}

/// One tensor found in a source.
struct View<'a> {
    /// The name the file uses.
    name: String,
    path: &'a Path,
    /// ggml order: `dims[0]` is the contiguous (row) length.
    dims: Vec<usize>,
    ty: GgmlType,
    map: Arc<Mmap>,
    start: usize,
    len: usize,
}

impl View<'_> {
    fn err(&self, msg: String) -> Error {
        Error::model(self.path, format!("tensor {}: {msg}", self.name))
    }

    fn check(&self, want: &[usize]) -> Result<()> {
        if self.dims != want {
            let msg = format!("shape {:?} (ggml order), expected {want:?}", self.dims);
            return Err(self.err(msg));
        }
        Ok(())
    }

    fn bytes(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }
}

impl<'a> Source<'a> {
    fn path(&self) -> &'a Path {
        match self {
            Source::Gguf(g) => &g.path,
            Source::Hf(h) => &h.dir,
        }
    }

    /// The tensor llama.cpp calls `name`, if the source has it.
    fn find(&self, name: &str) -> Result<Option<View<'a>>> {
        match *self {
            Source::Gguf(g) => Ok(g.tensors.get(name).map(|t| View {
                name: name.to_owned(),
                path: &g.path,
                dims: t.dims.iter().map(|&d| d as usize).collect(),
                ty: t.ty,
                map: g.mapping(),
                start: t.start,
                len: t.len,
            })),
            Source::Hf(h) => {
                let Some((file, hf_name, t)) = h.find(name) else {
                    return Ok(None);
                };
                let ty = t.dtype.ggml().ok_or_else(|| {
                    let msg = format!(
                        "tensor {hf_name}: dtype {:?} is not supported (F32, F16, BF16 are)",
                        t.dtype
                    );
                    Error::model(&file.path, msg)
                })?;
                Ok(Some(View {
                    name: hf_name,
                    path: &file.path,
                    dims: t.shape.iter().rev().copied().collect(),
                    ty,
                    map: file.mapping(),
                    start: t.start,
                    len: t.len,
                }))
            }
        }
    }

    fn missing(&self, name: &str) -> Error {
        match self {
            Source::Gguf(g) => Error::model(&g.path, format!("missing tensor {name}")),
            Source::Hf(h) => h.missing(name),
        }
    }

    fn require(&self, name: &str) -> Result<View<'a>> {
        self.find(name)?.ok_or_else(|| self.missing(name))
    }

    /// A `rows x cols` matrix, borrowed from the map.
    fn linear(&self, name: &str, rows: usize, cols: usize) -> Result<Linear> {
        let v = self.require(name)?;
        v.check(&[cols, rows])?;
        if !v.ty.is_supported() {
            return Err(v.err(format!(
                "type {:?} is not supported ({} are)",
                v.ty,
                GgmlType::SUPPORTED_NAMES
            )));
        }
        Ok(Linear {
            ty: v.ty,
            rows,
            cols,
            bytes: WeightBytes::Mapped {
                map: Arc::clone(&v.map),
                start: v.start,
                len: v.len,
            },
        })
    }

    /// A vector of `n` (norm weights, biases, RoPE factors) as f32, if present.
    fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        let Some(v) = self.find(name)? else {
            return Ok(None);
        };
        v.check(&[n])?;
        let mut out = vec![0f32; n];
        if !v.ty.is_supported() || !n.is_multiple_of(v.ty.block_size()) {
            return Err(v.err(format!("type {:?} is not supported for a vector", v.ty)));
        }
        dequantize_row(v.ty, v.bytes(), &mut out);
        Ok(Some(out))
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        self.opt_vector(name, n)?.ok_or_else(|| self.missing(name))
    }
}

impl Decoder {
    /// Maps the weights of `config`'s architecture from `src`: Qwen2 requires Q/K/V
    /// biases (other architectures take them if present), Qwen3 requires per-head Q/K
    /// norms; the output matrix is `output.weight` unless tied (then the embedding).
    pub fn load(config: ModelConfig, src: Source) -> Result<Decoder> {
        let c = &config;
        let (dim, q_dim, kv_dim, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            let bias = |s: &str, n: usize| -> Result<Option<Vec<f32>>> {
                if c.kind.qkv_bias() {
                    src.vector(&p(s), n).map(Some)
                } else {
                    src.opt_vector(&p(s), n)
                }
            };
            let norm = |s: &str| -> Result<Option<Vec<f32>>> {
                if c.kind.qk_norm() {
                    src.vector(&p(s), c.head_dim).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn_norm: src.vector(&p("attn_norm.weight"), dim)?,
                wq: src.linear(&p("attn_q.weight"), q_dim, dim)?,
                wk: src.linear(&p("attn_k.weight"), kv_dim, dim)?,
                wv: src.linear(&p("attn_v.weight"), kv_dim, dim)?,
                bq: bias("attn_q.bias", q_dim)?,
                bk: bias("attn_k.bias", kv_dim)?,
                bv: bias("attn_v.bias", kv_dim)?,
                q_norm: norm("attn_q_norm.weight")?,
                k_norm: norm("attn_k_norm.weight")?,
                wo: src.linear(&p("attn_output.weight"), dim, q_dim)?,
                ffn_norm: src.vector(&p("ffn_norm.weight"), dim)?,
                w_gate: src.linear(&p("ffn_gate.weight"), ffn, dim)?,
                w_up: src.linear(&p("ffn_up.weight"), ffn, dim)?,
                w_down: src.linear(&p("ffn_down.weight"), dim, ffn)?,
            });
        }
        let tok_embd = src.linear("token_embd.weight", c.vocab_size, dim)?;
        let output = if c.tied_output {
            src.linear("token_embd.weight", c.vocab_size, dim)?
        } else {
            src.linear("output.weight", c.vocab_size, dim)?
        };
        // GGUF Llama 3 files carry their RoPE factors as a tensor.
        let freq_factors = match (&c.rope_freq_factors, src) {
            (Some(f), _) => Some(f.clone()),
            (None, Source::Gguf(_)) => src.opt_vector("rope_freqs.weight", c.n_rot / 2)?,
            (None, Source::Hf(_)) => None,
        };
        if let Some(f) = &freq_factors {
            if f.iter().any(|&v| !(v.is_finite() && v > 0.0)) {
                let msg = "RoPE frequency factors must be finite and positive";
                return Err(Error::model(src.path(), msg));
            }
        }
        let rope = Rope {
            n_rot: c.n_rot,
            freq_base: c.rope_base,
            freq_scale: c.rope_freq_scale,
            freq_factors,
            neox: c.rope_neox,
        };
        Ok(Decoder {
            out_norm: src.vector("output_norm.weight", dim)?,
            config,
            tok_embd,
            layers,
            output,
            rope,
            isa: Isa::from_env()?,
        })
    }

    /// Reads hyperparameters and maps weights from a GGUF file.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Decoder> {
        Decoder::load(ModelConfig::from_gguf(gguf)?, Source::Gguf(gguf))
    }
}

#[cfg(test)]
mod tests;
