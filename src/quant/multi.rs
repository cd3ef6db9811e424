//! [`vec_dot`](super::vec_dot) for a block of weight rows against many activation rows at once:
//! what a matmul computes, with each weight row decoded once instead of once per activation row.
//!
//! Every output is still one `vec_dot` of one weight row with one activation row, formed with the
//! same integer lanes, the same fused multiply-adds in the same block order and the same final
//! horizontal sum as `vecdot.rs`; only the work that does not depend on the activation row (the
//! weight's unpacking and its scales) is hoisted, and several independent outputs are
//! interleaved. The results are therefore the same bits as `vec_dot` for every pair.
//!
//! Types: the 32-element formats whose activations are Q8_0/Q8_1 (Q4_0, Q4_1, Q5_0, Q5_1,
//! Q8_0). Other types, and CPUs without AVX2/FMA/F16C, go through `vec_dot` pair by pair.

use super::dequant::five_bits;
use super::fp::{h, le_u32};
use super::{check_bytes, has_v3, vec_dot, vec_dot_type, GgmlType, QuantError};

/// Whether [`vec_dot_block`] has a batched kernel for weights of `ty` (it accepts every type
/// `vec_dot` does, pair by pair for the others).
pub fn has_batched_vec_dot(ty: GgmlType) -> bool {
    kind(ty).is_some()
}

/// How a format's 32 quants meet the activation's: signed quants (`mul_sum_i8_pairs`, Q8_0
/// activations) or unsigned quants with a min (`mul_sum_us8_pairs`, Q8_1 activations).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Signed,
    Unsigned,
}

fn kind(ty: GgmlType) -> Option<Kind> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => Some(Kind::Signed),
        GgmlType::Q4_1 | GgmlType::Q5_1 => Some(Kind::Unsigned),
        _ => None,
    }
}

/// One weight block as the dot product reads it: its scale, its min (unsigned formats) and its
/// 32 quants (`i8` stored as bytes for signed formats).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct WBlock {
    q: [u8; 32],
    d: f32,
    m: f32,
}

/// Decodes one weight row into blocks, exactly as the per-format kernels in `vecdot.rs` unpack
/// them.
fn decode_row(ty: GgmlType, row: &[u8], out: &mut Vec<WBlock>) {
    out.clear();
    let size = ty.type_size();
    for bx in row.chunks_exact(size) {
        let mut q = [0u8; 32];
        let (d, m) = match ty {
            GgmlType::Q4_0 => {
                for j in 0..16 {
                    q[j] = ((bx[2 + j] & 0x0F) as i8 - 8) as u8;
                    q[j + 16] = ((bx[2 + j] >> 4) as i8 - 8) as u8;
                }
                (h(bx, 0), 0.0)
            }
            GgmlType::Q4_1 => {
                for j in 0..16 {
                    q[j] = bx[4 + j] & 0x0F;
                    q[j + 16] = bx[4 + j] >> 4;
                }
                (h(bx, 0), h(bx, 2))
            }
            GgmlType::Q5_0 => {
                let v = five_bits(&bx[6..22], le_u32(bx, 2));
                for j in 0..32 {
                    q[j] = (v[j] as i8 - 16) as u8;
                }
                (h(bx, 0), 0.0)
            }
            GgmlType::Q5_1 => {
                q = five_bits(&bx[8..24], le_u32(bx, 4));
                (h(bx, 0), h(bx, 2))
            }
            // Q8_0
            _ => {
                q.copy_from_slice(&bx[2..34]);
                (h(bx, 0), 0.0)
            }
        };
        out.push(WBlock { q, d, m });
    }
}

/// Activation rows (quantized to a weight type's `vec_dot_type`) prepared for
/// [`vec_dot_block`]: their lengths checked and their block scales converted to f32 once.
pub struct ActRows<'a> {
    ty: GgmlType,
    n: usize,
    rows: Vec<&'a [u8]>,
    /// `d` of block `b` of row `i` at `i * blocks + b` (batched types only).
    d: Vec<f32>,
    /// `s` (Q8_1's `d * sum`) of the same, zero for Q8_0.
    s: Vec<f32>,
}

impl<'a> ActRows<'a> {
    /// `rows` for dots with `n`-element weight rows of `ty`.
    pub fn new(ty: GgmlType, rows: Vec<&'a [u8]>, n: usize) -> Result<Self, QuantError> {
        for a in &rows {
            check_bytes(vec_dot_type(ty), "activation row", n, a.len())?;
        }
        let (mut d, mut s) = (Vec::new(), Vec::new());
        if let Some(kind) = kind(ty) {
            let size = vec_dot_type(ty).type_size();
            for a in &rows {
                for by in a.chunks_exact(size) {
                    d.push(h(by, 0));
                    s.push(if kind == Kind::Unsigned {
                        h(by, 2)
                    } else {
                        0.0
                    });
                }
            }
        }
        Ok(ActRows { ty, n, rows, d, s })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// `out[i * rows.len() + r] = vec_dot(ty, rows[r], acts[i], n)` for every weight row `r` and
/// activation row `i` (the layout of a matmul's output), bit for bit.
pub fn vec_dot_block(
    ty: GgmlType,
    rows: &[&[u8]],
    acts: &ActRows<'_>,
    out: &mut [f32],
) -> Result<(), QuantError> {
    let (t, n) = (acts.len(), acts.n);
    if acts.ty != ty {
        return Err(QuantError::Unsupported {
            ty,
            op: "vec_dot_block with activations prepared for another type",
        });
    }
    if out.len() != rows.len() * t {
        return Err(QuantError::ByteLength {
            ty: GgmlType::F32,
            what: "output",
            n: rows.len() * t,
            expected: rows.len() * t,
            got: out.len(),
        });
    }
    let kind = match kind(ty) {
        Some(k) if has_v3() => k,
        _ => {
            for (i, a) in acts.rows.iter().enumerate() {
                for (o, row) in out[i * rows.len()..][..rows.len()].iter_mut().zip(rows) {
                    *o = vec_dot(ty, row, a, n)?;
                }
            }
            return Ok(());
        }
    };
    for row in rows {
        check_bytes(ty, "weight row", n, row.len())?;
    }
    let mut decoded = vec![Vec::new(); rows.len()];
    for (d, row) in decoded.iter_mut().zip(rows) {
        decode_row(ty, row, d);
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `has_v3` was checked above; every activation row holds one 34- or 36-byte
        // block per weight block (lengths checked by `ActRows::new` and above).
        unsafe { avx2::block(kind, &decoded, acts, out) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kind, decoded);
        unreachable!("has_v3 is false off x86-64");
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ActRows, Kind, WBlock};
    use std::arch::x86_64::*;

    /// Activation rows taken together against each pair of weight rows.
    const GROUP: usize = 4;
    /// Activation rows kept hot in cache while a block of weight rows passes over them.
    const TILE: usize = 32;

    /// `hsum_float_8`, as in `vecdot.rs`.
    #[inline(always)]
    fn hsum8(a: &[f32; 8]) -> f32 {
        let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
        (r[0] + r[2]) + (r[1] + r[3])
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn block(
        kind: Kind,
        rows: &[Vec<WBlock>],
        acts: &ActRows<'_>,
        out: &mut [f32],
    ) {
        let (t, nr) = (acts.len(), rows.len());
        let nb = rows.first().map_or(0, Vec::len);
        for tile0 in (0..t).step_by(TILE) {
            let tile_end = (tile0 + TILE).min(t);
            let mut r = 0;
            while r < rows.len() {
                // Two weight rows at a time (the last one twice when the count is odd).
                let r1 = (r + 1).min(rows.len() - 1);
                let pair = [rows[r].as_slice(), rows[r1].as_slice()];
                let mut i = tile0;
                while i < tile_end {
                    let g = (tile_end - i).min(GROUP);
                    let mut idx = [i; GROUP];
                    for (k, x) in idx.iter_mut().enumerate().take(g) {
                        *x = i + k;
                    }
                    let res = match kind {
                        Kind::Signed => dots_signed(pair, acts, idx, nb),
                        Kind::Unsigned => dots_unsigned(pair, acts, idx, nb),
                    };
                    for k in 0..g {
                        out[(i + k) * nr + r] = res[0][k];
                        out[(i + k) * nr + r1] = res[1][k];
                    }
                    i += g;
                }
                r += 2;
            }
        }
    }

    #[inline(always)]
    unsafe fn finish(
        acc: &[[__m256; GROUP]; 2],
        summs: Option<&[[f32; GROUP]; 2]>,
    ) -> [[f32; GROUP]; 2] {
        let mut res = [[0f32; GROUP]; 2];
        for r in 0..2 {
            for k in 0..GROUP {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][k]);
                // Signed formats add no `summs` (adding 0.0 would turn a -0.0 into +0.0).
                res[r][k] = match summs {
                    Some(s) => hsum8(&lanes) + s[r][k],
                    None => hsum8(&lanes),
                };
            }
        }
        res
    }

    /// `ggml_vec_dot_q{4,5,8}_0_q8_0` of two weight rows with four Q8_0 rows (34-byte
    /// blocks): per block `fma(d_w * d_a, lanes, acc)` into 8 lanes, then `hsum`.
    #[inline(always)]
    unsafe fn dots_signed(
        w: [&[WBlock]; 2],
        acts: &ActRows<'_>,
        idx: [usize; GROUP],
        nb: usize,
    ) -> [[f32; GROUP]; 2] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); GROUP]; 2];
        let a = idx.map(|i| acts.rows[i].as_ptr());
        let ad = idx.map(|i| acts.d.as_ptr().add(i * nb));
        for b in 0..nb {
            let (w0, w1) = (w[0].get_unchecked(b), w[1].get_unchecked(b));
            let x0 = _mm256_load_si256(w0.q.as_ptr().cast());
            let x1 = _mm256_load_si256(w1.q.as_ptr().cast());
            let (d0, d1) = (_mm256_set1_ps(w0.d), _mm256_set1_ps(w1.d));
            for k in 0..GROUP {
                let yv = _mm256_loadu_si256(a[k].add(34 * b + 2).cast());
                let da = _mm256_broadcast_ss(&*ad[k].add(b));
                let p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(x0, x0), _mm256_sign_epi8(yv, x0));
                let l0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(ones, p0));
                acc[0][k] = _mm256_fmadd_ps(_mm256_mul_ps(d0, da), l0, acc[0][k]);
                let p1 = _mm256_maddubs_epi16(_mm256_sign_epi8(x1, x1), _mm256_sign_epi8(yv, x1));
                let l1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(ones, p1));
                acc[1][k] = _mm256_fmadd_ps(_mm256_mul_ps(d1, da), l1, acc[1][k]);
            }
        }
        finish(&acc, None)
    }

    /// `ggml_vec_dot_q{4,5}_1_q8_1` of two weight rows with four Q8_1 rows (36-byte blocks):
    /// as the signed kernel, plus `summs += m_w * s_a` per block, added after the `hsum`.
    #[inline(always)]
    unsafe fn dots_unsigned(
        w: [&[WBlock]; 2],
        acts: &ActRows<'_>,
        idx: [usize; GROUP],
        nb: usize,
    ) -> [[f32; GROUP]; 2] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); GROUP]; 2];
        let mut summs = [[0f32; GROUP]; 2];
        let a = idx.map(|i| acts.rows[i].as_ptr());
        let ad = idx.map(|i| acts.d.as_ptr().add(i * nb));
        let sa = idx.map(|i| acts.s.as_ptr().add(i * nb));
        for b in 0..nb {
            let (w0, w1) = (w[0].get_unchecked(b), w[1].get_unchecked(b));
            let x0 = _mm256_load_si256(w0.q.as_ptr().cast());
            let x1 = _mm256_load_si256(w1.q.as_ptr().cast());
            let (d0, d1) = (_mm256_set1_ps(w0.d), _mm256_set1_ps(w1.d));
            for k in 0..GROUP {
                let s = *sa[k].add(b);
                summs[0][k] += w0.m * s;
                summs[1][k] += w1.m * s;
                let yv = _mm256_loadu_si256(a[k].add(36 * b + 4).cast());
                let da = _mm256_broadcast_ss(&*ad[k].add(b));
                let l0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(ones, _mm256_maddubs_epi16(x0, yv)));
                acc[0][k] = _mm256_fmadd_ps(_mm256_mul_ps(d0, da), l0, acc[0][k]);
                let l1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(ones, _mm256_maddubs_epi16(x1, yv)));
                acc[1][k] = _mm256_fmadd_ps(_mm256_mul_ps(d1, da), l1, acc[1][k]);
            }
        }
        finish(&acc, Some(&summs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency).
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    fn floats(seed: u64, n: usize) -> Vec<f32> {
        bytes(seed, 4 * n)
            .chunks_exact(4)
            .map(|c| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32 / u32::MAX as f32) - 0.5)
            .collect()
    }

    #[test]
    fn batched_dots_equal_vec_dot_bit_for_bit() {
        let n = 256;
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
            GgmlType::Q4K,
        ] {
            let at = vec_dot_type(ty);
            let rows: Vec<Vec<u8>> = (0..5)
                .map(|r| {
                    let mut w = vec![0u8; ty.row_size(n).unwrap()];
                    super::super::quantize_row(ty, &floats(r, n), &mut w).unwrap();
                    w
                })
                .collect();
            // 5 weight rows (an odd one out of pairs), 39 activation rows (a whole tile of
            // 32, whole groups of four and a partial one).
            let acts: Vec<Vec<u8>> = (0..39)
                .map(|i| {
                    let mut a = vec![0u8; at.row_size(n).unwrap()];
                    super::super::quantize_activation(at, &floats(100 + i, n), &mut a).unwrap();
                    a
                })
                .collect();
            let rr: Vec<&[u8]> = rows.iter().map(|r| r.as_slice()).collect();
            let aa: Vec<&[u8]> = acts.iter().map(|a| a.as_slice()).collect();
            let mut out = vec![0f32; rr.len() * aa.len()];
            let prepared = ActRows::new(ty, aa.clone(), n).unwrap();
            vec_dot_block(ty, &rr, &prepared, &mut out).unwrap();
            for (r, row) in rr.iter().enumerate() {
                for (i, a) in aa.iter().enumerate() {
                    let want = vec_dot(ty, row, a, n).unwrap();
                    assert_eq!(
                        out[i * rr.len() + r].to_bits(),
                        want.to_bits(),
                        "{ty} {r} {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn short_rows_are_rejected() {
        let ty = GgmlType::Q4_1;
        let w = vec![0u8; ty.row_size(64).unwrap()];
        let a = vec![0u8; 10];
        assert!(ActRows::new(ty, vec![&a], 64).is_err());
        let good = vec![0u8; GgmlType::Q8_1.row_size(64).unwrap()];
        let acts = ActRows::new(ty, vec![&good], 64).unwrap();
        let mut out = [0f32; 1];
        assert!(vec_dot_block(ty, &[&w[..10]], &acts, &mut out).is_err());
        assert!(vec_dot_block(ty, &[&w], &acts, &mut out).is_ok());
    }
}
