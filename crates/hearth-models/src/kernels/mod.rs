//! Numeric kernels: quantized matrix products, normalisation, rotary embeddings, attention helpers.
//!
//! Every routine has a portable scalar form. SIMD forms are chosen at run time (see [`simd`]) and
//! tested against the scalar ones.

pub mod interleaved;
pub mod simd;
#[cfg(test)]
mod tests;

use hearth_gguf::quants::dequantize_block;
use hearth_gguf::{GgmlType, GgufError};
use rayon::prelude::*;

use crate::ModelError;

/// A worker pool that lives as long as the model, so no operation spawns threads.
pub struct ThreadPool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadPool({})", self.threads)
    }
}

impl ThreadPool {
    /// A pool of `threads` workers (0: one per available core).
    pub fn new(threads: usize) -> Result<Self, ModelError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("hearth-worker-{i}"))
            .build()
            .map_err(|e| ModelError::Threads(e.to_string()))?;
        Ok(Self { pool, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// A weight matrix of `rows × cols` in a ggml block format, rows contiguous.
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
    /// The rows interleaved for the integer kernel of a few tokens (see [`interleaved`]), when
    /// this CPU has it.
    interleaved: Option<Vec<u8>>,
}

impl QMatrix {
    /// Take a tensor's bytes; `dims` are ggml order (`dims[0]` = cols).
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Result<Self, ModelError> {
        if !ty.can_dequantize() {
            return Err(GgufError::UnsupportedType(ty.to_string()).into());
        }
        let row_bytes = ty
            .bytes_for(cols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| ModelError::Invalid(format!("row of {cols} {ty} elements")))?;
        if row_bytes.checked_mul(rows) != Some(data.len()) {
            return Err(ModelError::Invalid(format!(
                "{ty} matrix {rows}×{cols} needs {row_bytes}×{rows} bytes, has {}",
                data.len()
            )));
        }
        if ty == GgmlType::Q5_0 {
            // Q5_0's values `d·(q − 16)` are signed bytes with the same f16 scale: Q8_0 blocks,
            // which llama.cpp's quantizer falls back to Q5_0 for widths not a multiple of 256.
            return Self::new(GgmlType::Q8_0, rows, cols, &q5_0_as_q8_0(data));
        }
        if ty == GgmlType::Q4_K {
            // Every 32-element sub-block of Q4_K is `d·sc·q − dmin·m` with 4-bit `q`: the Q4_1
            // form, so it takes the Q4_1 kernels, already in their packed layout.
            let data = repack_q4_k(data);
            let pb = 24;
            let interleaved = if interleaved::enabled() {
                interleaved::interleave(GgmlType::Q4_1, &data, rows, cols)
            } else {
                None
            };
            return Ok(Self {
                ty: GgmlType::Q4_1,
                rows,
                cols,
                row_bytes: cols / 32 * pb,
                data,
                interleaved,
            });
        }
        if matches!(ty, GgmlType::Q6_K | GgmlType::Q5_K) {
            // The float kernels read the ggml blocks; the integer kernels an interleaved copy
            // of them as bytes with two f32 per 32 columns (Q6_K: a scale per 16 columns;
            // Q5_K: scale and offset).
            let interleaved = if interleaved::enabled() {
                let packed = if ty == GgmlType::Q6_K {
                    interleaved::pack_q6_k(data)
                } else {
                    interleaved::pack_q5_k(data)
                };
                interleaved::interleave(ty, &packed, rows, cols)
            } else {
                None
            };
            return Ok(Self {
                ty,
                rows,
                cols,
                row_bytes,
                data: data.to_vec(),
                interleaved,
            });
        }
        match packed_block_bytes(ty) {
            Some(pb) => {
                let data = pack_blocks(ty, data);
                let interleaved = if interleaved::enabled() {
                    interleaved::interleave(ty, &data, rows, cols)
                } else {
                    None
                };
                Ok(Self {
                    ty,
                    rows,
                    cols,
                    row_bytes: row_bytes / ty.type_size() as usize * pb,
                    data,
                    interleaved,
                })
            }
            None => Ok(Self {
                ty,
                rows,
                cols,
                row_bytes,
                data: data.to_vec(),
                interleaved: None,
            }),
        }
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.interleaved.as_ref().map_or(0, Vec::len)
    }

    /// Keep only the interleaved rows, when there are any: every product then takes the
    /// integer kernel, and the matrix holds its weights once instead of twice.
    pub fn drop_float_rows(&mut self) {
        if self.interleaved.is_some() {
            self.data = Vec::new();
        }
    }

    /// The interleaved rows, when this matrix holds no others (see [`QMatrix::drop_float_rows`]).
    fn interleaved_only(&self) -> Option<&[u8]> {
        self.interleaved
            .as_deref()
            .filter(|_| self.data.is_empty() && self.rows > 0)
    }

    /// Dequantize row `r` into `out` (`cols` elements).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        if let Some(il) = self.interleaved_only() {
            let group_bytes = self.cols / 32 * interleaved::record_bytes(self.ty).unwrap_or(0);
            let g = r / interleaved::GROUP;
            match il.get(g * group_bytes..(g + 1) * group_bytes) {
                Some(recs) => {
                    interleaved::dequantize_row(self.ty, recs, r % interleaved::GROUP, out);
                }
                None => out.fill(f32::NAN),
            }
            return;
        }
        dequantize_row(self.ty, self.row(r), out);
    }
}

/// Bytes per block of the formats repacked at load: their f16 scales widened to f32, so the
/// hot loops never convert half floats.
pub fn packed_block_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::Q4_0 => Some(4 + 16),
        GgmlType::Q4_1 => Some(4 + 4 + 16),
        GgmlType::Q8_0 => Some(4 + 32),
        _ => None,
    }
}

/// Repack ggml blocks of `ty` into the load-time layout (see [`packed_block_bytes`]); other
/// types are returned unchanged.
pub fn pack_blocks(ty: GgmlType, src: &[u8]) -> Vec<u8> {
    let ts = ty.type_size() as usize;
    let Some(pb) = packed_block_bytes(ty) else {
        return src.to_vec();
    };
    let scales = match ty {
        GgmlType::Q4_1 => 2,
        _ => 1,
    };
    let mut out = Vec::with_capacity(src.len() / ts * pb);
    for b in src.chunks_exact(ts) {
        for i in 0..scales {
            let h = u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
            out.extend_from_slice(&hearth_gguf::quants::f16_to_f32(h).to_le_bytes());
        }
        out.extend_from_slice(&b[2 * scales..]);
    }
    out
}

/// Q5_0 blocks (f16 `d`, 32 fifth bits, 16 bytes of nibbles) as ggml Q8_0 blocks (the same
/// `d`, then `q − 16` as signed bytes): the same values, as the same floats.
pub fn q5_0_as_q8_0(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / 22 * 34);
    for b in src.chunks_exact(22) {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        out.extend_from_slice(&b[0..2]);
        let value = |j: usize| {
            let q = if j < 16 {
                (qs[j] & 0xf) | ((((qh >> j) << 4) & 0x10) as u8)
            } else {
                (qs[j - 16] >> 4) | (((qh >> (j - 4)) & 0x10) as u8)
            };
            (i16::from(q) - 16) as i8 as u8
        };
        out.extend((0..32).map(value));
    }
    out
}

/// Q4_K blocks (256 elements: f16 `d` and `dmin`, twelve bytes of 6-bit scales and mins, 128
/// bytes of nibbles) as packed Q4_1 blocks of 32 (see [`packed_block_bytes`]): sub-block `j`
/// gets scale `d·sc_j` and offset `−dmin·m_j` in f32, computed as ggml's dequantization does, so
/// its values are the same floats.
pub fn repack_q4_k(src: &[u8]) -> Vec<u8> {
    let f16 = |b: &[u8]| hearth_gguf::quants::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    let mut out = Vec::with_capacity(src.len() / 144 * 8 * 24);
    for b in src.chunks_exact(144) {
        let (d, dmin) = (f16(&b[0..]), f16(&b[2..]));
        let (scales, qs) = (&b[4..16], &b[16..144]);
        for (n, q) in qs.chunks_exact(32).enumerate() {
            for (j, shift) in [(2 * n, 0), (2 * n + 1, 4)] {
                let (sc, m) = hearth_gguf::quants::scale_min_k4(j, scales);
                out.extend_from_slice(&(d * f32::from(sc)).to_le_bytes());
                out.extend_from_slice(&(-(dmin * f32::from(m))).to_le_bytes());
                // Element e (< 16) in the low nibble of byte e, element e + 16 in its high one.
                out.extend(
                    (0..16).map(|e| ((q[e] >> shift) & 0xf) | (((q[e + 16] >> shift) & 0xf) << 4)),
                );
            }
        }
    }
    out
}

/// Dequantize a row of (packed, where [`packed_block_bytes`] says so) blocks into `out`.
pub fn dequantize_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    if let Some(pb) = packed_block_bytes(ty) {
        for (b, y) in row.chunks_exact(pb).zip(out.chunks_exact_mut(32)) {
            simd::dequantize_packed_block(ty, b, y);
        }
        return;
    }
    let bs = ty.block_size() as usize;
    let ts = ty.type_size() as usize;
    for (b, y) in row.chunks_exact(ts).zip(out.chunks_exact_mut(bs)) {
        dequantize_block(ty, b, y);
    }
}

/// From this many tokens on, dequantizing weight tiles once and multiplying them with every
/// token beats running the fused row kernel per token (measured with SmolLM2 Q4_1 on AVX-512).
const GEMM_MIN_TOKENS: usize = 16;

/// As [`matmul`], but through the integer kernel of [`interleaved`] where this CPU has it and
/// the format allows: activations quantized to 16 bits per block of 32. Measured with SmolLM2
/// Q4_1 on 2 Zen 5 cores: as fast as the float row kernel for one token (1.25× at one thread),
/// 1.5–2× as fast as the float kernels for 2–8 tokens (batched decoding) and about 1.8× for a
/// 128-token prompt (`hearth bench speed`); about 400 times less exact (mean |Δ log-probability|
/// against a float64 reference with a float32 KV cache: 9e-4 instead of 2e-6; llama.cpp's int8
/// path: 0.087).
pub fn matmul_int(pool: &ThreadPool, w: &QMatrix, x: &[f32], n: usize, out: &mut [f32]) {
    if let Some(il) = &w.interleaved {
        interleaved::matmul(pool, w.ty, il, w.rows, w.cols, x, n, out);
        return;
    }
    matmul(pool, w, x, n, out);
}

/// `out[t][r] = Σ_c w[r][c] · x[t][c]` for `t` in `0..n` tokens: `x` is `n × cols`, `out` is
/// `n × rows`, activations in float. Rows are split across the pool's workers.
pub fn matmul(pool: &ThreadPool, w: &QMatrix, x: &[f32], n: usize, out: &mut [f32]) {
    if let Some(il) = w.interleaved_only() {
        // The float rows were dropped: the integer kernel is the only one left.
        interleaved::matmul(pool, w.ty, il, w.rows, w.cols, x, n, out);
        return;
    }
    debug_assert_eq!(x.len(), n * w.cols);
    debug_assert_eq!(out.len(), n * w.rows);
    let k = simd::Kernels::get();
    if n == 1 {
        let chunk = w
            .rows
            .div_ceil(pool.threads() * 4)
            .next_multiple_of(simd::TILE_ROWS)
            .max(16);
        pool.install(|| {
            out.par_chunks_mut(chunk).enumerate().for_each(|(ci, o)| {
                let mut scratch = if packed_block_bytes(w.ty).is_some() {
                    Vec::new()
                } else {
                    vec![0f32; w.cols]
                };
                let r0 = ci * chunk;
                let rows = &w.data[r0 * w.row_bytes..(r0 + o.len()) * w.row_bytes];
                k.gemv(w.ty, rows, w.row_bytes, x, o, &mut scratch);
            });
        });
        return;
    }
    if n < GEMM_MIN_TOKENS && packed_block_bytes(w.ty).is_some() {
        // A few tokens (batched decoding): each block of a row is converted once and multiplied
        // with every token in registers.
        let mut out_t = vec![0f32; n * w.rows];
        let chunk = w.rows.div_ceil(pool.threads() * 4).max(16);
        pool.install(|| {
            out_t
                .par_chunks_mut(chunk * n)
                .enumerate()
                .for_each(|(ci, o)| {
                    for (i, ys) in o.chunks_exact_mut(n).enumerate() {
                        let row = w.row(ci * chunk + i);
                        for (g, yg) in ys.chunks_mut(simd::ROW_TOKENS).enumerate() {
                            let x0 = g * simd::ROW_TOKENS * w.cols;
                            k.dot_row_tokens(w.ty, row, &x[x0..], w.cols, yg);
                        }
                    }
                });
        });
        transpose(&out_t, w.rows, n, out);
        return;
    }
    // Several tokens: dequantize `TILE_ROWS` rows at a time into a small tile that stays in L1
    // and multiply it with every token, several rows × several tokens at once in registers.
    let tr = simd::TILE_ROWS;
    let mut out_t = vec![0f32; n * w.rows];
    let chunk = w.rows.div_ceil(pool.threads() * 4).next_multiple_of(tr);
    pool.install(|| {
        out_t
            .par_chunks_mut(chunk * n)
            .enumerate()
            .for_each(|(ci, o)| {
                let mut tile = vec![0f32; tr * w.cols];
                for (bi, ob) in o.chunks_mut(tr * n).enumerate() {
                    let r0 = ci * chunk + bi * tr;
                    let valid = ob.len() / n;
                    for (i, tr) in tile.chunks_exact_mut(w.cols).enumerate() {
                        if i < valid {
                            k.dequantize_row(w.ty, w.row(r0 + i), tr);
                        } else {
                            tr.fill(0.0);
                        }
                    }
                    k.gemm_tile(&tile, w.cols, x, n, ob);
                }
            });
    });
    transpose(&out_t, w.rows, n, out);
}

/// `dst[c][r] = src[r][c]` for a `rows × cols` matrix `src`, in cache-sized blocks.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const B: usize = 16;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// `x ← x / rms(x) · weight`, per row of `weight.len()` elements.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    simd::Kernels::get().rms_norm(x, weight, eps);
}

/// Rotary position embedding of adjacent pairs (ggml's "normal" rope, used by llama GGUFs whose
/// q/k weights the converter permuted). `x` is `heads × head_dim` for one token at `pos`;
/// `inv_freq[i]` is the frequency of pair `i` (only the first `inv_freq.len()` pairs rotate).
pub fn rope(x: &mut [f32], head_dim: usize, pos: usize, inv_freq: &[f32]) {
    let mut angles = Vec::with_capacity(inv_freq.len());
    rope_angles(pos, inv_freq, &mut angles);
    rope_rotate(x, head_dim, &angles);
}

/// Append `(sin, cos)` of each pair's angle at `pos` to `out` (see [`rope`]), to rotate every
/// head of every layer at that position with [`rope_rotate`].
pub fn rope_angles(pos: usize, inv_freq: &[f32], out: &mut Vec<(f32, f32)>) {
    out.extend(inv_freq.iter().map(|&f| (pos as f32 * f).sin_cos()));
}

/// [`rope`] with the angles of [`rope_angles`].
pub fn rope_rotate(x: &mut [f32], head_dim: usize, angles: &[(f32, f32)]) {
    simd::Kernels::get().rope_rotate(x, head_dim, angles);
}

/// Merge attention computed over consecutive parts of a cache: `partial` holds each part's
/// outputs for a group of heads (`parts × heads × hd`), `stats` each part's `(largest score, sum
/// of exponentials)` per head (`parts × heads`), as [`simd::Kernels::attend_heads`] returns
/// them. Each part weighs `sum · e^(max − the largest max)`. One part is copied unchanged.
pub fn merge_attention(partial: &[f32], stats: &[(f32, f32)], hd: usize, out: &mut [f32]) {
    let heads = out.len().checked_div(hd).unwrap_or(0);
    let parts = stats.len().checked_div(heads).unwrap_or(0);
    if parts == 0 || partial.len() != parts * out.len() {
        out.fill(f32::NAN);
        return;
    }
    if parts == 1 {
        out.copy_from_slice(partial);
        return;
    }
    for (g, og) in out.chunks_exact_mut(hd).enumerate() {
        let top = (0..parts)
            .map(|j| stats[j * heads + g].0)
            .fold(f32::NEG_INFINITY, f32::max);
        let weight = |j: usize| {
            let (m, sum) = stats[j * heads + g];
            sum * (m - top).exp()
        };
        let inv = 1.0 / (0..parts).map(weight).sum::<f32>();
        og.fill(0.0);
        for j in 0..parts {
            axpy(og, weight(j) * inv, &partial[(j * heads + g) * hd..][..hd]);
        }
    }
}

/// In-place softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `gate ← silu(gate) · up`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    simd::Kernels::get().swiglu(gate, up);
}

/// Dot product using the best kernel for this CPU.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    simd::Kernels::get().dot_f32(a, b)
}

/// `out += w · v` (axpy) using the best kernel for this CPU.
pub fn axpy(out: &mut [f32], w: f32, v: &[f32]) {
    simd::Kernels::get().axpy(out, w, v);
}
