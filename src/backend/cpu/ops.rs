//! Element-wise and row-wise operations of the transformer on f32 rows, written to match
//! llama.cpp's CPU definitions: RMSNorm (f32 squares summed in f64), RoPE with the angle
//! advanced by repeated multiplication, SiLU as `x / (1 + e^-x)`.

/// `out = x / sqrt(mean(x^2) + eps) * weight` for one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    // Squares in f32, summed in f64, as ggml_compute_forward_rms_norm_f32 does.
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// The rotary embedding of one model: the rotated width, base, linear scale, optional
/// per-pair frequency factors (Llama 3 scaling: llama.cpp's `rope_freqs.weight`) and the
/// pair layout.
#[derive(Clone, Debug)]
pub struct Rope {
    pub n_rot: usize,
    pub freq_base: f32,
    /// 1 / linear scaling factor.
    pub freq_scale: f32,
    /// Per-pair divisors of the angle (`n_rot / 2` of them), as ggml's `freq_factors`.
    pub freq_factors: Option<Vec<f32>>,
    /// NeoX layout: rotate `(x[i], x[i + n_rot/2])` (llama.cpp's `LLAMA_ROPE_TYPE_NEOX`,
    /// transformers' `rotate_half`) instead of adjacent pairs `(x[2i], x[2i+1])`.
    pub neox: bool,
}

impl Rope {
    /// Rotates every row of `xs` (heads of `head_dim`; Q and K of one token) in place for
    /// position `pos`, computing the angles once as ggml's `rope_cache_init` does (angle
    /// advanced by repeated multiplication, divided by the pair's frequency factor, times
    /// the linear scale). The "normal" layout rotates adjacent pairs `(x[2i], x[2i+1])`,
    /// as the llama GGUF converter's permuted Q/K weights expect; the NeoX layout rotates
    /// `(x[i], x[i + n_rot/2])`.
    pub fn apply(&self, xs: [&mut [f32]; 2], head_dim: usize, pos: usize) {
        let theta_scale = self.freq_base.powf(-2.0 / self.n_rot as f32);
        let half = self.n_rot / 2;
        let mut cs = [(0f32, 0f32); 256];
        let mut theta = pos as f32;
        for (i, c) in cs.iter_mut().take(half).enumerate() {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
            let t = self.freq_scale * (theta / ff);
            *c = (t.cos(), t.sin());
            theta *= theta_scale;
        }
        for head in xs.into_iter().flat_map(|x| x.chunks_exact_mut(head_dim)) {
            for (i, &(cos, sin)) in cs.iter().take(half).enumerate() {
                let (ia, ib) = if self.neox {
                    (i, i + half)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (a, b) = (head[ia], head[ib]);
                head[ia] = a * cos - b * sin;
                head[ib] = a * sin + b * cos;
            }
        }
    }
}

/// `gate[i] = silu(gate[i]) * up[i]`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `x += y`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_normalizes() {
        let x = [3.0f32, 4.0];
        let mut out = [0f32; 2];
        rms_norm(&x, &[1.0, 2.0], 0.0, &mut out);
        let s = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / s).abs() < 1e-6 && (out[1] - 8.0 / s).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_and_keeps_norms() {
        let rope = Rope {
            n_rot: 4,
            freq_base: 10000.0,
            freq_scale: 1.0,
            freq_factors: None,
            neox: false,
        };
        let mut x = [1.0f32, 0.0, 1.0, 0.0];
        let mut k = x;
        rope.apply([&mut x, &mut k], 4, 1);
        assert_eq!(x, k);
        // Pair 0 turns by 1 radian; pair 1 by 1/100 radian.
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert!((x[2] - 0.01f32.cos()).abs() < 1e-6 && (x[3] - 0.01f32.sin()).abs() < 1e-6);
        let mut y = [0.3f32, -0.7, 0.2, 0.9];
        rope.apply([&mut y, &mut []], 4, 0);
        assert_eq!(y, [0.3, -0.7, 0.2, 0.9]);
    }

    #[test]
    fn neox_rope_rotates_halves_and_freq_factors_divide_the_angle() {
        let rope = Rope {
            n_rot: 4,
            freq_base: 10000.0,
            freq_scale: 1.0,
            freq_factors: Some(vec![1.0, 2.0]),
            neox: true,
        };
        let mut x = [1.0f32, 1.0, 0.0, 0.0];
        rope.apply([&mut x, &mut []], 4, 1);
        // Pair (0, 2) turns by 1 radian; pair (1, 3) by (1/100) / 2 radian.
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        assert!((x[1] - 0.005f32.cos()).abs() < 1e-6 && (x[3] - 0.005f32.sin()).abs() < 1e-6);
    }
}
