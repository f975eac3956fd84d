//! Q8_K: the activation format every K-quant weight multiplies with (ggml's
//! `vec_dot_type` for Q2_K..Q6_K). 256-element blocks of i8 with an f32 scale and the
//! sums of each 16 values. A port of `quantize_row_q8_K_ref` (`ggml-quants.c`), which is
//! also what llama.cpp's CPU backend runs on x86 (`quantize_row_q8_K`). Public
//! operations: [`Q8KBlock`], [`quantize_q8_k`], [`QK_K`].

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

/// One block of 256 activations: `x ≈ d * qs`, `bsums[j] = sum(qs[16j..16j+16])`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(32))]
pub struct Q8KBlock {
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
    pub d: f32,
}

impl Default for Q8KBlock {
    fn default() -> Self {
        Q8KBlock {
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
            d: 0.0,
        }
    }
}

/// ggml's `nearest_int`: round to nearest, ties to even, through the 1.5 * 2^23 trick
/// (valid for |x| <= 4194303, which `iscale * x` never exceeds: |iscale * x| <= 127).
#[inline]
fn nearest_int(x: f32) -> i32 {
    let v = x + 12582912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Quantizes `x` (a multiple of 256 long; a partial tail is ignored) into `out`.
/// The scale comes from the element of largest magnitude, sign included:
/// `iscale = -127 / max`, `d = 1 / iscale`, `q = min(127, nearest_int(iscale * x))`.
pub fn quantize_q8_k(x: &[f32], out: &mut [Q8KBlock]) {
    for (chunk, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in chunk {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *y = Q8KBlock::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in y.qs.iter_mut().zip(chunk) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, g) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| q as i16).sum();
        }
        y.d = 1.0 / iscale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (x, want) in [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (126.7, 127),
        ] {
            assert_eq!(nearest_int(x), want, "{x}");
        }
    }

    #[test]
    fn the_largest_magnitude_maps_to_minus_127_and_bsums_add_up() {
        let mut x: Vec<f32> = (0..QK_K).map(|i| (i as f32 - 100.0) * 0.01).collect();
        x[7] = 3.0;
        let mut q = [Q8KBlock::default()];
        quantize_q8_k(&x, &mut q);
        assert_eq!(q[0].qs[7], -127);
        assert!((q[0].d - 3.0 / -127.0).abs() < 1e-7);
        for j in 0..16 {
            let s: i32 = q[0].qs[16 * j..16 * (j + 1)]
                .iter()
                .map(|&v| v as i32)
                .sum();
            assert_eq!(q[0].bsums[j] as i32, s);
        }
        let mut z = [Q8KBlock::default()];
        quantize_q8_k(&[0.0; QK_K], &mut z);
        assert_eq!(z[0], Q8KBlock::default());
    }
}
