//! Block dequantizers, one per format, as ggml-quants.c `dequantize_row_*` computes them.
//!
//! Each writes one block into a caller's buffer, so that a row can be consumed block by block
//! (the exact dot product) without allocating. Block layouts are those of ggml-common.h;
//! byte offsets are written out here. The pinned C is compiled as ISO C11, which turns off
//! floating-point contraction: `x*d + m` is a multiply then an add, never an FMA, and that is
//! what is written here.

use super::fp::{bf16_to_f32, block_boundary, f16_to_f32, h, le_f32, le_u32};

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

// The quants are unpacked into a byte array in element order first and scaled in a second,
// contiguous loop: the same arithmetic per element, in a shape that vectorizes.

/// Low nibbles then high nibbles of 16 bytes: elements 0..16 and 16..32 of a 32-block.
#[inline(always)]
pub(crate) fn nibbles(qs: &[u8]) -> [u8; 32] {
    let qs = &qs[..16];
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

/// Low nibbles then high nibbles of 32 bytes (Q4_K: two sub-blocks of 32).
#[inline(always)]
pub(crate) fn nibbles_32(qs: &[u8]) -> [u8; 64] {
    let qs = &qs[..32];
    let mut q = [0u8; 64];
    for j in 0..32 {
        q[j] = qs[j] & 0x0F;
        q[j + 32] = qs[j] >> 4;
    }
    q
}

/// Runs `f` out of line: for the rare blocks whose offsets may be NaN, redone carefully.
#[cold]
#[inline(never)]
fn cold(f: impl FnOnce()) {
    f()
}

/// `y[i] = q[i]*d + m` (`SUB`: `d*q[i] - m`), each a multiply then an add as in the C.
///
/// When both the product and `m` are NaN, x86 returns the first operand's NaN; LLVM does not
/// promise which operand of `+` it puts first, so when `m` is NaN that rule is spelled out.
/// (If the product is not NaN, `m` is the only NaN and is what either order returns.)
/// `CAREFUL` is false where the caller has checked, once per block, that `m` cannot be NaN:
/// the common case gets a loop without the test.
#[inline(always)]
fn affine<const SUB: bool, const CAREFUL: bool>(q: &[u8], d: f32, m: f32, y: &mut [f32]) {
    if CAREFUL && m.is_nan() {
        for (o, &v) in y.iter_mut().zip(q) {
            let p = v as f32 * d;
            *o = if p.is_nan() { p } else { m };
        }
    } else if SUB {
        for (o, &v) in y.iter_mut().zip(q) {
            *o = d * v as f32 - m;
        }
    } else {
        for (o, &v) in y.iter_mut().zip(q) {
            *o = v as f32 * d + m;
        }
    }
}

/// Nibbles plus the fifth bit of element `j` from bit `j` of `qh` (Q5_0, Q5_1).
#[inline(always)]
pub(crate) fn five_bits(qs: &[u8], qh: u32) -> [u8; 32] {
    const BIT: [u8; 32] = {
        let mut b = [0u8; 32];
        let mut j = 0;
        while j < 32 {
            b[j] = 1 << (j % 8);
            j += 1;
        }
        b
    };
    let mut q = nibbles(qs);
    let qhb = qh.to_le_bytes();
    // Spread byte j/8 to lane j, then test bit j%8 with a constant mask: the shape of ggml's
    // `bytes_from_bits_32` (shuffle, and, compare) instead of 32 different shifts.
    let mut spread = [0u8; 32];
    for (j, e) in spread.iter_mut().enumerate() {
        *e = qhb[j >> 3];
    }
    for j in 0..32 {
        q[j] |= ((spread[j] & BIT[j] != 0) as u8) << 4;
    }
    q
}

/// The 2-bit quants of a Q2_K/Q3_K block in element order: element `128*j + 32*s + i` is bits
/// `2s..2s+2` of `qs[32*j + i]`.
#[inline(always)]
pub(crate) fn crumbs(qs: &[u8]) -> [u8; 256] {
    let qs = &qs[..64];
    let mut q = [0u8; 256];
    for j in 0..2 {
        for s in 0..4 {
            for i in 0..32 {
                q[128 * j + 32 * s + i] = (qs[32 * j + i] >> (2 * s)) & 3;
            }
        }
    }
    q
}

impl Block for Q4_0 {
    const QK: usize = 32;
    const BYTES: usize = 18;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let q = nibbles(&b[2..18]);
        let y = &mut y[..32];
        for j in 0..32 {
            y[j] = (q[j] as i32 - 8) as f32 * d;
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
        let q = nibbles(&b[4..20]);
        let y = &mut y[..32];
        affine::<false, false>(&q, d, m, y);
        if m.is_nan() {
            cold(|| affine::<false, true>(&q, d, m, y));
        }
    }
}

impl Block for Q5_0 {
    const QK: usize = 32;
    const BYTES: usize = 22;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let q = five_bits(&b[6..22], le_u32(b, 2));
        let y = &mut y[..32];
        for j in 0..32 {
            y[j] = (q[j] as i32 - 16) as f32 * d;
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
        let q = five_bits(&b[8..24], le_u32(b, 4));
        let y = &mut y[..32];
        affine::<false, false>(&q, d, m, y);
        if m.is_nan() {
            cold(|| affine::<false, true>(&q, d, m, y));
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

#[inline(always)]
fn q2k_body<const CAREFUL: bool>(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let q = crumbs(&b[16..80]);
    let d = h(b, 80);
    let min = h(b, 82);
    let y = &mut y[..256];
    // Scale `is` covers elements 16*is..16*is+16.
    for is in 0..16 {
        let sc = scales[is];
        let dl = d * (sc & 0xF) as f32;
        let ml = min * (sc >> 4) as f32;
        let r = 16 * is..16 * is + 16;
        affine::<true, CAREFUL>(&q[r.clone()], dl, ml, &mut y[r]);
    }
}

impl Block for Q2K {
    const QK: usize = 256;
    const BYTES: usize = 84;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        // A finite `min` times a small integer is finite: no NaN offsets in this block.
        q2k_body::<false>(b, y);
        if !h(b, 82).is_finite() {
            cold(|| q2k_body::<true>(b, y));
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

/// Q3_K quants in element order, in -4..=3: the low bits minus 4 where the high bit (bit
/// `4j + s` of `hmask[i]` for element `128j + 32s + i`) is clear.
#[inline(always)]
pub(crate) fn q3k_quants(hm: &[u8], qs: &[u8]) -> [i8; 256] {
    let hm = &hm[..32];
    let low = crumbs(qs);
    let mut q = [0i8; 256];
    for j in 0..2 {
        for s in 0..4 {
            let bit = 4 * j + s;
            for i in 0..32 {
                let e = 128 * j + 32 * s + i;
                let high = ((hm[i] >> bit) & 1) as i8;
                q[e] = low[e] as i8 - 4 + 4 * high;
            }
        }
    }
    q
}

impl Block for Q3K {
    const QK: usize = 256;
    const BYTES: usize = 110;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let q = q3k_quants(&b[0..32], &b[32..96]);
        let scales = q3k_scales(&b[96..108]);
        let d_all = h(b, 108);
        let y = &mut y[..256];
        for is in 0..16 {
            let dl = d_all * (scales[is] as i32 - 32) as f32;
            for l in 16 * is..16 * is + 16 {
                y[l] = dl * q[l] as f32;
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
        let qs = &b[16..144];
        let mut q = [0u8; 256];
        for j in 0..4 {
            q[64 * j..64 * j + 64].copy_from_slice(&nibbles_32(&qs[32 * j..32 * j + 32]));
        }
        k4_dequant(b, &q, y);
    }
}

/// Q5_K quants in element order (0..32): element `64j + 32h + l` is nibble `h` of
/// `qs[32j + l]` plus 16 times bit `2j + h` of `qh[l]`.
#[inline(always)]
pub(crate) fn q5k_quants(qh: &[u8], qs: &[u8]) -> [u8; 256] {
    let qh = &qh[..32];
    let mut q = [0u8; 256];
    for j in 0..4 {
        let ql = &qs[32 * j..32 * j + 32];
        let out = &mut q[64 * j..64 * j + 64];
        // Constant masks rather than shifts by `2j`: compare-and-select vectorizes on bytes.
        let (m0, m1) = (1u8 << (2 * j), 2u8 << (2 * j));
        for l in 0..32 {
            out[l] = (ql[l] & 0xF) | (((qh[l] & m0 != 0) as u8) << 4);
            out[32 + l] = (ql[l] >> 4) | (((qh[l] & m1 != 0) as u8) << 4);
        }
    }
    q
}

impl Block for Q5K {
    const QK: usize = 256;
    const BYTES: usize = 176;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        k4_dequant(b, &q5k_quants(&b[16..48], &b[48..176]), y);
    }
}

/// Q4_K and Q5_K from their quants in element order: `d1 * q - m1` per sub-block of 32, with
/// `d`, `dmin` and the packed scales at the start of the block.
#[inline(always)]
fn k4_dequant(b: &[u8], q: &[u8; 256], y: &mut [f32]) {
    // A finite `dmin` times a 6-bit integer is finite: no NaN offsets in this block.
    k4_body::<false>(b, q, y);
    if !h(b, 2).is_finite() {
        cold(|| k4_body::<true>(b, q, y));
    }
}

#[inline(always)]
fn k4_body<const CAREFUL: bool>(b: &[u8], q: &[u8; 256], y: &mut [f32]) {
    let d = h(b, 0);
    let min = h(b, 2);
    let scales = &b[4..16];
    let y = &mut y[..256];
    for j in 0..4 {
        let (sc, m) = scale_min_k4(2 * j, scales);
        let d1 = d * sc as f32;
        let m1 = min * m as f32;
        let (sc, m) = scale_min_k4(2 * j + 1, scales);
        let d2 = d * sc as f32;
        let m2 = min * m as f32;
        let q = &q[64 * j..64 * j + 64];
        let (lo, hi) = y[64 * j..64 * j + 64].split_at_mut(32);
        affine::<true, CAREFUL>(&q[..32], d1, m1, lo);
        affine::<true, CAREFUL>(&q[32..], d2, m2, hi);
    }
}

/// Q6_K quants in element order, unsigned (0..64, before the -32 offset), from `ql` (128
/// bytes) and `qh` (64 bytes).
#[inline(always)]
pub(crate) fn q6k_quants(b: &[u8]) -> [u8; 256] {
    let mut q = [0u8; 256];
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let out = &mut q[128 * n..128 * n + 128];
        for l in 0..32 {
            out[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            out[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    q
}

impl Block for Q6K {
    const QK: usize = 256;
    const BYTES: usize = 210;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 208);
        let q = q6k_quants(&b[0..192]);
        let sc = &b[192..208];
        let y = &mut y[..256];
        // Scale `is` covers elements 16*is..16*is+16; `d * sc[is] * q` in C: (d * sc) first.
        for is in 0..16 {
            let dl = d * sc[is] as i8 as f32;
            for l in 16 * is..16 * is + 16 {
                y[l] = dl * (q[l] as i32 - 32) as f32;
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
        block_boundary();
        B::dequant(b, y);
    }
}

/// Decodes scalars of `W` bytes each through fixed-size chunks, so that the loads combine and
/// the conversion vectorizes.
#[inline(always)]
pub(crate) fn scalar_row<const W: usize>(
    src: &[u8],
    dst: &mut [f32],
    get: impl Fn([u8; W]) -> f32 + Copy,
) {
    let full = dst.len() / 32 * 32;
    let (head, tail) = dst.split_at_mut(full);
    for (b, y) in src.chunks_exact(32 * W).zip(head.chunks_exact_mut(32)) {
        for i in 0..32 {
            let mut v = [0u8; W];
            v.copy_from_slice(&b[W * i..W * i + W]);
            y[i] = get(v);
        }
    }
    for (b, y) in src[full * W..].chunks_exact(W).zip(tail.iter_mut()) {
        let mut v = [0u8; W];
        v.copy_from_slice(b);
        *y = get(v);
    }
}

#[inline(always)]
pub(crate) fn row_f16(src: &[u8], dst: &mut [f32]) {
    scalar_row::<2>(src, dst, |b| f16_to_f32(u16::from_le_bytes(b)));
}

#[inline(always)]
pub(crate) fn row_bf16(src: &[u8], dst: &mut [f32]) {
    scalar_row::<2>(src, dst, |b| bf16_to_f32(u16::from_le_bytes(b)));
}

#[inline(always)]
pub(crate) fn row_f32(src: &[u8], dst: &mut [f32]) {
    scalar_row::<4>(src, dst, f32::from_le_bytes);
}
