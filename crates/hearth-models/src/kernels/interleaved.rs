#![expect(
    unsafe_code,
    reason = "calls into #[target_feature] AVX-512 VNNI kernels after run-time detection"
)]

//! Integer products of tokens with row-interleaved 4- and 8-bit weights (every pass, where the
//! CPU has AVX-512 VNNI).
//!
//! At load, the repacked Q4_0, Q4_1 (and Q4_K as Q4_1), Q8_0, Q5_K and Q6_K blocks (the last two
//! as bytes, see [`pack_q5_k`] and [`pack_q6_k`]) of every [`GROUP`] consecutive rows are
//! interleaved so that one 512-bit register holds the same two columns of all sixteen rows as
//! 16-bit integers (after a shift and a mask). Each token's activations are quantized per block
//! of 32 to 16-bit integers (scale `max |x| / 32767`, so the relative error of each activation is
//! at most 1.5e-5 of its block's largest) together with the exact float sum of the block. One
//! `vpdpwssd` then does 32 multiply-adds (sixteen rows × two columns, the token's pair of
//! activations broadcast) — twice the work of a float FMA — and each block's integer sums are
//! scaled once per block: `Σ_b d_w·d_x·Σ q_w·q_x + m_w·Σ x` (Q6_K: two scales, one per 16
//! columns, and no offset).
//!
//! The AVX-512 VNNI kernel is exact integer arithmetic followed by the same float operations, in
//! the same order, as [`group_scalar`], the portable reference the tests hold it to bit for bit.

use std::sync::OnceLock;

use hearth_gguf::GgmlType;
use rayon::prelude::*;

use super::{ThreadPool, packed_block_bytes};

/// Rows interleaved together.
pub const GROUP: usize = 16;
/// Most tokens one kernel call multiplies with a group's unpacked weights.
pub const MAX_TOKENS: usize = 8;

/// Bytes of one packed block of 32 columns that [`interleave`] takes: those of
/// [`packed_block_bytes`], and for the K-quants with more than 4 bits their own: two f32 (Q6_K:
/// the scales of columns 0..16 and 16..32; Q5_K: scale and offset) and 32 bytes (see
/// [`pack_q6_k`], [`pack_q5_k`]).
fn packed_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::Q6_K | GgmlType::Q5_K => Some(4 + 4 + 32),
        _ => packed_block_bytes(ty),
    }
}

/// Bytes of one block of [`GROUP`] interleaved rows (the same as `GROUP` packed blocks): f32
/// scales of the sixteen rows (and their f32 offsets for Q4_1, or their second scales for
/// Q6_K), then the quantized columns.
pub fn record_bytes(ty: GgmlType) -> Option<usize> {
    packed_bytes(ty)
        .filter(|_| {
            matches!(
                ty,
                GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 | GgmlType::Q6_K | GgmlType::Q5_K
            )
        })
        .map(|pb| pb * GROUP)
}

/// Where a format's quantized columns start in a record.
fn quants_at(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_1 | GgmlType::Q6_K | GgmlType::Q5_K => 2 * 4 * GROUP,
        _ => 4 * GROUP,
    }
}

/// Whether a format's quantized columns are signed bytes (else nibbles).
fn bytes_wide(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q8_0 | GgmlType::Q6_K | GgmlType::Q5_K)
}

/// Q5_K blocks (256 elements: f16 `d` and `dmin`, twelve bytes of 6-bit scales and mins, 32
/// bytes of fifth bits, 128 of nibbles) as the packed blocks of 32 that [`interleave`] takes:
/// scale `d·sc` and offset `−dmin·m` as f32, then the 32 values (0..32) as bytes. The values
/// are those of ggml's dequantization, `d·sc·q − dmin·m`, as the same floats.
pub fn pack_q5_k(src: &[u8]) -> Vec<u8> {
    let f16 = |b: &[u8]| hearth_gguf::quants::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    let mut out = Vec::with_capacity(src.len() / 176 * 8 * 40);
    for b in src.chunks_exact(176) {
        let (d, dmin) = (f16(&b[0..]), f16(&b[2..]));
        let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
        for (n, q) in qs.chunks_exact(32).enumerate() {
            for (j, shift) in [(2 * n, 0), (2 * n + 1, 4)] {
                let (sc, m) = hearth_gguf::quants::scale_min_k4(j, scales);
                out.extend_from_slice(&(d * f32::from(sc)).to_le_bytes());
                out.extend_from_slice(&(-(dmin * f32::from(m))).to_le_bytes());
                out.extend((0..32).map(|l| ((q[l] >> shift) & 0xf) + 16 * ((qh[l] >> j) & 1)));
            }
        }
    }
    out
}

/// Q6_K blocks (256 elements: 128 bytes of low nibbles, 64 of high bit pairs, 16 signed 8-bit
/// scales, f16 `d`) as the packed blocks of 32 that [`interleave`] takes: scales `d·sc` of
/// columns 0..16 and 16..32, then the 32 values `q − 32` as signed bytes. The values are those
/// of ggml's dequantization, `d·sc·(q − 32)`, as the same floats.
pub fn pack_q6_k(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / 210 * 8 * 40);
    for b in src.chunks_exact(210) {
        let d = hearth_gguf::quants::f16_to_f32(u16::from_le_bytes([b[208], b[209]]));
        for n in 0..2 {
            let (ql, qh, sc) = (&b[64 * n..], &b[128 + 32 * n..], &b[192 + 8 * n..]);
            // Block k of this half: elements 32k + l (l < 32), scales sc[2k] and sc[2k + 1];
            // low nibbles from byte l (+ 32 for k = 1, 3), low (k = 0, 1) or high half.
            for k in 0..4 {
                for h in 0..2 {
                    out.extend_from_slice(&(d * f32::from(sc[2 * k + h] as i8)).to_le_bytes());
                }
                out.extend((0..32).map(|l| {
                    let byte = ql[l + 32 * (k % 2)];
                    let low = if k < 2 { byte & 0xf } else { byte >> 4 };
                    let high = (qh[l] >> (2 * k)) & 3;
                    (i16::from(low | (high << 4)) - 32) as i8 as u8
                }));
            }
        }
    }
    out
}

/// Whether this CPU runs the AVX-512 VNNI kernel (checked once), and the process did not force
/// narrower kernels.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| super::simd::Kernels::get().isa == super::simd::Isa::Avx512 && detect_vnni())
}

fn detect_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Quantized column `e` (0..32) of a packed block of `ty` whose quantized bytes are `qs`, as
/// stored (nibbles 0..15, or signed bytes).
fn quant(ty: GgmlType, qs: &[u8], e: usize) -> i16 {
    match ty {
        GgmlType::Q8_0 | GgmlType::Q6_K | GgmlType::Q5_K => i16::from(qs[e] as i8),
        _ if e < 16 => i16::from(qs[e] & 0xf),
        _ => i16::from(qs[e - 16] >> 4),
    }
}

/// Interleave `rows` packed rows (`packed` from [`super::pack_blocks`]) of `cols` columns into
/// groups of [`GROUP`] rows (the last group padded with zero rows). `None` for other formats or
/// widths that are not a multiple of 32.
pub fn interleave(ty: GgmlType, packed: &[u8], rows: usize, cols: usize) -> Option<Vec<u8>> {
    let rec = record_bytes(ty)?;
    let pb = packed_bytes(ty)?;
    if !cols.is_multiple_of(32) || packed.len() != rows * cols / 32 * pb {
        return None;
    }
    let blocks = cols / 32;
    let groups = rows.div_ceil(GROUP);
    let scales = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q6_K | GgmlType::Q5_K) {
        2
    } else {
        1
    };
    let qa = quants_at(ty);
    let mut out = vec![0u8; groups * blocks * rec];
    // Groups are independent: built in parallel (loading a large model is otherwise seconds of
    // one core's work).
    out.par_chunks_mut(blocks * rec)
        .enumerate()
        .for_each(|(g, og)| {
            for b in 0..blocks {
                let r_out = &mut og[b * rec..][..rec];
                for i in 0..GROUP {
                    let r = g * GROUP + i;
                    if r >= rows {
                        break;
                    }
                    let src = &packed[(r * blocks + b) * pb..][..pb];
                    for s in 0..scales {
                        r_out[s * 4 * GROUP + 4 * i..][..4].copy_from_slice(&src[4 * s..4 * s + 4]);
                    }
                    let qs = &src[4 * scales..];
                    let q: [u16; 32] = std::array::from_fn(|e| quant(ty, qs, e) as u16);
                    // Lane (row i, column parity j) of 16 bits: for Q4, register m holds column
                    // pairs 4m..4m+4 as four nibbles; for Q8_0, register m holds pairs 2m, 2m+1 as
                    // two bytes.
                    let (per_reg, regs, bits) = if bytes_wide(ty) { (2, 8, 8) } else { (4, 4, 4) };
                    let mask = (1u16 << bits) - 1;
                    for m in 0..regs {
                        for j in 0..2 {
                            let mut lane: u16 = 0;
                            for s in 0..per_reg {
                                lane |= (q[2 * (per_reg * m + s) + j] & mask) << (bits * s);
                            }
                            let at = qa + m * 64 + (2 * i + j) * 2;
                            r_out[at..at + 2].copy_from_slice(&lane.to_le_bytes());
                        }
                    }
                }
            }
        });
    Some(out)
}

/// Dequantize row `i` (0..[`GROUP`]) of the group whose records are `recs` into `out` (a
/// multiple of 32 floats, one block per record): the inverse of [`interleave`] for one row.
pub fn dequantize_row(ty: GgmlType, recs: &[u8], i: usize, out: &mut [f32]) {
    let (Some(rec), true) = (record_bytes(ty), i < GROUP) else {
        out.fill(f32::NAN);
        return;
    };
    let qa = quants_at(ty);
    let (per_reg, bits) = if bytes_wide(ty) { (2, 8) } else { (4, 4) };
    let f32_at = |b: &[u8], at: usize| f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    for (r, y) in recs.chunks_exact(rec).zip(out.chunks_exact_mut(32)) {
        let d0 = f32_at(r, 4 * i);
        let m = match ty {
            GgmlType::Q4_1 | GgmlType::Q5_K => f32_at(r, 4 * GROUP + 4 * i),
            GgmlType::Q4_0 => -8.0 * d0,
            _ => 0.0,
        };
        for (k, pair) in y.chunks_exact_mut(2).enumerate() {
            let (reg, s) = (k / per_reg, k % per_reg);
            // Q6_K's second 16 columns have their own scales.
            let d = if ty == GgmlType::Q6_K && k >= 8 {
                f32_at(r, 4 * GROUP + 4 * i)
            } else {
                d0
            };
            for (j, v) in pair.iter_mut().enumerate() {
                let at = qa + reg * 64 + (2 * i + j) * 2;
                let raw =
                    (u16::from_le_bytes([r[at], r[at + 1]]) >> (bits * s)) & ((1 << bits) - 1);
                let q = if bits == 8 {
                    f32::from(raw as u8 as i8)
                } else {
                    f32::from(raw)
                };
                *v = q.mul_add(d, m);
            }
        }
    }
}

/// Activations of `n` tokens quantized per block of 32 columns.
#[derive(Debug, Clone, Default)]
pub struct QuantizedActs {
    /// `n × cols` 16-bit integers.
    pub q: Vec<i16>,
    /// `n × blocks` scales.
    pub d: Vec<f32>,
    /// `n × blocks` exact sums of the block's activations.
    pub s: Vec<f32>,
    pub n: usize,
    pub cols: usize,
}

/// Quantize `n` tokens of `cols` (a multiple of 32) floats each.
pub fn quantize_acts(x: &[f32], n: usize, cols: usize) -> QuantizedActs {
    let blocks = cols / 32;
    let mut a = QuantizedActs {
        q: vec![0; n * cols],
        d: vec![0.0; n * blocks],
        s: vec![0.0; n * blocks],
        n,
        cols,
    };
    let x = &x[..(n * cols).min(x.len())];
    #[cfg(target_arch = "x86_64")]
    if enabled() {
        // SAFETY: `enabled` saw AVX-512F/BW.
        unsafe { quantize_avx512(x, &mut a.q, &mut a.d, &mut a.s) };
        return a;
    }
    quantize_blocks(x, &mut a.q, &mut a.d, &mut a.s);
    a
}

/// [`quantize_acts`] with the portable code, for tests against the AVX-512 form.
#[cfg(test)]
pub(super) fn quantize_acts_portable(x: &[f32], n: usize, cols: usize) -> QuantizedActs {
    let blocks = cols / 32;
    let mut a = QuantizedActs {
        q: vec![0; n * cols],
        d: vec![0.0; n * blocks],
        s: vec![0.0; n * blocks],
        n,
        cols,
    };
    quantize_blocks(&x[..n * cols], &mut a.q, &mut a.d, &mut a.s);
    a
}

/// [`quantize_blocks`] with AVX-512 instructions (the rounding the same: to nearest, ties to
/// even; the sum added in a different order).
///
/// # Safety
/// AVX-512F/BW are available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
unsafe fn quantize_avx512(x: &[f32], q: &mut [i16], d: &mut [f32], s: &mut [f32]) {
    use std::arch::x86_64::{
        __m256i, _mm256_storeu_si256, _mm512_abs_ps, _mm512_add_ps, _mm512_cvtps_epi32,
        _mm512_cvtsepi32_epi16, _mm512_loadu_ps, _mm512_max_ps, _mm512_mul_ps,
        _mm512_reduce_add_ps, _mm512_reduce_max_ps, _mm512_set1_ps,
    };
    for (((xb, qb), dd), ss) in x
        .chunks_exact(32)
        .zip(q.chunks_exact_mut(32))
        .zip(d.iter_mut())
        .zip(s.iter_mut())
    {
        // SAFETY: `xb` holds 32 floats.
        let (x0, x1) = unsafe {
            (
                _mm512_loadu_ps(xb.as_ptr()),
                _mm512_loadu_ps(xb.as_ptr().add(16)),
            )
        };
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        let inv = _mm512_set1_ps(if amax > 0.0 { 32767.0 / amax } else { 0.0 });
        // The default rounding mode: to nearest, ties to even; saturated to 16 bits.
        let q0 = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)));
        let q1 = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(x1, inv)));
        // SAFETY: `qb` holds 32 i16 (64 bytes).
        unsafe {
            _mm256_storeu_si256(qb.as_mut_ptr().cast::<__m256i>(), q0);
            _mm256_storeu_si256(qb.as_mut_ptr().add(16).cast::<__m256i>(), q1);
        }
        *dd = amax / 32767.0;
        *ss = _mm512_reduce_add_ps(_mm512_add_ps(x0, x1));
    }
}

/// Each block of 32 floats of `x` into 16-bit integers `q`, its scale `d` and its sum `s`.
#[inline(always)]
fn quantize_blocks(x: &[f32], q: &mut [i16], d: &mut [f32], s: &mut [f32]) {
    for (((xb, qb), dd), ss) in x
        .chunks_exact(32)
        .zip(q.chunks_exact_mut(32))
        .zip(d.iter_mut())
        .zip(s.iter_mut())
    {
        let mut m = [0f32; 16];
        let mut sum = [0f32; 16];
        for j in 0..16 {
            m[j] = xb[j].abs().max(xb[j + 16].abs());
            sum[j] = xb[j] + xb[j + 16];
        }
        let mut w = 16;
        while w > 1 {
            w /= 2;
            for j in 0..w {
                m[j] = m[j].max(m[j + w]);
                sum[j] += sum[j + w];
            }
        }
        let amax = m[0];
        let inv = if amax > 0.0 { 32767.0 / amax } else { 0.0 };
        for (qv, &v) in qb.iter_mut().zip(xb) {
            // `as` saturates (and maps NaN to 0).
            *qv = (v * inv).round_ties_even() as i16;
        }
        *dd = amax / 32767.0;
        *ss = sum[0];
    }
}

/// The portable reference of the kernel: `out[t·GROUP + i] = row i · token t` for the group
/// whose `blocks` records are `recs`, tokens `t0..t0 + out.len() / GROUP` of `acts`.
pub fn group_scalar(ty: GgmlType, recs: &[u8], acts: &QuantizedActs, t0: usize, out: &mut [f32]) {
    let Some(rec) = record_bytes(ty) else {
        out.fill(f32::NAN);
        return;
    };
    let blocks = acts.cols / 32;
    let qa = quants_at(ty);
    let f32_at = |b: &[u8], i: usize| f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    for (ti, o) in out.chunks_exact_mut(GROUP).enumerate() {
        let t = t0 + ti;
        let mut acc = [0f32; GROUP];
        for b in 0..blocks {
            let r = &recs[b * rec..(b + 1) * rec];
            let xq = &acts.q[t * acts.cols + b * 32..][..32];
            let (dx, sx) = (acts.d[t * blocks + b], acts.s[t * blocks + b]);
            for (i, a) in acc.iter_mut().enumerate() {
                // Sums of column pairs 0..8 and 8..16 (Q6_K scales the halves apart).
                let mut isums = [0i32; 2];
                let (per_reg, bits) = if bytes_wide(ty) { (2, 8) } else { (4, 4) };
                for k in 0..16 {
                    let (m, s) = (k / per_reg, k % per_reg);
                    for j in 0..2 {
                        let at = qa + m * 64 + (2 * i + j) * 2;
                        let lane = u16::from_le_bytes([r[at], r[at + 1]]);
                        let raw = (lane >> (bits * s)) & ((1 << bits) - 1);
                        let w = if bits == 8 {
                            i32::from(raw as u8 as i8)
                        } else {
                            i32::from(raw)
                        };
                        isums[k / 8] += w * i32::from(xq[2 * k + j]);
                    }
                }
                let dw = f32_at(r, 4 * i);
                if ty == GgmlType::Q6_K {
                    let dw1 = f32_at(r, 4 * GROUP + 4 * i);
                    *a = (isums[0] as f32).mul_add(dw * dx, *a);
                    *a = (isums[1] as f32).mul_add(dw1 * dx, *a);
                    continue;
                }
                let isum = isums[0] + isums[1];
                *a = (isum as f32).mul_add(dw * dx, *a);
                let mw = match ty {
                    GgmlType::Q4_1 | GgmlType::Q5_K => Some(f32_at(r, 4 * GROUP + 4 * i)),
                    GgmlType::Q4_0 => Some(dw * -8.0),
                    _ => None,
                };
                if let Some(mw) = mw {
                    *a = mw.mul_add(sx, *a);
                }
            }
        }
        o.copy_from_slice(&acc);
    }
}

/// `out_g[t·GROUP + i] = row i · token t` for one group (`recs`: its `blocks` records) and the
/// tokens `t0..t0 + out_g.len() / GROUP` (at most [`MAX_TOKENS`]) of `acts`, with the fastest
/// kernel this CPU has.
fn group(ty: GgmlType, recs: &[u8], acts: &QuantizedActs, t0: usize, out_g: &mut [f32]) {
    let tokens = out_g.len() / GROUP;
    let blocks = acts.cols / 32;
    let fits = record_bytes(ty).is_some_and(|rec| recs.len() >= blocks * rec)
        && tokens <= MAX_TOKENS
        && t0 + tokens <= acts.n
        && acts.q.len() >= acts.n * acts.cols
        && acts.d.len() >= acts.n * blocks
        && acts.s.len() >= acts.n * blocks;
    #[cfg(target_arch = "x86_64")]
    if fits && enabled() {
        // SAFETY: `enabled` saw AVX-512F/BW and VNNI; the lengths were checked above, as
        // `avx512vnni::group` requires.
        unsafe { avx512vnni::group(ty, recs, acts, t0, out_g) };
        return;
    }
    if !fits {
        out_g.fill(f32::NAN);
        return;
    }
    group_scalar(ty, recs, acts, t0, out_g);
}

/// The kernel [`matmul`] runs on this CPU, for tests against [`group_scalar`].
#[cfg(test)]
pub(super) fn group_for_tests(
    ty: GgmlType,
    recs: &[u8],
    acts: &QuantizedActs,
    t0: usize,
    out_g: &mut [f32],
) {
    group(ty, recs, acts, t0, out_g);
}

/// `out[t][r] = Σ_c w[r][c] · x[t][c]` for `t` in `0..n` (`x`: `n × cols`, `out`: `n × rows`)
/// with `w` interleaved by [`interleave`]; groups are split across the pool's workers.
#[expect(
    clippy::too_many_arguments,
    reason = "a matrix's parts and the product's operands"
)]
pub fn matmul(
    pool: &ThreadPool,
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let Some(rec) = record_bytes(ty) else {
        out.fill(f32::NAN);
        return;
    };
    let acts = quantize_acts(x, n, cols);
    let blocks = cols / 32;
    let groups = rows.div_ceil(GROUP);
    let group_bytes = blocks * rec;
    let per = groups.div_ceil(pool.threads() * 4).max(1);
    // Group-major results (`[group][token][row in group]`), then put in token-major order.
    let mut out_g = vec![0f32; groups * n * GROUP];
    pool.install(|| {
        out_g
            .par_chunks_mut(per * n * GROUP)
            .enumerate()
            .for_each(|(ci, o)| {
                for (gi, og) in o.chunks_exact_mut(n * GROUP).enumerate() {
                    let g = ci * per + gi;
                    let Some(recs) = w.get(g * group_bytes..(g + 1) * group_bytes) else {
                        og.fill(f32::NAN);
                        continue;
                    };
                    for (ti, ot) in og.chunks_mut(MAX_TOKENS * GROUP).enumerate() {
                        group(ty, recs, &acts, ti * MAX_TOKENS, ot);
                    }
                }
            });
    });
    for (g, og) in out_g.chunks_exact(n * GROUP).enumerate() {
        let r0 = g * GROUP;
        let valid = GROUP.min(rows - r0);
        for (t, ot) in og.chunks_exact(GROUP).enumerate() {
            out[t * rows + r0..t * rows + r0 + valid].copy_from_slice(&ot[..valid]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512vnni {
    use std::arch::x86_64::{
        __m512, __m512i, _MM_HINT_T0, _mm_prefetch, _mm512_add_epi32, _mm512_and_si512,
        _mm512_cvtepi32_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mul_ps,
        _mm512_set1_epi16, _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512,
        _mm512_slli_epi16, _mm512_srai_epi16, _mm512_srli_epi16, _mm512_storeu_ps,
    };

    use super::{GROUP, QuantizedActs, record_bytes};
    use hearth_gguf::GgmlType;

    const Q4_0: u8 = 0;
    const Q4_1: u8 = 1;
    const Q8_0: u8 = 2;
    const Q6_K: u8 = 3;
    const Q5_K: u8 = 4;
    /// Bytes ahead of the record in use to prefetch: measured on Zen 5 with weights that do
    /// not fit in cache, 6 KiB made 8-token products 1.3–1.7× as fast as none (3 and 12 KiB
    /// were slower or no faster).
    const PREFETCH: usize = 6144;

    /// # Safety
    /// AVX-512F/BW and VNNI are available; `recs` holds `acts.cols / 32` records of `ty`;
    /// tokens `t0..t0 + out_g.len() / GROUP` (at most `MAX_TOKENS`) are inside `acts`, whose
    /// vectors hold `n × cols` and `n × blocks` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn group(
        ty: GgmlType,
        recs: &[u8],
        acts: &QuantizedActs,
        t0: usize,
        out_g: &mut [f32],
    ) {
        macro_rules! by_tokens {
            ($f:literal) => {
                // SAFETY: the contract is passed on unchanged, with `T` = the token count.
                unsafe {
                    match out_g.len() / GROUP {
                        1 => kernel::<$f, 1>(recs, acts, t0, out_g),
                        2 => kernel::<$f, 2>(recs, acts, t0, out_g),
                        3 => kernel::<$f, 3>(recs, acts, t0, out_g),
                        4 => kernel::<$f, 4>(recs, acts, t0, out_g),
                        5 => kernel::<$f, 5>(recs, acts, t0, out_g),
                        6 => kernel::<$f, 6>(recs, acts, t0, out_g),
                        7 => kernel::<$f, 7>(recs, acts, t0, out_g),
                        8 => kernel::<$f, 8>(recs, acts, t0, out_g),
                        _ => {}
                    }
                }
            };
        }
        match ty {
            GgmlType::Q4_0 => by_tokens!(0),
            GgmlType::Q4_1 => by_tokens!(1),
            GgmlType::Q6_K => by_tokens!(3),
            GgmlType::Q5_K => by_tokens!(4),
            _ => by_tokens!(2),
        }
    }

    /// `acc[t] += w · (the pair of 16-bit activations at x + t·cols, broadcast)`.
    ///
    /// # Safety
    /// AVX-512F and VNNI are available; `x + t·cols` points at two i16 for each `t < T`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot<const T: usize>(acc: &mut [__m512i; T], w: __m512i, x: *const i16, cols: usize) {
        for (t, a) in acc.iter_mut().enumerate() {
            // SAFETY: `x + t·cols` points at two i16 (the caller's contract), read as one
            // broadcast dword; VNNI is available. Written as assembly because the compiler
            // otherwise splits `vpdpwssd` into `vpmaddwd` and `vpaddd`, twice the instructions.
            unsafe {
                std::arch::asm!(
                    "vpdpwssd {a}, {w}, dword ptr [{p}]{{1to16}}",
                    a = inout(zmm_reg) *a,
                    w = in(zmm_reg) w,
                    p = in(reg) x.add(t * cols),
                    options(pure, readonly, nostack, preserves_flags),
                );
            }
        }
    }

    /// One group × `T` tokens; see [`group`].
    ///
    /// # Safety
    /// As for [`group`], with `out_g.len() == T × GROUP`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn kernel<const F: u8, const T: usize>(
        recs: &[u8],
        acts: &QuantizedActs,
        t0: usize,
        out_g: &mut [f32],
    ) {
        let ty = match F {
            Q4_0 => GgmlType::Q4_0,
            Q4_1 => GgmlType::Q4_1,
            Q6_K => GgmlType::Q6_K,
            Q5_K => GgmlType::Q5_K,
            _ => GgmlType::Q8_0,
        };
        let rec = record_bytes(ty).unwrap_or(0);
        let qa = if F == Q4_1 || F == Q6_K || F == Q5_K {
            8 * GROUP
        } else {
            4 * GROUP
        };
        let cols = acts.cols;
        let blocks = cols / 32;
        let nib = _mm512_set1_epi16(0xf);
        let xq = acts.q[t0 * cols..].as_ptr();
        let xd = &acts.d[t0 * blocks..];
        let xs = &acts.s[t0 * blocks..];
        let mut facc = [_mm512_setzero_ps(); T];
        for b in 0..blocks {
            let r = recs[b * rec..].as_ptr();
            // The weights stream from memory: ask for those about one group ahead.
            for line in (0..rec).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(r.wrapping_add(PREFETCH + line).cast());
            }
            // SAFETY: record `b` is inside `recs` (the caller's contract); it starts with 16
            // f32 scales (and 16 f32 offsets for Q4_1).
            let dw = unsafe { _mm512_loadu_ps(r as *const f32) };
            // The offsets of Q4_1, or Q6_K's scales of columns 16..32.
            let mw: __m512 = match F {
                // SAFETY: as above.
                Q4_1 | Q6_K | Q5_K => unsafe { _mm512_loadu_ps(r.add(4 * GROUP) as *const f32) },
                Q4_0 => _mm512_mul_ps(dw, _mm512_set1_ps(-8.0)),
                _ => _mm512_setzero_ps(),
            };
            // With few tokens, even and odd column pairs sum apart (twice the independent
            // chains, to hide the latency of `vpdpwssd`); with more, one sum per token leaves
            // registers for the rest.
            let mut acc0 = [_mm512_setzero_si512(); T];
            let mut acc1 = [_mm512_setzero_si512(); T];
            macro_rules! odd {
                () => {
                    if T <= 4 { &mut acc1 } else { &mut acc0 }
                };
            }
            let xb = xq.wrapping_add(b * 32);
            if F == Q6_K {
                // Columns 0..16 sum into `acc0`, 16..32 into `acc1`: their scales differ.
                for m in 0..8 {
                    // SAFETY: the record's quantized part holds 8 registers of 64 bytes.
                    let v: __m512i = unsafe { _mm512_loadu_si512(r.add(qa + m * 64).cast()) };
                    let lo = _mm512_srai_epi16::<8>(_mm512_slli_epi16::<8>(v));
                    let hi = _mm512_srai_epi16::<8>(v);
                    let acc = if m < 4 { &mut acc0 } else { &mut acc1 };
                    // SAFETY: pairs `2m` and `2m + 1` of block `b` of tokens `t0..t0 + T`.
                    unsafe {
                        dot(acc, lo, xb.add(4 * m), cols);
                        dot(acc, hi, xb.add(4 * m + 2), cols);
                    }
                }
            } else if F == Q8_0 || F == Q5_K {
                for m in 0..8 {
                    // SAFETY: the record's quantized part holds 8 registers of 64 bytes.
                    let v: __m512i = unsafe { _mm512_loadu_si512(r.add(qa + m * 64).cast()) };
                    let lo = _mm512_srai_epi16::<8>(_mm512_slli_epi16::<8>(v));
                    let hi = _mm512_srai_epi16::<8>(v);
                    // SAFETY: pairs `2m` and `2m + 1` of block `b` of tokens `t0..t0 + T`.
                    unsafe {
                        dot(&mut acc0, lo, xb.add(4 * m), cols);
                        dot(odd!(), hi, xb.add(4 * m + 2), cols);
                    }
                }
            } else {
                for m in 0..4 {
                    // SAFETY: the record's quantized part holds 4 registers of 64 bytes.
                    let v: __m512i = unsafe { _mm512_loadu_si512(r.add(qa + m * 64).cast()) };
                    let w0 = _mm512_and_si512(v, nib);
                    let w1 = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
                    let w2 = _mm512_and_si512(_mm512_srli_epi16::<8>(v), nib);
                    let w3 = _mm512_srli_epi16::<12>(v);
                    // SAFETY: pairs `4m..4m + 4` of block `b` of tokens `t0..t0 + T`.
                    unsafe {
                        dot(&mut acc0, w0, xb.add(8 * m), cols);
                        dot(odd!(), w1, xb.add(8 * m + 2), cols);
                        dot(&mut acc0, w2, xb.add(8 * m + 4), cols);
                        dot(odd!(), w3, xb.add(8 * m + 6), cols);
                    }
                }
            }
            if F == Q6_K {
                for t in 0..T {
                    let x = _mm512_set1_ps(xd[t * blocks + b]);
                    let (s0, s1) = (_mm512_mul_ps(dw, x), _mm512_mul_ps(mw, x));
                    facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc0[t]), s0, facc[t]);
                    facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc1[t]), s1, facc[t]);
                }
                continue;
            }
            for t in 0..T {
                let isum = if T <= 4 {
                    _mm512_add_epi32(acc0[t], acc1[t])
                } else {
                    acc0[t]
                };
                let sc = _mm512_mul_ps(dw, _mm512_set1_ps(xd[t * blocks + b]));
                facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), sc, facc[t]);
                if F == Q4_0 || F == Q4_1 || F == Q5_K {
                    facc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xs[t * blocks + b]), facc[t]);
                }
            }
        }
        for (t, f) in facc.iter().enumerate() {
            // SAFETY: `out_g` holds `T × GROUP` floats.
            unsafe { _mm512_storeu_ps(out_g[t * GROUP..].as_mut_ptr(), *f) };
        }
    }
}
