//! bf16 copies of a [`Decoder`]'s weights, laid out for an accelerator backend (the CUDA
//! backend uploads them; quantized GGUF weights are dequantized here, once, at load).
//!
//! Layout: every matrix row-major `[n_out, n_in]` like the CPU's (one row per output
//! feature), Q/K/V fused into one `[q_dim + 2 * kv_dim, dim]` matrix (Q rows, then K, then
//! V) and gate/up into one `[2 * ffn_dim, dim]` matrix (gate rows, then up), so one matmul
//! computes each group and its output rows hold `[q | k | v]` and `[gate | up]`. Norm
//! weights are bf16 (the kernels read bf16 weights), biases stay f32 (added to the bf16
//! matmul output in f32, as close to the CPU's f32 add as bf16 activations allow).
//!
//! Conversion is exact for bf16 sources (the bits are copied) and rounds to nearest even
//! otherwise (f32, f16, and every quantized type through the CPU's own dequantizers).
//! One layer at a time ([`Decoder::dense_layer`]), so the host never holds more than a
//! layer's copy. Public operations: [`DenseLayer`], [`Decoder::dense_layer`],
//! [`Decoder::dense_embedding`], [`Decoder::dense_output`], [`Decoder::dense_out_norm`],
//! [`linear_to_bf16`].

use half::bf16;

use super::decoder::Decoder;
use super::ggml::GgmlType;
use crate::backend::cpu::matmul::Linear;
use crate::backend::cpu::quant::dequantize_row;

/// One transformer layer's weights in bf16, fused.
pub struct DenseLayer {
    pub attn_norm: Vec<bf16>,
    /// `[q_dim + 2 * kv_dim, dim]`: Q rows, then K, then V.
    pub qkv: Vec<bf16>,
    /// `q_dim + 2 * kv_dim` biases (Qwen2), in the order of `qkv`'s rows.
    pub qkv_bias: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of Q and K (`head_dim` each; Qwen3).
    pub q_norm: Option<Vec<bf16>>,
    pub k_norm: Option<Vec<bf16>>,
    /// `[dim, q_dim]`.
    pub o: Vec<bf16>,
    pub ffn_norm: Vec<bf16>,
    /// `[2 * ffn_dim, dim]`: gate rows, then up.
    pub gate_up: Vec<bf16>,
    /// `[dim, ffn_dim]`.
    pub down: Vec<bf16>,
}

impl DenseLayer {
    /// Bytes of the matrices (what one decoded token reads).
    pub fn matrix_bytes(&self) -> usize {
        2 * (self.qkv.len() + self.o.len() + self.gate_up.len() + self.down.len())
    }
}

/// Every row of `w`, dequantized to bf16, appended to `out`.
pub fn linear_to_bf16(w: &Linear, out: &mut Vec<bf16>) {
    out.reserve(w.rows * w.cols);
    let bytes = w.bytes.as_slice();
    match w.ty {
        GgmlType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .take(w.rows * w.cols)
                .map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]]))),
        ),
        _ => {
            let mut row = vec![0f32; w.cols];
            for r in 0..w.rows {
                dequantize_row(w.ty, w.row(r), &mut row);
                out.extend(row.iter().map(|&v| bf16::from_f32(v)));
            }
        }
    }
}

fn fused(ws: &[&Linear]) -> Vec<bf16> {
    let mut out = Vec::with_capacity(ws.iter().map(|w| w.rows * w.cols).sum());
    for w in ws {
        linear_to_bf16(w, &mut out);
    }
    out
}

fn norm(w: &[f32]) -> Vec<bf16> {
    w.iter().map(|&v| bf16::from_f32(v)).collect()
}

impl Decoder {
    /// Layer `i`'s weights in bf16 (see the module doc for the layout).
    pub fn dense_layer(&self, i: usize) -> DenseLayer {
        let l = &self.layers[i];
        let qkv_bias = match (&l.bq, &l.bk, &l.bv) {
            (None, None, None) => None,
            (bq, bk, bv) => {
                let c = &self.config;
                let mut b = Vec::with_capacity(c.q_dim() + 2 * c.kv_dim());
                for (bias, n) in [(bq, c.q_dim()), (bk, c.kv_dim()), (bv, c.kv_dim())] {
                    match bias {
                        Some(v) => b.extend_from_slice(v),
                        None => b.extend(std::iter::repeat_n(0.0, n)),
                    }
                }
                Some(b)
            }
        };
        DenseLayer {
            attn_norm: norm(&l.attn_norm),
            qkv: fused(&[&l.wq, &l.wk, &l.wv]),
            qkv_bias,
            q_norm: l.q_norm.as_deref().map(norm),
            k_norm: l.k_norm.as_deref().map(norm),
            o: fused(&[&l.wo]),
            ffn_norm: norm(&l.ffn_norm),
            gate_up: fused(&[&l.w_gate, &l.w_up]),
            down: fused(&[&l.w_down]),
        }
    }

    /// The token embedding table, `[vocab_size, dim]`.
    pub fn dense_embedding(&self) -> Vec<bf16> {
        fused(&[&self.tok_embd])
    }

    /// The output (logits) matrix `[vocab_size, dim]`, or `None` when it is tied to the
    /// embedding (use [`Decoder::dense_embedding`]'s copy).
    pub fn dense_output(&self) -> Option<Vec<bf16>> {
        (!self.config.tied_output).then(|| fused(&[&self.output]))
    }

    /// The final norm's weights.
    pub fn dense_out_norm(&self) -> Vec<bf16> {
        norm(&self.out_norm)
    }

    /// The rotary embedding (shared with the CPU path, so both rotate identically).
    pub fn rope(&self) -> &crate::backend::cpu::ops::Rope {
        &self.rope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::matmul::WeightBytes;

    fn linear(ty: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> Linear {
        Linear {
            ty,
            rows,
            cols,
            bytes: WeightBytes::Owned(bytes),
        }
    }

    #[test]
    fn bf16_rows_are_copied_bit_for_bit() {
        let bits: Vec<u16> = (0..12u16).map(|i| 0x3f80 + i * 7).collect();
        let bytes = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        let mut out = Vec::new();
        linear_to_bf16(&linear(GgmlType::BF16, 3, 4, bytes), &mut out);
        assert_eq!(out.iter().map(|b| b.to_bits()).collect::<Vec<_>>(), bits);
    }

    #[test]
    fn f32_and_quantized_rows_match_the_cpu_dequantizer() {
        let vals: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let bytes = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        linear_to_bf16(&linear(GgmlType::F32, 2, 32, bytes), &mut out);
        let want: Vec<bf16> = vals.iter().map(|&v| bf16::from_f32(v)).collect();
        assert_eq!(out, want);

        // Q8_0: one block of 32 = f16 scale + 32 int8.
        let mut block = half::f16::from_f32(0.5).to_bits().to_le_bytes().to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let w = linear(GgmlType::Q8_0, 1, 32, block);
        let mut out = Vec::new();
        linear_to_bf16(&w, &mut out);
        let mut f = vec![0f32; 32];
        dequantize_row(GgmlType::Q8_0, w.row(0), &mut f);
        assert_eq!(
            out,
            f.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<_>>()
        );
        assert_eq!(out[0].to_f32(), -8.0);
    }
}
