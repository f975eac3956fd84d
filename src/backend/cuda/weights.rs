//! A model's weights on the GPU: bf16, fused Q/K/V and gate/up (see `model::dense`),
//! uploaded one layer at a time so the host holds at most one layer's bf16 copy.
//! An allocation that does not fit is an [`Error::Device`] naming the tensor, its size and
//! the free memory, returned from engine create.

use cudarc::driver::CudaSlice;
use half::bf16;

use super::device::Gpu;
use crate::error::Result;
use crate::model::dense::DenseLayer;
use crate::model::Decoder;

/// One layer on the device (shapes as in [`DenseLayer`]).
pub struct DeviceLayer {
    pub attn_norm: CudaSlice<bf16>,
    pub qkv: CudaSlice<bf16>,
    pub qkv_bias: Option<CudaSlice<f32>>,
    pub q_norm: Option<CudaSlice<bf16>>,
    pub k_norm: Option<CudaSlice<bf16>>,
    pub o: CudaSlice<bf16>,
    pub ffn_norm: CudaSlice<bf16>,
    pub gate_up: CudaSlice<bf16>,
    pub down: CudaSlice<bf16>,
}

/// Every weight of a model on the device.
pub struct DeviceWeights {
    pub embedding: CudaSlice<bf16>,
    pub layers: Vec<DeviceLayer>,
    pub out_norm: CudaSlice<bf16>,
    /// `None`: tied to `embedding`.
    pub output: Option<CudaSlice<bf16>>,
    /// Llama 3 rope scaling's per-pair frequency factors.
    pub freq_factors: Option<CudaSlice<f32>>,
    /// Bytes of matrices read per decoded token (every layer's matrices and the output
    /// matrix, tied or not): the numerator of the bandwidth bound.
    pub matrix_bytes_per_token: usize,
    /// Bytes allocated for weights in all.
    pub total_bytes: usize,
}

impl DeviceWeights {
    /// The output (logits) matrix.
    pub fn lm_head(&self) -> &CudaSlice<bf16> {
        self.output.as_ref().unwrap_or(&self.embedding)
    }

    /// Converts and uploads every weight of `model`.
    pub fn upload(gpu: &Gpu, model: &Decoder) -> Result<DeviceWeights> {
        let c = &model.config;
        let mut total = 0usize;
        let mut up_bf16 = |v: &[bf16], what: String| -> Result<CudaSlice<bf16>> {
            total += 2 * v.len();
            gpu.upload(v, &what)
        };
        let embedding = up_bf16(&model.dense_embedding(), "the token embedding".into())?;
        let output = match model.dense_output() {
            Some(w) => Some(up_bf16(&w, "the output matrix".into())?),
            None => None,
        };
        let out_norm = up_bf16(&model.dense_out_norm(), "the output norm".into())?;
        let mut layers = Vec::with_capacity(c.n_layers);
        let mut matrix_bytes = 2 * c.vocab_size * c.dim;
        for i in 0..c.n_layers {
            let d: DenseLayer = model.dense_layer(i);
            matrix_bytes += d.matrix_bytes();
            let name = |t: &str| format!("layer {i} {t}");
            let q_norm = match &d.q_norm {
                Some(v) => Some(up_bf16(v, name("q_norm"))?),
                None => None,
            };
            let k_norm = match &d.k_norm {
                Some(v) => Some(up_bf16(v, name("k_norm"))?),
                None => None,
            };
            let layer = DeviceLayer {
                attn_norm: up_bf16(&d.attn_norm, name("attn_norm"))?,
                qkv: up_bf16(&d.qkv, name("fused q/k/v matrix"))?,
                qkv_bias: match &d.qkv_bias {
                    Some(b) => Some(gpu.upload(b, &name("q/k/v bias"))?),
                    None => None,
                },
                q_norm,
                k_norm,
                o: up_bf16(&d.o, name("output projection"))?,
                ffn_norm: up_bf16(&d.ffn_norm, name("ffn_norm"))?,
                gate_up: up_bf16(&d.gate_up, name("fused gate/up matrix"))?,
                down: up_bf16(&d.down, name("down projection"))?,
            };
            layers.push(layer);
        }
        let freq_factors = match &model.rope().freq_factors {
            Some(f) => Some(gpu.upload(f, "the rope frequency factors")?),
            None => None,
        };
        Ok(DeviceWeights {
            embedding,
            layers,
            out_norm,
            output,
            freq_factors,
            matrix_bytes_per_token: matrix_bytes,
            total_bytes: total,
        })
    }
}
