#![expect(
    unsafe_code,
    reason = "calls into #[target_feature] kernels after run-time detection"
)]

//! Run-time kernel selection.
//!
//! Each kernel body is written once as portable Rust in an `#[inline(always)]` function, then
//! compiled twice: plainly (the portable path) and inside a `#[target_feature]` wrapper so the
//! compiler vectorises it for AVX2+FMA or AVX-512. [`Kernels::get`] picks the widest set the CPU
//! reports, once. Tests call every variant the CPU supports against the portable one.

use std::sync::OnceLock;

use hearth_gguf::GgmlType;
use hearth_gguf::quants::{f16_to_f32, f32_to_f16};

use super::packed_block_bytes;

/// Which instruction set a kernel table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
}

/// Cached keys and values of one kv head, as IEEE half floats (bits): position `p`'s vectors
/// start at `p · stride`.
#[derive(Debug, Clone, Copy)]
pub struct KvView<'a> {
    pub keys: &'a [u16],
    pub values: &'a [u16],
    pub stride: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    pub isa: Isa,
}

static SELECTED: OnceLock<Kernels> = OnceLock::new();

impl Kernels {
    /// The best kernels for this CPU (`HEARTH_KERNELS=portable` is not read here: configuration
    /// flows in through [`Kernels::force`]).
    pub fn get() -> Kernels {
        *SELECTED.get_or_init(|| Kernels { isa: detect() })
    }

    /// Every variant this CPU can run, portable first (for tests and benchmarks).
    pub fn available() -> Vec<Kernels> {
        let mut v = vec![Kernels { isa: Isa::Portable }];
        if detect_avx2() {
            v.push(Kernels { isa: Isa::Avx2 });
        }
        if detect_avx512() {
            v.push(Kernels { isa: Isa::Avx512 });
        }
        v
    }

    /// Use `isa` for the rest of the process if nothing chose yet; returns what is in force.
    pub fn force(isa: Isa) -> Kernels {
        let usable = Kernels::available().iter().any(|k| k.isa == isa);
        let k = if usable { isa } else { detect() };
        *SELECTED.get_or_init(|| Kernels { isa: k })
    }

    #[inline]
    pub fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        dot_f32(self.isa, a, b)
    }

    /// Attention of one query head over `span` cached positions (see the kernel's notes).
    #[inline]
    pub fn attend_head(
        self,
        q: &[f32],
        kv: KvView<'_>,
        span: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        self.attend_heads(q, q.len(), kv, span, scale, scores, out, &mut []);
    }

    /// Attention of the query heads in `q` (`hd` floats each) that share the kv head of `kv`,
    /// over `span` cached positions, into `out` (as long as `q`); `scores` is scratch of at
    /// least `heads × span` floats. The heads are computed together, so the cache is read once
    /// for all of them. Each head's largest score and sum of exponentials (relative to it) go
    /// to `stats` (when it has room), to merge attention computed over parts of a long cache.
    #[expect(clippy::too_many_arguments, reason = "attention's operands")]
    #[inline]
    pub fn attend_heads(
        self,
        q: &[f32],
        hd: usize,
        kv: KvView<'_>,
        span: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
        stats: &mut [(f32, f32)],
    ) {
        let KvView {
            keys,
            values,
            stride,
        } = kv;
        let heads = q.len().checked_div(hd).unwrap_or(0);
        let fits = span > 0
            && heads > 0
            && q.len() == heads * hd
            && out.len() == q.len()
            && scores.len() >= heads * span
            && keys.len() >= (span - 1) * stride + hd
            && values.len() >= (span - 1) * stride + hd;
        if !fits {
            out.fill(f32::NAN);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 && (hd == 64 || hd == 128) {
            // Groups of up to 4 heads of 64 or 2 of 128, so the outputs stay in registers.
            let most = if hd == 64 { 4 } else { 2 };
            let mut h0 = 0;
            while h0 < heads {
                let g = most.min(heads - h0);
                let (qg, og) = (&q[h0 * hd..(h0 + g) * hd], &mut out[h0 * hd..(h0 + g) * hd]);
                let sg = &mut scores[..g * span];
                let st = stats
                    .get_mut(h0..(h0 + g).min(stats.len()))
                    .unwrap_or_default();
                // SAFETY: `Kernels` with this ISA exist only when `detect_avx512` saw the
                // features; `qg` and `og` hold `g` heads, `sg` `g × span` floats, and the cache
                // lengths were checked above, as `avx512::attend_group` requires.
                unsafe {
                    match (hd, g) {
                        (64, 1) => avx512::attend_group::<4, 1>(qg, kv, span, scale, sg, og, st),
                        (64, 2) => avx512::attend_group::<4, 2>(qg, kv, span, scale, sg, og, st),
                        (64, 3) => avx512::attend_group::<4, 3>(qg, kv, span, scale, sg, og, st),
                        (64, _) => avx512::attend_group::<4, 4>(qg, kv, span, scale, sg, og, st),
                        (_, 1) => avx512::attend_group::<8, 1>(qg, kv, span, scale, sg, og, st),
                        _ => avx512::attend_group::<8, 2>(qg, kv, span, scale, sg, og, st),
                    }
                }
                h0 += g;
            }
            return;
        }
        for (h, (qh, oh)) in q.chunks_exact(hd).zip(out.chunks_exact_mut(hd)).enumerate() {
            let st = attend_head(self.isa, qh, kv, span, scale, &mut scores[..span], oh);
            if let Some(s) = stats.get_mut(h) {
                *s = st;
            }
        }
    }

    #[inline]
    pub fn axpy(self, out: &mut [f32], w: f32, v: &[f32]) {
        axpy(self.isa, out, w, v)
    }

    /// `gate ← silu(gate) · up`, element-wise over the shorter of the two.
    #[inline]
    pub fn swiglu(self, gate: &mut [f32], up: &[f32]) {
        swiglu(self.isa, gate, up)
    }

    /// The largest element (`-∞` for an empty slice; NaNs are skipped).
    #[inline]
    pub fn max(self, x: &[f32]) -> f32 {
        max_f32(self.isa, x)
    }

    /// `x ← x / rms(x) · weight`, per row of `weight.len()` elements (the sum of squares in
    /// float64).
    #[inline]
    pub fn rms_norm(self, x: &mut [f32], weight: &[f32], eps: f32) {
        if !weight.is_empty() {
            rms_norm(self.isa, x, weight, eps);
        }
    }

    /// Rotate adjacent pairs of every head of `head_dim` in `x` by `angles` (`(sin, cos)` per
    /// pair; see [`super::rope`]).
    #[inline]
    pub fn rope_rotate(self, x: &mut [f32], head_dim: usize, angles: &[(f32, f32)]) {
        if head_dim >= 2 * angles.len() {
            rope_rotate(self.isa, x, head_dim, angles);
        }
    }

    /// Append `src` to `dst` as IEEE half floats (bits), rounded to nearest, ties to even.
    #[inline]
    pub fn to_half(self, src: &[f32], dst: &mut Vec<u16>) {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            // SAFETY: `Kernels` with this ISA exist only when `detect_avx512` saw the features.
            unsafe { avx512::to_half(src, dst) };
            return;
        }
        dst.extend(src.iter().map(|&v| f32_to_f16(v)));
    }

    /// The sum of `x` (in 16 running sums).
    #[inline]
    pub fn sum(self, x: &[f32]) -> f32 {
        sum_f32(self.isa, x)
    }

    /// `out[i] = e^((x[i] − shift) · scale)` (0 where that is below e^-87, so `x[i] = −∞` gets
    /// exactly 0), and the sum of `out`: the unnormalised weights of a softmax.
    #[inline]
    pub fn exp_weights(self, x: &[f32], shift: f32, scale: f32, out: &mut [f32]) -> f32 {
        exp_weights(self.isa, x, shift, scale, out)
    }

    /// `out[t] = row · x[t]` for `out.len()` tokens (at most [`ROW_TOKENS`]) of `cols` floats
    /// each in `xs`, for a repacked Q4_0, Q4_1 or Q8_0 row; other types give NaN.
    #[inline]
    pub fn dot_row_tokens(
        self,
        ty: GgmlType,
        row: &[u8],
        xs: &[f32],
        cols: usize,
        out: &mut [f32],
    ) {
        let Some(pb) = packed_block_bytes(ty) else {
            out.fill(f32::NAN);
            return;
        };
        let fits = out.len() <= ROW_TOKENS
            && cols.is_multiple_of(32)
            && row.len() >= cols / 32 * pb
            && xs.len() >= out.len() * cols;
        if !fits {
            out.fill(f32::NAN);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            let fmt = match ty {
                GgmlType::Q4_0 => avx512::Fmt::Q4_0,
                GgmlType::Q4_1 => avx512::Fmt::Q4_1,
                _ => avx512::Fmt::Q8_0,
            };
            // SAFETY: `Kernels` with this ISA exist only when `detect_avx512` saw the features;
            // the lengths were checked above, as `avx512::row_tokens` requires.
            unsafe { avx512::row_tokens(fmt, row, xs, cols, out) };
            return;
        }
        for (g, og) in out.chunks_mut(PORTABLE_ROW_TOKENS).enumerate() {
            dot_row_tokens(
                self.isa,
                ty,
                row,
                &xs[g * PORTABLE_ROW_TOKENS * cols..],
                cols,
                og,
            );
        }
    }

    /// `out[r·n + t] = Σ_c w[r][c] · x[t][c]` for the first `out.len() / n` of the
    /// [`TILE_ROWS`] rows of `w` (`TILE_ROWS × cols`, dequantized) and the `n` tokens of `x`
    /// (`n × cols`).
    #[inline]
    pub fn gemm_tile(self, w: &[f32], cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
        gemm_tile(self.isa, w, cols, x, n, out);
    }

    /// `out[i] = row(i) · x` for `out.len()` consecutive rows of `row_bytes` bytes each in
    /// `rows` (a matrix-vector product; `scratch` holds `x.len()` floats for formats without a
    /// fused kernel).
    pub fn gemv(
        self,
        ty: GgmlType,
        rows: &[u8],
        row_bytes: usize,
        x: &[f32],
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        if rows.len() < out.len() * row_bytes {
            out.fill(f32::NAN);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            let fmt = match ty {
                GgmlType::Q4_0 => Some(avx512::Fmt::Q4_0),
                GgmlType::Q4_1 => Some(avx512::Fmt::Q4_1),
                GgmlType::Q8_0 => Some(avx512::Fmt::Q8_0),
                _ => None,
            };
            if let Some(fmt) = fmt
                && packed_block_bytes(ty).map(|pb| x.len() / 32 * pb) == Some(row_bytes)
                && x.len().is_multiple_of(32)
            {
                // SAFETY: `Kernels` with this ISA exist only when `detect_avx512` saw the
                // features; `rows` holds `out.len()` rows of `row_bytes` = the packed size of
                // `x.len() / 32` blocks (checked above), as `avx512::gemv` requires.
                unsafe { avx512::gemv(fmt, rows, row_bytes, x, out) };
                return;
            }
        }
        for (i, y) in out.iter_mut().enumerate() {
            *y = self.dot_row(ty, &rows[i * row_bytes..(i + 1) * row_bytes], x, scratch);
        }
    }

    /// Dequantize a row of packed blocks (see [`super::dequantize_row`]).
    #[inline]
    pub fn dequantize_row(self, ty: GgmlType, row: &[u8], out: &mut [f32]) {
        if packed_block_bytes(ty).is_some() {
            dequantize_packed_row(self.isa, ty, row, out);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if ty == GgmlType::F16 && self.isa == Isa::Avx512 && row.len() >= 2 * out.len() {
            // SAFETY: `Kernels` with this ISA exist only when `detect_avx512` saw the features;
            // `row` holds `out.len()` halves.
            unsafe { avx512::half_row(row, out) };
            return;
        }
        dequantize_other_row(self.isa, ty, row, out);
    }

    /// Dot product of one quantized row with `x`; `scratch` holds `x.len()` floats for formats
    /// without a fused kernel.
    #[inline]
    pub fn dot_row(self, ty: GgmlType, row: &[u8], x: &[f32], scratch: &mut [f32]) -> f32 {
        match ty {
            GgmlType::Q4_1 => dot_q4_1(self.isa, row, x),
            GgmlType::Q4_0 => dot_q4_0(self.isa, row, x),
            GgmlType::Q8_0 => dot_q8_0(self.isa, row, x),
            _ => {
                self.dequantize_row(ty, row, scratch);
                self.dot_f32(scratch, x)
            }
        }
    }
}

/// Define `fn NAME(isa, args…)` that runs one portable body compiled three ways: plain, and
/// inside `#[target_feature]` functions for AVX2+FMA and AVX-512, where the compiler vectorises
/// it for those units.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($arg:ident : $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        fn $name(isa: Isa, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
            fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            match isa {
                // SAFETY: `Kernels` with this ISA exist only when `detect_avx512` saw the features.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above, with `detect_avx2`.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}

fn detect() -> Isa {
    if detect_avx512() {
        Isa::Avx512
    } else if detect_avx2() {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

fn detect_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

fn detect_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        detect_avx2()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

const LANES: usize = 32;

/// Sum of `N` (a power of two) running sums by halving, so the compiler reduces a vector
/// register in log₂ N shuffles and adds instead of N dependent scalar adds.
#[inline(always)]
fn hsum<const N: usize>(mut a: [f32; N]) -> f32 {
    let mut w = N;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            a[i] += a[i + w];
        }
    }
    a[0]
}

multiversion! { fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    hsum(acc) + tail
}}

multiversion! {
/// Causal attention of one query head `q` (`hd` floats) over `span` cached positions: position
/// `p`'s key and value start at `p · stride` in `keys` and `values`. `scores` holds `span`
/// floats of scratch; `out` (`hd` floats) receives the softmax-weighted sum of the values.
/// Returns the largest score and the sum of the exponentials (relative to it).
fn attend_head(q: &[f32], kv: KvView<'_>, span: usize, scale: f32, scores: &mut [f32], out: &mut [f32]) -> (f32, f32) {
    let KvView { keys, values, stride } = kv;
    let hd = q.len();
    let scores = &mut scores[..span];
    let mut max = f32::NEG_INFINITY;
    for (p, sc) in scores.iter_mut().enumerate() {
        let kp = &keys[p * stride..p * stride + hd];
        let mut acc = [0f32; 16];
        let mut ck = kp.chunks_exact(16);
        let mut cq = q.chunks_exact(16);
        for (a, b) in (&mut ck).zip(&mut cq) {
            for i in 0..16 {
                acc[i] += f16_to_f32(a[i]) * b[i];
            }
        }
        let mut s = hsum(acc);
        for (a, b) in ck.remainder().iter().zip(cq.remainder()) {
            s += f16_to_f32(*a) * b;
        }
        *sc = s * scale;
        max = max.max(*sc);
    }
    let mut sum = 0.0;
    for sc in scores.iter_mut() {
        *sc = (*sc - max).exp();
        sum += *sc;
    }
    let inv = 1.0 / sum;
    out.fill(0.0);
    for (p, &sc) in scores.iter().enumerate() {
        let w = sc * inv;
        for (o, &v) in out.iter_mut().zip(&values[p * stride..p * stride + hd]) {
            *o += w * f16_to_f32(v);
        }
    }
    (max, sum)
}}

/// `e^x` from arithmetic alone (Cephes' `expf` polynomial, within 2 ulp of libm for
/// `-87 ≤ x ≤ 88`), so loops over slices vectorise; below -87 it returns 0, above 88 it returns
/// e^88. `n` is rounded with the 1.5·2^23 trick.
#[inline(always)]
pub(super) fn exp_approx(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = n.mul_add(-0.693_359_4, xc);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = p.mul_add(r, c);
    }
    let p = p.mul_add(r * r, r + 1.0);
    // 2^n: with 2^23 + 127 added, the low mantissa bits of the sum hold n + 127 (an integer
    // in 40..=215), which shifted into place are the exponent bits (no float-to-int cast, which
    // in Rust saturates and would not vectorise).
    let scale = f32::from_bits((n + 8_388_735.0).to_bits() << 23);
    if x < -87.0 { 0.0 } else { p * scale }
}

multiversion! { fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp_approx(-*g)) * u;
    }
}}

multiversion! { fn max_f32(x: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for &v in m.iter().chain(chunks.remainder()) {
        best = if v > best { v } else { best };
    }
    best
}}

multiversion! { fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(weight.len()) {
        let mut acc = [0f64; 8];
        let mut chunks = row.chunks_exact(8);
        for c in &mut chunks {
            for i in 0..8 {
                acc[i] += f64::from(c[i]) * f64::from(c[i]);
            }
        }
        let mut ss = chunks.remainder().iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        for a in acc {
            ss += a;
        }
        let scale = (1.0 / (ss / row.len() as f64 + f64::from(eps)).sqrt()) as f32;
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}}

multiversion! { fn rope_rotate(x: &mut [f32], head_dim: usize, angles: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(s, c)) in head.chunks_exact_mut(2).zip(angles) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * c - b * s;
            pair[1] = a * s + b * c;
        }
    }
}}

multiversion! { fn sum_f32(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    hsum(acc) + chunks.remainder().iter().sum::<f32>()
}}

multiversion! { fn exp_weights(x: &[f32], shift: f32, scale: f32, out: &mut [f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut xs = x.chunks_exact(16);
    let mut os = out.chunks_exact_mut(16);
    for (c, o) in (&mut xs).zip(&mut os) {
        for i in 0..16 {
            o[i] = exp_approx((c[i] - shift) * scale);
            acc[i] += o[i];
        }
    }
    let mut tail = 0.0;
    for (&v, o) in xs.remainder().iter().zip(os.into_remainder()) {
        *o = exp_approx((v - shift) * scale);
        tail += *o;
    }
    hsum(acc) + tail
}}

multiversion! { fn axpy(out: &mut [f32], w: f32, v: &[f32]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o += w * x;
    }
}}

#[inline(always)]
fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Dequantize one repacked block (see `packed_block_bytes`).
#[inline(always)]
pub fn dequantize_packed_block(ty: GgmlType, b: &[u8], y: &mut [f32]) {
    match ty {
        GgmlType::Q4_1 => {
            let (d, m) = (f32_at(b, 0), f32_at(b, 4));
            for j in 0..16 {
                y[j] = f32::from(b[8 + j] & 0xf) * d + m;
                y[j + 16] = f32::from(b[8 + j] >> 4) * d + m;
            }
        }
        GgmlType::Q4_0 => {
            let d = f32_at(b, 0);
            for j in 0..16 {
                y[j] = (f32::from(b[4 + j] & 0xf) - 8.0) * d;
                y[j + 16] = (f32::from(b[4 + j] >> 4) - 8.0) * d;
            }
        }
        GgmlType::Q8_0 => {
            let d = f32_at(b, 0);
            for j in 0..32 {
                y[j] = f32::from(b[4 + j] as i8) * d;
            }
        }
        _ => y.fill(f32::NAN),
    }
}

// The quantized dot products keep 16 running sums across blocks (one vector register wide) and
// add them up once at the end, so the loops vectorise without a horizontal sum per block.

multiversion! { fn dot_q4_1(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (b, xs) in row.chunks_exact(24).zip(x.chunks_exact(32)) {
        let d = f32_at(b, 0);
        let m = f32_at(b, 4);
        let qs: &[u8; 16] = b[8..24].try_into().unwrap_or(&[0; 16]);
        let (x0, x1) = xs.split_at(16);
        for j in 0..16 {
            let lo = f32::from(qs[j] & 0xf);
            let hi = f32::from(qs[j] >> 4);
            acc[j] += d * (lo * x0[j] + hi * x1[j]) + m * (x0[j] + x1[j]);
        }
    }
    hsum(acc)
}}

multiversion! { fn dot_q4_0(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (b, xs) in row.chunks_exact(20).zip(x.chunks_exact(32)) {
        let d = f32_at(b, 0);
        let qs: &[u8; 16] = b[4..20].try_into().unwrap_or(&[0; 16]);
        let (x0, x1) = xs.split_at(16);
        for j in 0..16 {
            let lo = f32::from(qs[j] & 0xf) - 8.0;
            let hi = f32::from(qs[j] >> 4) - 8.0;
            acc[j] += d * (lo * x0[j] + hi * x1[j]);
        }
    }
    hsum(acc)
}}

multiversion! { fn dot_q8_0(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    for (b, xs) in row.chunks_exact(36).zip(x.chunks_exact(32)) {
        let d = f32_at(b, 0);
        let qs: &[u8; 32] = b[4..36].try_into().unwrap_or(&[0; 32]);
        for j in 0..32 {
            acc[j] += d * (f32::from(qs[j] as i8) * xs[j]);
        }
    }
    hsum(acc)
}}

/// Tokens one pass of [`Kernels::dot_row_tokens`] multiplies with each converted block.
pub const ROW_TOKENS: usize = 8;
/// Tokens the portable form keeps in registers at once (it takes [`ROW_TOKENS`] in groups).
const PORTABLE_ROW_TOKENS: usize = 4;

multiversion! {
    /// `out[t] = row · xs[t]` for up to `PORTABLE_ROW_TOKENS` tokens of `cols` floats each: every block
    /// of a repacked Q4_0, Q4_1 or Q8_0 row is converted to floats once and multiplied with each
    /// token while it sits in registers (batched decoding).
    fn dot_row_tokens(ty: GgmlType, row: &[u8], xs: &[f32], cols: usize, out: &mut [f32]) {
    let n = out.len().min(PORTABLE_ROW_TOKENS);
    let mut acc = [[0f32; 16]; PORTABLE_ROW_TOKENS];
    let bytes = match ty {
        GgmlType::Q4_1 => 24,
        GgmlType::Q4_0 => 20,
        _ => 36,
    };
    for (bi, b) in row.chunks_exact(bytes).enumerate() {
        let mut w = [0f32; 32];
        dequantize_packed_block(ty, b, &mut w);
        for (t, a) in acc.iter_mut().enumerate().take(n) {
            let Some(x) = xs.get(t * cols + bi * 32..t * cols + bi * 32 + 32) else {
                continue;
            };
            for j in 0..16 {
                a[j] += w[j] * x[j] + w[j + 16] * x[j + 16];
            }
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = hsum(a);
    }
}}

/// Weight rows multiplied together by [`Kernels::gemm_tile`].
pub const TILE_ROWS: usize = 4;
/// Tokens multiplied together in registers by [`Kernels::gemm_tile`].
#[cfg_attr(
    not(target_arch = "x86_64"),
    expect(dead_code, reason = "used by the AVX-512 kernel")
)]
const TILE_TOKENS: usize = 4;
/// Accumulator width: one AVX-512 register of f32.
#[cfg_attr(
    not(target_arch = "x86_64"),
    expect(dead_code, reason = "used by the AVX-512 kernel")
)]
const TILE_LANES: usize = 16;

/// Portable form of [`Kernels::gemm_tile`] (and the one AVX2 uses): one vectorised dot product
/// per (row, token).
#[inline(always)]
fn gemm_tile_by_dots(isa: Isa, w: &[f32], cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    for (r, o) in out.chunks_exact_mut(n).enumerate().take(TILE_ROWS) {
        let wr = &w[r * cols..(r + 1) * cols];
        for (t, y) in o.iter_mut().enumerate() {
            *y = dot_f32(isa, wr, &x[t * cols..(t + 1) * cols]);
        }
    }
}

fn gemm_tile(isa: Isa, w: &[f32], cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    let rows = (out.len() / n.max(1)).min(TILE_ROWS);
    if w.len() < TILE_ROWS * cols || x.len() < n * cols {
        out.fill(f32::NAN);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && cols.is_multiple_of(TILE_LANES) {
        // SAFETY: `Kernels` with this ISA exist only when `detect_avx512` saw the features; the
        // slice lengths were checked above, as `avx512::gemm_tile` requires.
        unsafe { avx512::gemm_tile(w, cols, x, n, &mut out[..rows * n]) };
        return;
    }
    gemm_tile_by_dots(isa, w, cols, x, n, &mut out[..rows * n]);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m128i, __m512, _MM_FROUND_TO_NEAREST_INT, _MM_HINT_T0, _mm_and_si128, _mm_loadu_si128,
        _mm_prefetch, _mm_set1_epi8, _mm_srli_epi16, _mm256_loadu_si256, _mm256_storeu_si256,
        _mm512_add_ps, _mm512_cvtepi8_epi32, _mm512_cvtepi32_ps, _mm512_cvtepu8_epi32,
        _mm512_cvtph_ps, _mm512_cvtps_ph, _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_loadu_ps,
        _mm512_max_ps, _mm512_mul_ps, _mm512_reduce_add_ps, _mm512_reduce_max_ps,
        _mm512_roundscale_ps, _mm512_scalef_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps, _mm512_sub_ps,
        _mm512_unpackhi_ps, _mm512_unpacklo_ps,
    };

    use super::{KvView, TILE_LANES, TILE_ROWS, TILE_TOKENS};

    /// `TILE_ROWS × T` dot products of the rows at `w` (stride `cols`) with the tokens at `x`
    /// (stride `cols`), in `TILE_ROWS × T` registers.
    ///
    /// # Safety
    /// AVX-512F and FMA are available; `w` holds `TILE_ROWS × cols` floats and `x` holds
    /// `T × cols`; `cols` is a multiple of `TILE_LANES`.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn block<const T: usize>(
        w: *const f32,
        x: *const f32,
        cols: usize,
    ) -> [[f32; T]; TILE_ROWS] {
        let mut acc = [[_mm512_setzero_ps(); T]; TILE_ROWS];
        let mut c = 0;
        while c < cols {
            let mut wv: [__m512; TILE_ROWS] = [_mm512_setzero_ps(); TILE_ROWS];
            for (r, v) in wv.iter_mut().enumerate() {
                // SAFETY: `r * cols + c + 16 ≤ TILE_ROWS × cols` (the caller's contract).
                *v = unsafe { _mm512_loadu_ps(w.add(r * cols + c)) };
            }
            for t in 0..T {
                // SAFETY: `t * cols + c + 16 ≤ T × cols` (the caller's contract).
                let xv = unsafe { _mm512_loadu_ps(x.add(t * cols + c)) };
                for (a, wr) in acc.iter_mut().zip(&wv) {
                    a[t] = _mm512_fmadd_ps(*wr, xv, a[t]);
                }
            }
            c += TILE_LANES;
        }
        let mut res = [[0f32; T]; TILE_ROWS];
        for (rr, ar) in res.iter_mut().zip(&acc) {
            for (y, a) in rr.iter_mut().zip(ar) {
                *y = _mm512_reduce_add_ps(*a);
            }
        }
        res
    }

    /// `e^x` in each lane (Cephes' polynomial for `expf`, within 2 ulp of it; `x ≤ 88`), for the
    /// softmax of attention scores (all ≤ 0 there).
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn exp16(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-103.0));
        // x = n·ln 2 + r, |r| ≤ ln 2 / 2 (ln 2 in two parts, so r stays exact).
        let n = _mm512_roundscale_ps::<0x08>(_mm512_mul_ps(
            x,
            _mm512_set1_ps(std::f32::consts::LOG2_E),
        ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let p = _mm512_fmadd_ps(
            p,
            _mm512_mul_ps(r, r),
            _mm512_add_ps(r, _mm512_set1_ps(1.0)),
        );
        _mm512_scalef_ps(p, n)
    }

    /// Lane `j` of the result is the sum of the lanes of `a[j]`: sixteen horizontal sums in 45
    /// shuffles and adds (pairs within 128-bit lanes, then across them).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn hsum16(a: &[__m512; 16]) -> __m512 {
        // Per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3] for the pair (x, y) = (a[2k], a[2k+1]).
        let b: [__m512; 8] = std::array::from_fn(|k| {
            let (x, y) = (a[2 * k], a[2 * k + 1]);
            _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y))
        });
        // Per 128-bit lane: the partial sums of a[4m], a[4m+1], a[4m+2], a[4m+3].
        let c: [__m512; 4] = std::array::from_fn(|m| {
            let (p, q) = (b[2 * m], b[2 * m + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(p, q),
                _mm512_shuffle_ps::<0xEE>(p, q),
            )
        });
        // Then the 128-bit lanes summed: halves, then wholes, ending in a[0..16] order.
        let fold = |x: __m512, y: __m512| {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(x, y),
                _mm512_shuffle_f32x4::<0xDD>(x, y),
            )
        };
        fold(fold(c[0], c[1]), fold(c[2], c[3]))
    }

    /// 16 half floats at `p`, widened.
    ///
    /// # Safety
    /// AVX-512F is available; `p` points at 16 `u16`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_half(p: *const u16) -> __m512 {
        // SAFETY: 32 bytes at `p` (the caller's contract), read unaligned.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }

    /// The `out.len()` little-endian halves at the start of `row`, widened.
    ///
    /// # Safety
    /// AVX-512F is available; `row` holds at least `2 · out.len()` bytes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn half_row(row: &[u8], out: &mut [f32]) {
        let whole = out.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: bytes `2i..2i + 32` are inside `row`, floats `i..i + 16` inside `out`.
            unsafe {
                let v = _mm512_cvtph_ps(_mm256_loadu_si256(row.as_ptr().add(2 * i).cast()));
                _mm512_storeu_ps(out.as_mut_ptr().add(i), v);
            }
        }
        for (i, o) in out.iter_mut().enumerate().skip(whole) {
            *o = super::f16_to_f32(u16::from_le_bytes([row[2 * i], row[2 * i + 1]]));
        }
    }

    /// The halves of `src` (rounded to nearest, ties to even) appended to `dst`.
    ///
    /// # Safety
    /// AVX-512F is available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn to_half(src: &[f32], dst: &mut Vec<u16>) {
        let start = dst.len();
        dst.resize(start + src.len(), 0);
        let out = &mut dst[start..];
        let mut chunks = src.chunks_exact(16);
        for (c, o) in (&mut chunks).zip(out.chunks_exact_mut(16)) {
            // SAFETY: `c` holds 16 floats and `o` 16 halves.
            unsafe {
                let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm512_loadu_ps(c.as_ptr()));
                _mm256_storeu_si256(o.as_mut_ptr().cast(), h);
            }
        }
        let done = src.len() / 16 * 16;
        for (o, &v) in out[done..].iter_mut().zip(chunks.remainder()) {
            *o = super::f32_to_f16(v);
        }
    }

    /// Attention of `G` query heads of `C × 16` floats that share one kv head (see
    /// [`super::Kernels::attend_heads`]). Each block of 16 cached keys is scored for every head
    /// while it sits in L1, and each cached value is read once for all heads, so the cache is
    /// read from memory once per group instead of once per head.
    ///
    /// Head `g`'s largest score and sum of exponentials go to `stats[g]` (when it exists).
    ///
    /// # Safety
    /// AVX-512F and FMA are available; `q` and `out` hold `G × C × 16` floats, `scores` at least
    /// `G × span` with `span ≥ 1`, `keys` and `values` at least `(span − 1) · stride + C × 16`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn attend_group<const C: usize, const G: usize>(
        q: &[f32],
        kv: KvView<'_>,
        span: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
        stats: &mut [(f32, f32)],
    ) {
        let KvView {
            keys,
            values,
            stride,
        } = kv;
        let hd = C * 16;
        let load_q = |g: usize| -> [__m512; C] {
            std::array::from_fn(|i| {
                // SAFETY: `q` holds `G × C × 16` floats and `g < G`.
                unsafe { _mm512_loadu_ps(q.as_ptr().add(g * hd + i * 16)) }
            })
        };
        // Scores of 16 positions at a time: 16 running dot products, summed across lanes
        // together by `hsum16` (no horizontal sum per position).
        let mut maxv = [_mm512_set1_ps(f32::NEG_INFINITY); G];
        let whole = span / 16 * 16;
        for p0 in (0..whole).step_by(16) {
            for (g, mv) in maxv.iter_mut().enumerate() {
                let qv = load_q(g);
                let mut acc = [_mm512_setzero_ps(); 16];
                for (j, a) in acc.iter_mut().enumerate() {
                    let kp = keys[(p0 + j) * stride..].as_ptr();
                    for (i, v) in qv.iter().enumerate() {
                        // SAFETY: position `p0 + j < span` has `C × 16` halves at its offset.
                        *a = _mm512_fmadd_ps(*v, unsafe { load_half(kp.add(i * 16)) }, *a);
                    }
                }
                let sv = _mm512_mul_ps(hsum16(&acc), _mm512_set1_ps(scale));
                *mv = _mm512_max_ps(*mv, sv);
                // SAFETY: `scores` holds `G × span` floats and `p0 + 16 ≤ span`.
                unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(g * span + p0), sv) };
            }
        }
        let mut inv = [0f32; G];
        for (g, mv) in maxv.iter().enumerate() {
            let qv = load_q(g);
            let sg = &mut scores[g * span..(g + 1) * span];
            let mut max = _mm512_reduce_max_ps(*mv);
            for (p, sc) in sg.iter_mut().enumerate().skip(whole) {
                let kp = keys[p * stride..].as_ptr();
                let mut acc = _mm512_setzero_ps();
                for (i, v) in qv.iter().enumerate() {
                    // SAFETY: position `p < span` has `C × 16` halves at `p · stride`.
                    acc = _mm512_fmadd_ps(*v, unsafe { load_half(kp.add(i * 16)) }, acc);
                }
                *sc = _mm512_reduce_add_ps(acc) * scale;
                max = max.max(*sc);
            }
            let mut sum = 0.0;
            let mut chunks = sg.chunks_exact_mut(16);
            let (maxb, mut sumv) = (_mm512_set1_ps(max), _mm512_setzero_ps());
            for ch in &mut chunks {
                // SAFETY: `ch` holds 16 floats.
                unsafe {
                    let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(ch.as_ptr()), maxb));
                    _mm512_storeu_ps(ch.as_mut_ptr(), e);
                    sumv = _mm512_add_ps(sumv, e);
                }
            }
            for sc in chunks.into_remainder() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            sum += _mm512_reduce_add_ps(sumv);
            inv[g] = 1.0 / sum;
            if let Some(st) = stats.get_mut(g) {
                *st = (max, sum);
            }
        }
        let mut o = [[_mm512_setzero_ps(); C]; G];
        for p in 0..span {
            let vp = values[p * stride..].as_ptr();
            // SAFETY: as for the keys.
            let vv: [__m512; C] = std::array::from_fn(|i| unsafe { load_half(vp.add(i * 16)) });
            for (g, og) in o.iter_mut().enumerate() {
                let w = _mm512_set1_ps(scores[g * span + p] * inv[g]);
                for (a, v) in og.iter_mut().zip(&vv) {
                    *a = _mm512_fmadd_ps(w, *v, *a);
                }
            }
        }
        for (g, og) in o.iter().enumerate() {
            for (i, a) in og.iter().enumerate() {
                // SAFETY: `out` holds `G × C × 16` floats.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(g * hd + i * 16), *a) };
            }
        }
    }

    /// The packed block formats with a fused AVX-512 kernel (a const parameter of the kernels,
    /// so each format gets its own loop).
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Fmt {
        Q4_0,
        Q4_1,
        Q8_0,
    }
    const Q4_0: u8 = 0;
    const Q4_1: u8 = 1;
    const Q8_0: u8 = 2;

    /// Dot products of `R` packed rows at `w` (stride `row_bytes`) with the `blocks × 32`
    /// floats at `x`. Each row keeps two running sums (scaled products, and offsets times the
    /// block sums of `x`), reduced once at the end.
    ///
    /// # Safety
    /// AVX-512F/BW and FMA are available; `w` holds `R` rows of `row_bytes` bytes, each at least
    /// `blocks` packed blocks of `fmt`; `x` holds `blocks × 32` floats.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    unsafe fn quant_rows<const F: u8, const R: usize>(
        w: *const u8,
        row_bytes: usize,
        x: *const f32,
        blocks: usize,
    ) -> [f32; R] {
        let mask = _mm_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); R];
        let mut accm = [_mm512_setzero_ps(); R];
        for b in 0..blocks {
            // SAFETY: block `b` of `x` is inside its `blocks × 32` floats.
            let (x0, x1) = unsafe {
                (
                    _mm512_loadu_ps(x.add(b * 32)),
                    _mm512_loadu_ps(x.add(b * 32 + 16)),
                )
            };
            let xs = _mm512_add_ps(x0, x1);
            for r in 0..R {
                match F {
                    Q4_1 | Q4_0 => {
                        let (pb, qo) = if F == Q4_1 { (24, 8) } else { (20, 4) };
                        // SAFETY: block `b` of row `r` is inside `w` (the caller's contract);
                        // packed blocks hold f32 scales at offsets 0 (and 4 for Q4_1), then
                        // 16 bytes of nibbles at `qo`.
                        let (d, m, q) = unsafe {
                            let p = w.add(r * row_bytes + b * pb);
                            _mm_prefetch::<_MM_HINT_T0>(
                                p.wrapping_add(4 * R * row_bytes) as *const i8
                            );
                            let d = (p as *const f32).read_unaligned();
                            let m = if F == Q4_1 {
                                (p.add(4) as *const f32).read_unaligned()
                            } else {
                                -8.0 * d
                            };
                            (d, m, _mm_loadu_si128(p.add(qo) as *const __m128i))
                        };
                        let lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q, mask)));
                        let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(
                            _mm_srli_epi16(q, 4),
                            mask,
                        )));
                        let part = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
                        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d), part, acc[r]);
                        accm[r] = _mm512_fmadd_ps(_mm512_set1_ps(m), xs, accm[r]);
                    }
                    _ => {
                        // SAFETY: as above; Q8_0 blocks are an f32 scale and 32 signed bytes.
                        let (d, q0, q1) = unsafe {
                            let p = w.add(r * row_bytes + b * 36);
                            _mm_prefetch::<_MM_HINT_T0>(
                                p.wrapping_add(4 * R * row_bytes) as *const i8
                            );
                            (
                                (p as *const f32).read_unaligned(),
                                _mm_loadu_si128(p.add(4) as *const __m128i),
                                _mm_loadu_si128(p.add(20) as *const __m128i),
                            )
                        };
                        let w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0));
                        let w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1));
                        let part = _mm512_fmadd_ps(w1, x1, _mm512_mul_ps(w0, x0));
                        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d), part, acc[r]);
                    }
                }
            }
        }
        let mut res = [0f32; R];
        for r in 0..R {
            res[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r], accm[r]));
        }
        res
    }

    /// One packed row times up to [`super::ROW_TOKENS`] tokens: each block is converted to
    /// floats once (scale and offset folded in) and multiplied with every token in registers.
    ///
    /// # Safety
    /// AVX-512F/BW and FMA are available; `cols` is a multiple of 32; `row` holds `cols / 32`
    /// packed blocks of `fmt`; `xs` holds `out.len() × cols` floats; `out.len() ≤ ROW_TOKENS`.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub(super) unsafe fn row_tokens(
        fmt: Fmt,
        row: &[u8],
        xs: &[f32],
        cols: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the contract is passed on unchanged.
        unsafe {
            match fmt {
                Fmt::Q4_0 => row_tokens_fmt::<Q4_0>(row, xs, cols, out),
                Fmt::Q4_1 => row_tokens_fmt::<Q4_1>(row, xs, cols, out),
                Fmt::Q8_0 => row_tokens_fmt::<Q8_0>(row, xs, cols, out),
            }
        }
    }

    /// # Safety
    /// As for [`row_tokens`], with the format `F`.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    unsafe fn row_tokens_fmt<const F: u8>(row: &[u8], xs: &[f32], cols: usize, out: &mut [f32]) {
        const T: usize = super::ROW_TOKENS;
        let n = out.len().min(T);
        let blocks = cols / 32;
        let mask = _mm_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); T];
        let (w, x) = (row.as_ptr(), xs.as_ptr());
        for b in 0..blocks {
            let (w0, w1) = match F {
                Q4_1 | Q4_0 => {
                    let (pb, qo) = if F == Q4_1 { (24, 8) } else { (20, 4) };
                    // SAFETY: block `b` is inside `row` (the caller's contract); packed blocks
                    // hold f32 scales at 0 (and 4 for Q4_1), then 16 bytes of nibbles at `qo`.
                    let (d, m, q) = unsafe {
                        let p = w.add(b * pb);
                        // The caller walks rows in order: fetch the same block 4 rows on.
                        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(4 * row.len()) as *const i8);
                        let d = (p as *const f32).read_unaligned();
                        let m = if F == Q4_1 {
                            (p.add(4) as *const f32).read_unaligned()
                        } else {
                            -8.0 * d
                        };
                        (d, m, _mm_loadu_si128(p.add(qo) as *const __m128i))
                    };
                    let (dv, mv) = (_mm512_set1_ps(d), _mm512_set1_ps(m));
                    let lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q, mask)));
                    let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(
                        _mm_srli_epi16(q, 4),
                        mask,
                    )));
                    (_mm512_fmadd_ps(lo, dv, mv), _mm512_fmadd_ps(hi, dv, mv))
                }
                _ => {
                    // SAFETY: as above; Q8_0 blocks are an f32 scale and 32 signed bytes.
                    let (d, q0, q1) = unsafe {
                        let p = w.add(b * 36);
                        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(4 * row.len()) as *const i8);
                        (
                            (p as *const f32).read_unaligned(),
                            _mm_loadu_si128(p.add(4) as *const __m128i),
                            _mm_loadu_si128(p.add(20) as *const __m128i),
                        )
                    };
                    let dv = _mm512_set1_ps(d);
                    (
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), dv),
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), dv),
                    )
                }
            };
            for (t, a) in acc.iter_mut().enumerate().take(n) {
                // SAFETY: token `t < n` has `cols` floats in `xs`, and block `b` is inside them.
                let (x0, x1) = unsafe {
                    let p = x.add(t * cols + b * 32);
                    (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)))
                };
                *a = _mm512_fmadd_ps(w1, x1, _mm512_fmadd_ps(w0, x0, *a));
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = _mm512_reduce_add_ps(a);
        }
    }

    /// # Safety
    /// AVX-512F/BW and FMA are available; `x.len()` is a multiple of 32 and `rows` holds
    /// `out.len()` rows of `row_bytes` bytes, each the packed blocks of `fmt` for `x.len() / 32`
    /// blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub(super) unsafe fn gemv(fmt: Fmt, rows: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
        // SAFETY: the contract is passed on unchanged.
        unsafe {
            match fmt {
                Fmt::Q4_0 => gemv_fmt::<Q4_0>(rows, row_bytes, x, out),
                Fmt::Q4_1 => gemv_fmt::<Q4_1>(rows, row_bytes, x, out),
                Fmt::Q8_0 => gemv_fmt::<Q8_0>(rows, row_bytes, x, out),
            }
        }
    }

    /// # Safety
    /// As for [`gemv`], with the format `F`.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    unsafe fn gemv_fmt<const F: u8>(rows: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
        let blocks = x.len() / 32;
        let mut chunks = out.chunks_exact_mut(TILE_ROWS);
        let mut r0 = 0;
        for o in &mut chunks {
            // SAFETY: rows `r0..r0 + TILE_ROWS` are inside `rows` (the caller's contract).
            let res = unsafe {
                quant_rows::<F, TILE_ROWS>(
                    rows[r0 * row_bytes..].as_ptr(),
                    row_bytes,
                    x.as_ptr(),
                    blocks,
                )
            };
            o.copy_from_slice(&res);
            r0 += TILE_ROWS;
        }
        for y in chunks.into_remainder() {
            // SAFETY: row `r0` is inside `rows` (the caller's contract).
            let res = unsafe {
                quant_rows::<F, 1>(
                    rows[r0 * row_bytes..].as_ptr(),
                    row_bytes,
                    x.as_ptr(),
                    blocks,
                )
            };
            *y = res[0];
            r0 += 1;
        }
    }

    /// # Safety
    /// AVX-512F and FMA are available; `w.len() ≥ TILE_ROWS × cols`, `x.len() ≥ n × cols`,
    /// `cols.is_multiple_of(TILE_LANES)`; `out` is `rows × n` with `rows ≤ TILE_ROWS`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn gemm_tile(w: &[f32], cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
        let mut t0 = 0;
        while t0 < n {
            let xp = x[t0 * cols..].as_ptr();
            if n - t0 >= TILE_TOKENS {
                // SAFETY: tokens `t0..t0 + TILE_TOKENS` lie inside `x`; see the contract.
                let res = unsafe { block::<TILE_TOKENS>(w.as_ptr(), xp, cols) };
                for (o, rr) in out.chunks_exact_mut(n).zip(&res) {
                    o[t0..t0 + TILE_TOKENS].copy_from_slice(rr);
                }
                t0 += TILE_TOKENS;
            } else {
                // SAFETY: token `t0` lies inside `x`; see the contract.
                let res = unsafe { block::<1>(w.as_ptr(), xp, cols) };
                for (o, rr) in out.chunks_exact_mut(n).zip(&res) {
                    o[t0] = rr[0];
                }
                t0 += 1;
            }
        }
    }
}

multiversion! {
/// Rows of the formats without packed kernels (K-quants, half and full floats), through
/// hearth-gguf's block dequantization inlined here, so it is vectorised for each ISA.
fn dequantize_other_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    let (bs, ts) = (ty.block_size() as usize, ty.type_size() as usize);
    if bs == 0 || ts == 0 {
        out.fill(f32::NAN);
        return;
    }
    if ty == GgmlType::Q6_K {
        for (b, y) in row.chunks_exact(210).zip(out.chunks_exact_mut(256)) {
            q6_k_block(b, y);
        }
        return;
    }
    for (b, y) in row.chunks_exact(ts).zip(out.chunks_exact_mut(bs)) {
        hearth_gguf::quants::dequantize_block(ty, b, y);
    }
}}

/// One Q6_K block (210 bytes → 256 floats), the same arithmetic as hearth-gguf's in loops over
/// fixed-size arrays, which the compiler vectorises.
#[inline(always)]
fn q6_k_block(b: &[u8], y: &mut [f32]) {
    let d = f16_to_f32(u16::from_le_bytes([b[208], b[209]]));
    for n in 0..2 {
        let (Ok(ql), Ok(qh), Ok(sc), Some(Ok(y))) = (
            <&[u8; 64]>::try_from(&b[64 * n..64 * n + 64]),
            <&[u8; 32]>::try_from(&b[128 + 32 * n..160 + 32 * n]),
            <&[u8; 8]>::try_from(&b[192 + 8 * n..200 + 8 * n]),
            y.get_mut(128 * n..128 * n + 128)
                .map(<&mut [f32; 128]>::try_from),
        ) else {
            return;
        };
        // Halves of 16 share their scales: the scale is hoisted out of each inner loop.
        for is in 0..2 {
            let s = [0, 2, 4, 6].map(|k| d * f32::from(sc[is + k] as i8));
            for l in 16 * is..16 * is + 16 {
                let q1 = i16::from((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
                let q2 = i16::from((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                let q3 = i16::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                let q4 = i16::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = s[0] * f32::from(q1);
                y[l + 32] = s[1] * f32::from(q2);
                y[l + 64] = s[2] * f32::from(q3);
                y[l + 96] = s[3] * f32::from(q4);
            }
        }
    }
}

multiversion! { fn dequantize_packed_row(ty: GgmlType, row: &[u8], out: &mut [f32]) {
    if let Some(pb) = packed_block_bytes(ty) {
        for (b, y) in row.chunks_exact(pb).zip(out.chunks_exact_mut(32)) {
            dequantize_packed_block(ty, b, y);
        }
    }
}}
