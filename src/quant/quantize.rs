//! ggml's reference quantizers (ggml-quants.c `quantize_row_*_ref`), one block at a time.
//!
//! These are what `from_float_ref` does, i.e. how ggml writes weights (without an importance
//! matrix). Float expressions keep C's evaluation order: `w*x[i]*l` is `(w*x[i])*l`, no FMA
//! (ISO C11 build), float -> small-int casts go through a 32-bit truncating conversion
//! (`cvttss2si`) and keep the low byte.

use super::fp::{cvtt_i32, f16_to_f32, f32_to_f16_ggml, nearest_int};

const GROUP_MAX_EPS: f32 = 1e-15;

#[inline(always)]
fn put_f16(out: &mut [u8], at: usize, v: f32) {
    out[at..at + 2].copy_from_slice(&f32_to_f16_ggml(v).to_le_bytes());
}

/// Reads back an fp16 just written, as the C does with `GGML_FP16_TO_FP32(y[i].d)`.
#[inline(always)]
fn get_f16(out: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([out[at], out[at + 1]]))
}

pub(crate) fn q4_0(x: &[f32], y: &mut [u8]) {
    let x = &x[..32];
    let y = &mut y[..18];
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    for j in 0..16 {
        let x0 = x[j] * id;
        let x1 = x[16 + j] * id;
        let xi0 = 15.min(cvtt_i32(x0 + 8.5) as i8 as i32) as u8;
        let xi1 = 15.min(cvtt_i32(x1 + 8.5) as i8 as i32) as u8;
        y[2 + j] = xi0 | (xi1 << 4);
    }
}

pub(crate) fn q4_1(x: &[f32], y: &mut [u8]) {
    let x = &x[..32];
    let y = &mut y[..20];
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    for j in 0..16 {
        let x0 = (x[j] - min) * id;
        let x1 = (x[16 + j] - min) * id;
        let xi0 = 15.min(cvtt_i32(x0 + 0.5) as i8 as i32) as u8;
        let xi1 = 15.min(cvtt_i32(x1 + 0.5) as i8 as i32) as u8;
        y[4 + j] = xi0 | (xi1 << 4);
    }
}

pub(crate) fn q5_0(x: &[f32], y: &mut [u8]) {
    let x = &x[..32];
    let y = &mut y[..22];
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    let mut qh = 0u32;
    for j in 0..16 {
        let x0 = x[j] * id;
        let x1 = x[16 + j] * id;
        let xi0 = 31.min(cvtt_i32(x0 + 16.5) as i8 as i32) as u8;
        let xi1 = 31.min(cvtt_i32(x1 + 16.5) as i8 as i32) as u8;
        y[6 + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= ((xi0 as u32 & 0x10) >> 4) << j;
        qh |= ((xi1 as u32 & 0x10) >> 4) << (j + 16);
    }
    y[2..6].copy_from_slice(&qh.to_le_bytes());
}

pub(crate) fn q5_1(x: &[f32], y: &mut [u8]) {
    let x = &x[..32];
    let y = &mut y[..24];
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    let mut qh = 0u32;
    for j in 0..16 {
        let x0 = (x[j] - min) * id;
        let x1 = (x[16 + j] - min) * id;
        let xi0 = cvtt_i32(x0 + 0.5) as u8;
        let xi1 = cvtt_i32(x1 + 0.5) as u8;
        y[8 + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= ((xi0 as u32 & 0x10) >> 4) << j;
        qh |= ((xi1 as u32 & 0x10) >> 4) << (j + 16);
    }
    y[4..8].copy_from_slice(&qh.to_le_bytes());
}

pub(crate) fn q8_0(x: &[f32], y: &mut [u8]) {
    let x = &x[..32];
    let y = &mut y[..34];
    let mut amax = 0.0f32;
    for &v in x {
        // MAX(a, b) is `a > b ? a : b`.
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    for j in 0..32 {
        y[2 + j] = cvtt_i32((x[j] * id).round()) as u8;
    }
}

pub(crate) fn q8_1(x: &[f32], y: &mut [u8]) {
    let x = &x[..32];
    let y = &mut y[..36];
    let mut amax = 0.0f32;
    for &v in x {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    let mut sum = 0i32;
    for j in 0..16 {
        let q0 = cvtt_i32((x[j] * id).round()) as i8;
        let q1 = cvtt_i32((x[16 + j] * id).round()) as i8;
        y[4 + j] = q0 as u8;
        y[4 + 16 + j] = q1 as u8;
        sum += q0 as i32;
        sum += q1 as i32;
    }
    put_f16(y, 2, sum as f32 * d);
}

/// `quantize_row_q8_K_ref`; also what the CPU backend uses for activations of K-quant matmuls.
pub(crate) fn q8_k(x: &[f32], y: &mut [u8]) {
    let x = &x[..256];
    let y = &mut y[..292];
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax == 0.0 {
        y[0..4].copy_from_slice(&0f32.to_le_bytes());
        y[4..260].fill(0);
        // The C leaves bsums untouched here; zeroing them keeps the output a function of the
        // input (and equals ggml's result on a zeroed buffer).
        y[260..292].fill(0);
        return;
    }
    let iscale = -127.0 / max;
    let mut qs = [0i8; 256];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = 127.min(nearest_int(iscale * v)) as i8;
    }
    for (j, q) in qs.iter().enumerate() {
        y[4 + j] = *q as u8;
    }
    for j in 0..16 {
        let sum: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
        y[260 + 2 * j..262 + 2 * j].copy_from_slice(&(sum as i16).to_le_bytes());
    }
    y[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}

/// `make_qkx2_quants` of ggml-quants.c.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    l_out: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = l.clamp(0, nmax) as u8;
        let mut diff = scale * l_out[i] as f32 + min - x[i];
        diff = if use_mad { diff.abs() } else { diff * diff };
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let dd = sum_w * sum_l2 - sum_l * sum_l;
        if dd > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let mut diff = this_scale * laux[i] as f32 + this_min - x[i];
                diff = if use_mad { diff.abs() } else { diff * diff };
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `make_qx_quants` of ggml-quants.c with `qw == NULL`.
#[inline(always)]
fn make_qx_quants(x: &[f32], nmax: i32, l_out: &mut [i8], rmse_type: i32) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        for i in 0..n {
            let l = nearest_int(iscale * x[i]);
            l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let weight = |v: f32| -> f32 {
        match rmse_type {
            1 => v * v,
            2 => 1.0,
            3 => v.abs(),
            _ => v.abs().sqrt(),
        }
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = weight(x[i]);
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let lf = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1) as f32;
            let w = weight(x[i]);
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]);
                l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants` of ggml-quants.c.
#[inline(always)]
fn make_q3_quants(x: &[f32], nmax: i32, l_out: &mut [i8], do_rmse: bool) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0.0f32;
        let mut suml2 = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            l_out[i] = l as i8;
            let w = x[i] * x[i];
            let lf = l as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        for _ in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let li = l_out[i] as f32;
                let mut slx = sumlx - w * x[i] * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != l_out[i] as i32 {
                        let nl = new_l as f32;
                        slx += w * x[i] * nl;
                        sl2 += w * nl * nl;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l_out[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for l in l_out[..n].iter_mut() {
            *l += nmax as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
    }
    1.0 / iscale
}

pub(crate) fn q2_k(x: &[f32], y: &mut [u8]) {
    let x = &x[..256];
    let y = &mut y[..84];
    let mut big_l = [0u8; 256];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; 16];
    let mut scales = [0f32; 16];
    let q4scale = 15.0f32;

    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        for l in 0..16 {
            weights[l] = xs[l].abs();
        }
        let (scale, min) = make_qkx2_quants(
            xs,
            &weights,
            3,
            &mut big_l[16 * j..16 * j + 16],
            &mut laux,
            -0.5,
            0.1,
            15,
            true,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let (sc_bytes, rest) = y.split_at_mut(16);
    if max_scale > 0.0 {
        let iscale = q4scale / max_scale;
        for j in 0..16 {
            sc_bytes[j] = nearest_int(iscale * scales[j]) as u8;
        }
        put_f16(rest, 64, max_scale / q4scale);
    } else {
        sc_bytes.fill(0);
        put_f16(rest, 64, 0.0);
    }
    if max_min > 0.0 {
        let iscale = q4scale / max_min;
        for j in 0..16 {
            let l = nearest_int(iscale * mins[j]);
            sc_bytes[j] |= (l << 4) as u8;
        }
        put_f16(rest, 66, max_min / q4scale);
    } else {
        put_f16(rest, 66, 0.0);
    }
    let dd = get_f16(rest, 64);
    let dmin = get_f16(rest, 66);
    for j in 0..16 {
        let d = dd * (sc_bytes[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * (sc_bytes[j] >> 4) as f32;
        for ii in 0..16 {
            let l = nearest_int((x[16 * j + ii] + dm) / d);
            big_l[16 * j + ii] = l.clamp(0, 3) as u8;
        }
    }
    let qs = &mut rest[..64];
    for j in (0..256).step_by(128) {
        for l in 0..32 {
            qs[j / 4 + l] = big_l[j + l]
                | (big_l[j + l + 32] << 2)
                | (big_l[j + l + 64] << 4)
                | (big_l[j + l + 96] << 6);
        }
    }
}

pub(crate) fn q3_k(x: &[f32], y: &mut [u8]) {
    let x = &x[..256];
    let y = &mut y[..110];
    let mut big_l = [0i8; 256];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut amax = 0.0f32;
    for j in 0..16 {
        scales[j] = make_q3_quants(
            &x[16 * j..16 * j + 16],
            4,
            &mut big_l[16 * j..16 * j + 16],
            true,
        );
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }
    // hmask 0..32, qs 32..96, scales 96..108, d 108..110
    y[96..108].fill(0);
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..16 {
            let l = nearest_int(iscale * scales[j]) as i8 as i32;
            let l = l.clamp(-32, 31) + 32;
            if j < 8 {
                y[96 + j] = (l & 0xF) as u8;
            } else {
                y[96 + j - 8] |= ((l & 0xF) << 4) as u8;
            }
            let l = l >> 4;
            y[96 + j % 4 + 8] |= (l << (2 * (j / 4))) as u8;
        }
        put_f16(y, 108, 1.0 / iscale);
    } else {
        put_f16(y, 108, 0.0);
    }
    let dd = get_f16(y, 108);
    for j in 0..16 {
        let sc = if j < 8 {
            y[96 + j] & 0xF
        } else {
            y[96 + j - 8] >> 4
        } as i8;
        let sc = (sc | ((((y[96 + 8 + j % 4] >> (2 * (j / 4))) & 3) << 4) as i8)).wrapping_sub(32);
        let d = dd * sc as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
            big_l[16 * j + ii] = (l + 4) as i8;
        }
    }
    y[0..32].fill(0);
    let mut m = 0usize;
    let mut hm: u8 = 1;
    for l in big_l.iter_mut() {
        if *l > 3 {
            y[m] |= hm;
            *l -= 4;
        }
        m += 1;
        if m == 32 {
            m = 0;
            hm = hm.wrapping_shl(1);
        }
    }
    for j in (0..256).step_by(128) {
        for l in 0..32 {
            let lv = |k: usize| big_l[j + l + k] as u8;
            y[32 + j / 4 + l] = lv(0) | (lv(32) << 2) | (lv(64) << 4) | (lv(96) << 6);
        }
    }
}

/// Shared scale search of Q4_K and Q5_K (`nmax` 15 or 31); fills `scales` (12 bytes), d and
/// dmin, and returns the quant levels.
#[inline(always)]
fn k4_levels(
    x: &[f32],
    y_scales: &mut [u8],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (f32, f32, [u8; 256]) {
    let mut big_l = [0u8; 256];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; 8];
    let mut scales = [0f32; 8];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for l in 0..32 {
            weights[l] = av_x + xs[l].abs();
        }
        let (scale, min) = make_qkx2_quants(
            xs,
            &weights,
            nmax,
            &mut big_l[32 * j..32 * j + 32],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let s = &mut y_scales[..12];
    for j in 0..8 {
        let ls = 63.min(nearest_int(inv_scale * scales[j]) as u8);
        let lm = 63.min(nearest_int(inv_min * mins[j]) as u8);
        if j < 4 {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
    (max_scale / 63.0, max_min / 63.0, big_l)
}

pub(crate) fn q4_k(x: &[f32], y: &mut [u8]) {
    use super::dequant::scale_min_k4;
    let x = &x[..256];
    let y = &mut y[..144];
    let (d, dmin, mut big_l) = k4_levels(x, &mut y[4..16], 15, -1.0, 20);
    put_f16(y, 0, d);
    put_f16(y, 2, dmin);
    let dd = get_f16(y, 0);
    let ddmin = get_f16(y, 2);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &y[4..16]);
        let d = dd * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = ddmin * m as f32;
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / d);
            big_l[32 * j + ii] = l.clamp(0, 15) as u8;
        }
    }
    let qs = &mut y[16..144];
    for (n, j) in (0..256).step_by(64).enumerate() {
        for l in 0..32 {
            qs[32 * n + l] = big_l[j + l] | (big_l[j + l + 32] << 4);
        }
    }
}

pub(crate) fn q5_k(x: &[f32], y: &mut [u8]) {
    use super::dequant::scale_min_k4;
    let x = &x[..256];
    let y = &mut y[..176];
    let (d, dmin, mut big_l) = k4_levels(x, &mut y[4..16], 31, -0.5, 15);
    put_f16(y, 0, d);
    put_f16(y, 2, dmin);
    let dd = get_f16(y, 0);
    let ddmin = get_f16(y, 2);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &y[4..16]);
        let d = dd * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = ddmin * m as f32;
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / d);
            big_l[32 * j + ii] = l.clamp(0, 31) as u8;
        }
    }
    // qh 16..48, qs 48..176
    y[16..48].fill(0);
    let mut m1: u8 = 1;
    let mut m2: u8 = 2;
    for (blk, n) in (0..256).step_by(64).enumerate() {
        for j in 0..32 {
            let mut l1 = big_l[n + j];
            if l1 > 15 {
                l1 -= 16;
                y[16 + j] |= m1;
            }
            let mut l2 = big_l[n + j + 32];
            if l2 > 15 {
                l2 -= 16;
                y[16 + j] |= m2;
            }
            y[48 + 32 * blk + j] = l1 | (l2 << 4);
        }
        m1 = m1.wrapping_shl(2);
        m2 = m2.wrapping_shl(2);
    }
}

pub(crate) fn q6_k(x: &[f32], y: &mut [u8]) {
    let x = &x[..256];
    let y = &mut y[..210];
    let mut big_l = [0i8; 256];
    let mut scales = [0f32; 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..16 {
        let scale = make_qx_quants(
            &x[16 * ib..16 * ib + 16],
            32,
            &mut big_l[16 * ib..16 * ib + 16],
            1,
        );
        scales[ib] = scale;
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    // ql 0..128, qh 128..192, scales 192..208, d 208..210
    if max_abs_scale < GROUP_MAX_EPS {
        y.fill(0);
        put_f16(y, 208, 0.0);
        return;
    }
    let iscale = -128.0 / max_scale;
    put_f16(y, 208, 1.0 / iscale);
    for ib in 0..16 {
        y[192 + ib] = 127.min(nearest_int(iscale * scales[ib])) as i8 as u8;
    }
    let dd = get_f16(y, 208);
    for j in 0..16 {
        let d = dd * y[192 + j] as i8 as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
            big_l[16 * j + ii] = (l + 32) as i8;
        }
    }
    for (n, j) in (0..256).step_by(128).enumerate() {
        for l in 0..32 {
            let lv = |k: usize| big_l[j + l + k] as u8;
            let q1 = lv(0) & 0xF;
            let q2 = lv(32) & 0xF;
            let q3 = lv(64) & 0xF;
            let q4 = lv(96) & 0xF;
            y[64 * n + l] = q1 | (q3 << 4);
            y[64 * n + l + 32] = q2 | (q4 << 4);
            y[128 + 32 * n + l] =
                (lv(0) >> 4) | ((lv(32) >> 4) << 2) | ((lv(64) >> 4) << 4) | ((lv(96) >> 4) << 6);
        }
    }
}

/// `ggml_fp32_to_fp16_row`.
pub(crate) fn row_f16(x: &[f32], y: &mut [u8]) {
    for (v, out) in x.iter().zip(y.chunks_exact_mut(2)) {
        out.copy_from_slice(&f32_to_f16_ggml(*v).to_le_bytes());
    }
}

/// `ggml_fp32_to_bf16_row_ref`.
pub(crate) fn row_bf16(x: &[f32], y: &mut [u8]) {
    for (v, out) in x.iter().zip(y.chunks_exact_mut(2)) {
        out.copy_from_slice(&super::fp::f32_to_bf16(*v).to_le_bytes());
    }
}

pub(crate) fn row_f32(x: &[f32], y: &mut [u8]) {
    for (v, out) in x.iter().zip(y.chunks_exact_mut(4)) {
        out.copy_from_slice(&v.to_le_bytes());
    }
}
