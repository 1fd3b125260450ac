//! Dequantization of ggml block formats to `f32`, written from the ggml block layouts.
//!
//! These are the scalar reference routines: exact, portable and simple. Fast kernels elsewhere
//! are tested against them, and they are tested against the `gguf` Python package.

use crate::error::GgufError;
use crate::types::GgmlType;

/// IEEE half precision to single precision.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: normalise the mantissa
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            let e = 127 - 15 + 1 - shift;
            sign | (e << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Single precision to IEEE half precision, rounding to nearest even.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1 << shift) - 1);
        let mut out = m >> shift;
        if rem > half || (rem == half && out & 1 == 1) {
            out += 1;
        }
        return sign | out as u16;
    }
    let mut out = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && out & 1 == 1) {
        out += 1;
    }
    sign | out as u16
}

#[inline]
fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

#[inline]
fn le16(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

#[inline]
fn half(b: &[u8], i: usize) -> f32 {
    f16_to_f32(le16(b, i))
}

/// Dequantize `src`, a whole number of blocks of type `ty`, into `dst`, which must hold exactly
/// the number of elements those blocks encode.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), GgufError> {
    let bs = ty.block_size() as usize;
    let ts = ty.type_size() as usize;
    if !ty.can_dequantize() {
        return Err(GgufError::UnsupportedType(ty.to_string()));
    }
    if !src.len().is_multiple_of(ts) || dst.len() != src.len() / ts * bs {
        return Err(GgufError::BadTensor {
            name: format!("<{ty} buffer>"),
            problem: format!(
                "{} bytes do not dequantize to {} elements",
                src.len(),
                dst.len()
            ),
        });
    }
    for (b, y) in src.chunks_exact(ts).zip(dst.chunks_exact_mut(bs)) {
        dequantize_block(ty, b, y);
    }
    Ok(())
}

/// Dequantize one block. `b` is `ty.type_size()` bytes and `y` `ty.block_size()` elements.
/// Types that cannot be dequantized fill `y` with NaN.
///
/// # Panics
///
/// When `b` or `y` is shorter than that: this is the hot path for callers that have already
/// checked their buffers (as [`dequantize`] does). Callers holding unchecked input use
/// [`dequantize`]. Inlined into callers, so those compiled for wider vector units (the model
/// kernels) vectorise its loops.
#[inline(always)]
pub fn dequantize_block(ty: GgmlType, b: &[u8], y: &mut [f32]) {
    match ty {
        GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => y[0] = half(b, 0),
        GgmlType::BF16 => y[0] = bf16_to_f32(le16(b, 0)),
        GgmlType::Q4_0 => {
            let d = half(b, 0);
            let qs = &b[2..18];
            for j in 0..16 {
                y[j] = f32::from(i16::from(qs[j] & 0xf) - 8) * d;
                y[j + 16] = f32::from(i16::from(qs[j] >> 4) - 8) * d;
            }
        }
        GgmlType::Q4_1 => {
            let d = half(b, 0);
            let m = half(b, 2);
            let qs = &b[4..20];
            for j in 0..16 {
                y[j] = f32::from(qs[j] & 0xf) * d + m;
                y[j + 16] = f32::from(qs[j] >> 4) * d + m;
            }
        }
        GgmlType::Q5_0 => {
            let d = half(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let qs = &b[6..22];
            for j in 0..16 {
                let h0 = (((qh >> j) << 4) & 0x10) as u8;
                let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                y[j] = f32::from(i16::from((qs[j] & 0xf) | h0) - 16) * d;
                y[j + 16] = f32::from(i16::from((qs[j] >> 4) | h1) - 16) * d;
            }
        }
        GgmlType::Q5_1 => {
            let d = half(b, 0);
            let m = half(b, 2);
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let qs = &b[8..24];
            for j in 0..16 {
                let h0 = (((qh >> j) << 4) & 0x10) as u8;
                let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                y[j] = f32::from((qs[j] & 0xf) | h0) * d + m;
                y[j + 16] = f32::from((qs[j] >> 4) | h1) * d + m;
            }
        }
        GgmlType::Q8_0 => {
            let d = half(b, 0);
            for j in 0..32 {
                y[j] = f32::from(b[2 + j] as i8) * d;
            }
        }
        GgmlType::Q4_K => {
            let d = half(b, 0);
            let dmin = half(b, 2);
            let scales = &b[4..16];
            let qs = &b[16..144];
            for (n, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
                let (sc1, m1) = scale_min_k4(2 * n, scales);
                let (sc2, m2) = scale_min_k4(2 * n + 1, scales);
                let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
                let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
                for l in 0..32 {
                    y[l] = d1 * f32::from(q[l] & 0xf) - m1;
                    y[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
                }
            }
        }
        GgmlType::Q5_K => {
            let d = half(b, 0);
            let dmin = half(b, 2);
            let scales = &b[4..16];
            let qh = &b[16..48];
            let qs = &b[48..176];
            for (n, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
                let (sc1, m1) = scale_min_k4(2 * n, scales);
                let (sc2, m2) = scale_min_k4(2 * n + 1, scales);
                let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
                let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
                let u1 = 1u8 << (2 * n);
                let u2 = 2u8 << (2 * n);
                for l in 0..32 {
                    let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                    let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                    y[l] = d1 * f32::from((q[l] & 0xf) + h1) - m1;
                    y[l + 32] = d2 * f32::from((q[l] >> 4) + h2) - m2;
                }
            }
        }
        GgmlType::Q6_K => {
            let ql = &b[0..128];
            let qh = &b[128..192];
            let sc = &b[192..208];
            let d = half(b, 208);
            for n in 0..2 {
                let ql = &ql[64 * n..];
                let qh = &qh[32 * n..];
                let sc = &sc[8 * n..];
                let y = &mut y[128 * n..];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = i16::from((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
                    let q2 = i16::from((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    let q3 = i16::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    let q4 = i16::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
                    y[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
                    y[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
                    y[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
                }
            }
        }
        _ => y.fill(f32::NAN),
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Dequantize a whole tensor's data into a new vector.
pub fn dequantize_to_vec(ty: GgmlType, src: &[u8]) -> Result<Vec<f32>, GgufError> {
    let ts = ty.type_size() as usize;
    let n = src.len() / ts * ty.block_size() as usize;
    let mut out = vec![0.0; n];
    dequantize(ty, src, &mut out)?;
    Ok(out)
}
