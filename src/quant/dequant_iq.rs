//! Block dequantizers of the I-quants, the ternary and the FP4 formats, as ggml-quants.c
//! `dequantize_row_*` computes them (multiplications in the order of the C, no contraction).
//! The grids and sign tables are ggml-common.h's, generated at build time (see `tables.rs`).

use super::dequant::Block;
use super::fp::{h, le_u16, le_u32};
use super::tables::{
    byte_u32, byte_u64, IQ1M_DELTA, IQ1S_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID,
    IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS, KVALUES_FP4, KVALUES_IQ4NL,
};

macro_rules! marker {
    ($($name:ident),*) => { $( pub(crate) struct $name; )* };
}
marker!(IQ4NL, IQ4XS, MXFP4, IQ2XXS, IQ2XS, IQ2S, IQ3XXS, IQ3S, IQ1S, IQ1M, TQ1_0, TQ2_0);

/// `GGML_E8M0_TO_FP32_HALF`: 2^(e-128), subnormal for e < 2.
#[inline(always)]
pub(crate) fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// The `± 1.f` factor of the sign-table formats: bit `j` of `signs` set means negative.
#[inline(always)]
fn sign(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

/// Eight values `db * grid[j] * sign` of one grid entry.
#[inline(always)]
fn grid8(y: &mut [f32], db: f32, grid: u64, signs: u8) {
    for j in 0..8 {
        y[j] = db * byte_u64(grid, j) as f32 * sign(signs, j);
    }
}

/// The 4-bit index pairs of 16 bytes through a value table: low nibbles then high nibbles.
#[inline(always)]
pub(crate) fn nl_values(qs: &[u8], table: &[i8; 16]) -> [i8; 32] {
    let qs = &qs[..16];
    let mut v = [0i8; 32];
    for j in 0..16 {
        v[j] = table[(qs[j] & 0xF) as usize];
        v[j + 16] = table[(qs[j] >> 4) as usize];
    }
    v
}

impl Block for IQ4NL {
    const QK: usize = 32;
    const BYTES: usize = 18;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let v = nl_values(&b[2..18], &KVALUES_IQ4NL);
        for j in 0..32 {
            y[j] = d * v[j] as f32;
        }
    }
}

/// The 6-bit scale of 32-block `ib` of an IQ4_XS block, before the -32 offset.
#[inline(always)]
pub(crate) fn iq4xs_scale(b: &[u8], ib: usize) -> i32 {
    let sh = le_u16(b, 2);
    let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF;
    let hi = ((sh >> (2 * ib)) & 3) as u8;
    (lo | (hi << 4)) as i32
}

impl Block for IQ4XS {
    const QK: usize = 256;
    const BYTES: usize = 136;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        for ib in 0..8 {
            let dl = d * (iq4xs_scale(b, ib) - 32) as f32;
            let v = nl_values(&b[8 + 16 * ib..], &KVALUES_IQ4NL);
            for j in 0..32 {
                y[32 * ib + j] = dl * v[j] as f32;
            }
        }
    }
}

impl Block for MXFP4 {
    const QK: usize = 32;
    const BYTES: usize = 17;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = e8m0_half(b[0]);
        let v = nl_values(&b[1..17], &KVALUES_FP4);
        for j in 0..32 {
            y[j] = v[j] as f32 * d;
        }
    }
}

impl Block for IQ2XXS {
    const QK: usize = 256;
    const BYTES: usize = 66;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        for ib in 0..8 {
            let a0 = le_u32(b, 2 + 8 * ib);
            let a1 = le_u32(b, 6 + 8 * ib);
            let db = d * (0.5 + (a1 >> 28) as f32) * 0.25;
            for l in 0..4 {
                let grid = IQ2XXS_GRID[byte_u32(a0, l) as usize];
                let signs = KSIGNS_IQ2XS[((a1 >> (7 * l)) & 127) as usize];
                grid8(&mut y[32 * ib + 8 * l..], db, grid, signs);
            }
        }
    }
}

impl Block for IQ2XS {
    const QK: usize = 256;
    const BYTES: usize = 74;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        for ib in 0..8 {
            let sc = b[66 + ib];
            let db = [
                d * (0.5 + (sc & 0xF) as f32) * 0.25,
                d * (0.5 + (sc >> 4) as f32) * 0.25,
            ];
            for l in 0..4 {
                let q = le_u16(b, 2 + 2 * (4 * ib + l));
                let grid = IQ2XS_GRID[(q & 511) as usize];
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                grid8(&mut y[32 * ib + 8 * l..], db[l / 2], grid, signs);
            }
        }
    }
}

impl Block for IQ2S {
    const QK: usize = 256;
    const BYTES: usize = 82;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let qs = &b[2..34];
        let signs = &b[34..66];
        let qh = &b[66..74];
        let scales = &b[74..82];
        for ib in 0..8 {
            let sc = scales[ib];
            let db = [
                d * (0.5 + (sc & 0xF) as f32) * 0.25,
                d * (0.5 + (sc >> 4) as f32) * 0.25,
            ];
            for l in 0..4 {
                let idx = qs[4 * ib + l] as usize | (((qh[ib] as usize) << (8 - 2 * l)) & 0x300);
                grid8(
                    &mut y[32 * ib + 8 * l..],
                    db[l / 2],
                    IQ2S_GRID[idx],
                    signs[4 * ib + l],
                );
            }
        }
    }
}

/// Four values `db * grid[j] * sign` of a 3-bit grid entry, signs from bits `s0..s0+4`.
#[inline(always)]
fn grid4(y: &mut [f32], db: f32, grid: u32, signs: u8, s0: usize) {
    for j in 0..4 {
        y[j] = db * byte_u32(grid, j) as f32 * sign(signs, s0 + j);
    }
}

impl Block for IQ3XXS {
    const QK: usize = 256;
    const BYTES: usize = 98;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let qs = &b[2..66];
        for ib in 0..8 {
            let aux = le_u32(b, 66 + 4 * ib);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let g1 = IQ3XXS_GRID[qs[8 * ib + 2 * l] as usize];
                let g2 = IQ3XXS_GRID[qs[8 * ib + 2 * l + 1] as usize];
                let o = 32 * ib + 8 * l;
                grid4(&mut y[o..], db, g1, signs, 0);
                grid4(&mut y[o + 4..], db, g2, signs, 4);
            }
        }
    }
}

impl Block for IQ3S {
    const QK: usize = 256;
    const BYTES: usize = 110;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let qs = &b[2..66];
        let qh = &b[66..74];
        let signs = &b[74..106];
        let scales = &b[106..110];
        for ib in 0..8 {
            let sc = scales[ib / 2];
            let s = if ib % 2 == 0 { sc & 0xF } else { sc >> 4 };
            let db = d * (1 + 2 * s as i32) as f32;
            let h = qh[ib] as usize;
            for l in 0..4 {
                let i1 = qs[8 * ib + 2 * l] as usize | ((h << (8 - 2 * l)) & 256);
                let i2 = qs[8 * ib + 2 * l + 1] as usize | ((h << (7 - 2 * l)) & 256);
                let sg = signs[4 * ib + l];
                let o = 32 * ib + 8 * l;
                grid4(&mut y[o..], db, IQ3S_GRID[i1], sg, 0);
                grid4(&mut y[o + 4..], db, IQ3S_GRID[i2], sg, 4);
            }
        }
    }
}

/// Eight values `dl * (grid[j] + delta)` of a signed 1-bit grid entry.
#[inline(always)]
fn grid1(y: &mut [f32], dl: f32, grid: u64, delta: f32) {
    for j in 0..8 {
        y[j] = dl * (byte_u64(grid, j) as i8 as f32 + delta);
    }
}

impl Block for IQ1S {
    const QK: usize = 256;
    const BYTES: usize = 50;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 0);
        let qs = &b[2..34];
        for ib in 0..8 {
            let qh = le_u16(b, 34 + 2 * ib);
            let dl = d * (2 * ((qh >> 12) & 7) as i32 + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for l in 0..4 {
                let idx = qs[4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                grid1(&mut y[32 * ib + 8 * l..], dl, IQ1S_GRID[idx], delta);
            }
        }
    }
}

/// The fp16 super-block scale of an IQ1_M block, spread over the top nibbles of its scales.
#[inline(always)]
pub(crate) fn iq1m_scale(sc: &[u16; 4]) -> u16 {
    (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000)
}

impl Block for IQ1M {
    const QK: usize = 256;
    const BYTES: usize = 56;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let qs = &b[0..32];
        let qh = &b[32..48];
        let sc = [le_u16(b, 48), le_u16(b, 50), le_u16(b, 52), le_u16(b, 54)];
        let d = super::fp::f16_to_f32(iq1m_scale(&sc));
        for ib in 0..8 {
            let s = sc[ib / 2];
            let dl1 = d * (2 * ((s >> (6 * (ib % 2))) & 7) as i32 + 1) as f32;
            let dl2 = d * (2 * ((s >> (6 * (ib % 2) + 3)) & 7) as i32 + 1) as f32;
            let (h0, h1) = (qh[2 * ib] as usize, qh[2 * ib + 1] as usize);
            let q = &qs[4 * ib..4 * ib + 4];
            let idx = [
                q[0] as usize | ((h0 << 8) & 0x700),
                q[1] as usize | ((h0 << 4) & 0x700),
                q[2] as usize | ((h1 << 8) & 0x700),
                q[3] as usize | ((h1 << 4) & 0x700),
            ];
            let dm = |bit: bool| if bit { -IQ1M_DELTA } else { IQ1M_DELTA };
            let delta = [
                dm(h0 & 0x08 != 0),
                dm(h0 & 0x80 != 0),
                dm(h1 & 0x08 != 0),
                dm(h1 & 0x80 != 0),
            ];
            for l in 0..4 {
                let dl = if l < 2 { dl1 } else { dl2 };
                grid1(&mut y[32 * ib + 8 * l..], dl, IQ1S_GRID[idx[l]], delta[l]);
            }
        }
    }
}

/// The ternary digit `n` (0..5) of a TQ1_0 byte: `((q * 3^n mod 256) * 3) >> 8`.
#[inline(always)]
pub(crate) fn trit(q: u8, n: usize) -> i32 {
    const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
    let q = q.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as i32
}

/// The 256 TQ1_0 digits (0, 1, 2) of a block in element order.
#[inline(always)]
pub(crate) fn tq1_digits(b: &[u8]) -> [i8; 256] {
    let qs = &b[0..48];
    let qh = &b[48..52];
    let mut q = [0i8; 256];
    let mut k = 0;
    for n in 0..5 {
        for m in 0..32 {
            q[k] = trit(qs[m], n) as i8;
            k += 1;
        }
    }
    for n in 0..5 {
        for m in 0..16 {
            q[k] = trit(qs[32 + m], n) as i8;
            k += 1;
        }
    }
    for n in 0..4 {
        for j in 0..4 {
            q[k] = trit(qh[j], n) as i8;
            k += 1;
        }
    }
    q
}

impl Block for TQ1_0 {
    const QK: usize = 256;
    const BYTES: usize = 54;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 52);
        let q = tq1_digits(b);
        for j in 0..256 {
            y[j] = (q[j] as i32 - 1) as f32 * d;
        }
    }
}

/// The 256 TQ2_0 digits (0..=3) of a block in element order.
#[inline(always)]
pub(crate) fn tq2_digits(b: &[u8]) -> [u8; 256] {
    let qs = &b[0..64];
    let mut q = [0u8; 256];
    for j in 0..2 {
        for l in 0..4 {
            for m in 0..32 {
                q[128 * j + 32 * l + m] = (qs[32 * j + m] >> (2 * l)) & 3;
            }
        }
    }
    q
}

impl Block for TQ2_0 {
    const QK: usize = 256;
    const BYTES: usize = 66;
    #[inline(always)]
    fn dequant(b: &[u8], y: &mut [f32]) {
        let d = h(b, 64);
        let q = tq2_digits(b);
        for j in 0..256 {
            y[j] = (q[j] as i32 - 1) as f32 * d;
        }
    }
}
