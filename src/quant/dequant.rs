//! Block dequantizers, one per format, as ggml-quants.c `dequantize_row_*` computes them.
//!
//! Each writes one block into a caller's buffer, so that a row can be consumed block by block
//! (the exact dot product) without allocating. Block layouts are those of ggml-common.h;
//! byte offsets are written out here. The pinned C is compiled as ISO C11, which turns off
//! floating-point contraction: `x*d + m` is a multiply then an add, never an FMA, and that is
//! what is written here.

use super::fp::{f16_to_f32, h, le_f32, le_u32};

/// A block format: its size, and how one block becomes floats.
pub(crate) trait Block {
    /// Elements per block.
    const QK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Writes the `QK` values of block `b` (exactly `BYTES` long) into `y[..QK]`.
    fn dequant(b: &[u8], y: &mut [f32]);
}

macro_rules! marker {
    ($($name:ident),*) => { $( pub(crate) struct $name; )* };
}
marker!(Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2K, Q3K, Q4K, Q5K, Q6K, Q8K);

impl Block for Q4_0 {
    const QK: usize = 32;
    const BYTES: usize = 18;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let qs = &b[2..18];
        let y = &mut y[..32];
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) as i32 - 8;
            let x1 = (qs[j] >> 4) as i32 - 8;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

impl Block for Q4_1 {
    const QK: usize = 32;
    const BYTES: usize = 20;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let m = h(b, 2);
        let qs = &b[4..20];
        let y = &mut y[..32];
        for j in 0..16 {
            let x0 = (qs[j] & 0x0F) as i32;
            let x1 = (qs[j] >> 4) as i32;
            y[j] = x0 as f32 * d + m;
            y[j + 16] = x1 as f32 * d + m;
        }
    }
}

impl Block for Q5_0 {
    const QK: usize = 32;
    const BYTES: usize = 22;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let qh = le_u32(b, 2);
        let qs = &b[6..22];
        let y = &mut y[..32];
        for j in 0..16 {
            let xh_0 = ((qh >> j) << 4) & 0x10;
            let xh_1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] as u32 & 0x0F) | xh_0) as i32 - 16;
            let x1 = ((qs[j] as u32 >> 4) | xh_1) as i32 - 16;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

impl Block for Q5_1 {
    const QK: usize = 32;
    const BYTES: usize = 24;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let m = h(b, 2);
        let qh = le_u32(b, 4);
        let qs = &b[8..24];
        let y = &mut y[..32];
        for j in 0..16 {
            let xh_0 = ((qh >> j) << 4) & 0x10;
            let xh_1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] as u32 & 0x0F) | xh_0) as i32;
            let x1 = ((qs[j] as u32 >> 4) | xh_1) as i32;
            y[j] = x0 as f32 * d + m;
            y[j + 16] = x1 as f32 * d + m;
        }
    }
}

impl Block for Q8_0 {
    const QK: usize = 32;
    const BYTES: usize = 34;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let qs = &b[2..34];
        let y = &mut y[..32];
        for j in 0..32 {
            y[j] = qs[j] as i8 as f32 * d;
        }
    }
}

/// ggml has no `dequantize_row_q8_1`; this is the same `q*d` as Q8_0 (the `s` field is
/// derived data).
impl Block for Q8_1 {
    const QK: usize = 32;
    const BYTES: usize = 36;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let qs = &b[4..36];
        let y = &mut y[..32];
        for j in 0..32 {
            y[j] = qs[j] as i8 as f32 * d;
        }
    }
}

impl Block for Q2K {
    const QK: usize = 256;
    const BYTES: usize = 84;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let scales = &b[0..16];
        let qs = &b[16..80];
        let d = h(b, 80);
        let min = h(b, 82);
        let y = &mut y[..256];
        let mut is = 0;
        let mut o = 0;
        for n in 0..2 {
            let q = &qs[32 * n..32 * n + 32];
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for l in 0..16 {
                        let v = ((q[l + 16 * half] >> shift) & 3) as f32;
                        y[o + l] = dl * v - ml;
                    }
                    o += 16;
                }
            }
        }
    }
}

/// The sixteen 6-bit scales of a Q3_K block, unpacked as dequantize_row_q3_K does (`aux`).
#[inline(always)]
pub(crate) fn q3k_scales(s: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = le_u32(s, 0);
    let a1 = le_u32(s, 4);
    let tmp = le_u32(s, 8);
    let aux = [
        (a0 & KMASK2) | (((tmp) & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, w) in aux.iter().enumerate() {
        for (k, byte) in w.to_le_bytes().iter().enumerate() {
            out[4 * i + k] = *byte as i8;
        }
    }
    out
}

impl Block for Q3K {
    const QK: usize = 256;
    const BYTES: usize = 110;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let hm = &b[0..32];
        let qs = &b[32..96];
        let scales = q3k_scales(&b[96..108]);
        let d_all = h(b, 108);
        let y = &mut y[..256];
        let mut is = 0;
        let mut o = 0;
        let mut m: u8 = 1;
        for n in 0..2 {
            let q = &qs[32 * n..32 * n + 32];
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * (scales[is] as i32 - 32) as f32;
                    is += 1;
                    for l in 0..16 {
                        let i = l + 16 * half;
                        let low = ((q[i] >> shift) & 3) as i32;
                        let v = low - if hm[i] & m != 0 { 0 } else { 4 };
                        y[o + l] = dl * v as f32;
                    }
                    o += 16;
                }
                m = m.wrapping_shl(1);
            }
        }
    }
}

/// `get_scale_min_k4` of ggml-quants.c: scale and min of sub-block `j` of a Q4_K/Q5_K block.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    let q = &q[..12];
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

impl Block for Q4K {
    const QK: usize = 256;
    const BYTES: usize = 144;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let min = h(b, 2);
        let scales = &b[4..16];
        let qs = &b[16..144];
        let y = &mut y[..256];
        for j in 0..4 {
            let (sc, m) = scale_min_k4(2 * j, scales);
            let d1 = d * sc as f32;
            let m1 = min * m as f32;
            let (sc, m) = scale_min_k4(2 * j + 1, scales);
            let d2 = d * sc as f32;
            let m2 = min * m as f32;
            let q = &qs[32 * j..32 * j + 32];
            let out = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                out[l] = d1 * (q[l] & 0xF) as f32 - m1;
            }
            for l in 0..32 {
                out[32 + l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

impl Block for Q5K {
    const QK: usize = 256;
    const BYTES: usize = 176;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let min = h(b, 2);
        let scales = &b[4..16];
        let qh = &b[16..48];
        let qs = &b[48..176];
        let y = &mut y[..256];
        for j in 0..4 {
            let (sc, m) = scale_min_k4(2 * j, scales);
            let d1 = d * sc as f32;
            let m1 = min * m as f32;
            let (sc, m) = scale_min_k4(2 * j + 1, scales);
            let d2 = d * sc as f32;
            let m2 = min * m as f32;
            let u1 = 1u8 << (2 * j);
            let u2 = 2u8 << (2 * j);
            let ql = &qs[32 * j..32 * j + 32];
            let out = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                let v = (ql[l] & 0xF) as i32 + if qh[l] & u1 != 0 { 16 } else { 0 };
                out[l] = d1 * v as f32 - m1;
            }
            for l in 0..32 {
                let v = (ql[l] >> 4) as i32 + if qh[l] & u2 != 0 { 16 } else { 0 };
                out[32 + l] = d2 * v as f32 - m2;
            }
        }
    }
}

impl Block for Q6K {
    const QK: usize = 256;
    const BYTES: usize = 210;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 208);
        let y = &mut y[..256];
        for n in 0..2 {
            let ql = &b[64 * n..64 * n + 64];
            let qh = &b[128 + 32 * n..128 + 32 * n + 32];
            let sc = &b[192 + 8 * n..192 + 8 * n + 8];
            let out = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                // `d * sc[is] * q1` in C: (d * sc) first.
                out[l] = d * sc[is] as i8 as f32 * q1 as f32;
                out[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
                out[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
                out[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
            }
        }
    }
}

impl Block for Q8K {
    const QK: usize = 256;
    const BYTES: usize = 292;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = le_f32(b, 0);
        let qs = &b[4..260];
        let y = &mut y[..256];
        for j in 0..256 {
            y[j] = d * qs[j] as i8 as f32;
        }
    }
}

/// Dequantizes a whole row of blocks. Lengths were checked by the caller.
#[inline(always)]
pub(crate) fn row<B: Block>(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(B::BYTES).zip(dst.chunks_exact_mut(B::QK)) {
        B::dequant(b, y);
    }
}

#[inline(always)]
pub(crate) fn row_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

#[inline(always)]
pub(crate) fn row_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
    }
}

#[inline(always)]
pub(crate) fn row_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(4).zip(dst.iter_mut()) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}
