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
use hearth_gguf::quants::f16_to_f32;

/// Which instruction set a kernel table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
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
        dispatch!(self, dot_f32_body(a, b))
    }

    #[inline]
    pub fn axpy(self, out: &mut [f32], w: f32, v: &[f32]) {
        dispatch!(self, axpy_body(out, w, v))
    }

    /// Dot product of one quantized row with `x`; `scratch` holds `x.len()` floats for formats
    /// without a fused kernel.
    #[inline]
    pub fn dot_row(self, ty: GgmlType, row: &[u8], x: &[f32], scratch: &mut [f32]) -> f32 {
        match ty {
            GgmlType::Q4_1 => dispatch!(self, dot_q4_1_body(row, x)),
            GgmlType::Q4_0 => dispatch!(self, dot_q4_0_body(row, x)),
            GgmlType::Q8_0 => dispatch!(self, dot_q8_0_body(row, x)),
            _ => {
                super::dequantize_row(ty, row, scratch);
                self.dot_f32(scratch, x)
            }
        }
    }
}

macro_rules! dispatch {
    ($k:expr, $name:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma,f16c")]
            fn avx2<R>(f: impl FnOnce() -> R) -> R { f() }
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
            fn avx512<R>(f: impl FnOnce() -> R) -> R { f() }
            match $k.isa {
                // SAFETY: `Kernels` with these ISAs exist only when `detect_*` saw the features.
                Isa::Avx512 => unsafe { avx512(|| $name($($arg),*)) },
                // SAFETY: as above.
                Isa::Avx2 => unsafe { avx2(|| $name($($arg),*)) },
                Isa::Portable => $name($($arg),*),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $name($($arg),*)
        }
    }};
}
use dispatch;

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

const LANES: usize = 16;

#[inline(always)]
fn dot_f32_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail = x.mul_add(*y, tail);
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn axpy_body(out: &mut [f32], w: f32, v: &[f32]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o = w.mul_add(x, *o);
    }
}

#[inline(always)]
fn half_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

#[inline(always)]
fn dot_q4_1_body(row: &[u8], x: &[f32]) -> f32 {
    let mut total = 0f32;
    for (b, xs) in row.chunks_exact(20).zip(x.chunks_exact(32)) {
        let d = half_at(b, 0);
        let m = half_at(b, 2);
        let qs = &b[4..20];
        let mut sq = [0f32; 16];
        let mut sx = [0f32; 16];
        for j in 0..16 {
            let lo = f32::from(qs[j] & 0xf);
            let hi = f32::from(qs[j] >> 4);
            sq[j] = lo.mul_add(xs[j], hi * xs[j + 16]);
            sx[j] = xs[j] + xs[j + 16];
        }
        let sq: f32 = sq.iter().sum();
        let sx: f32 = sx.iter().sum();
        total += d.mul_add(sq, m * sx);
    }
    total
}

#[inline(always)]
fn dot_q4_0_body(row: &[u8], x: &[f32]) -> f32 {
    let mut total = 0f32;
    for (b, xs) in row.chunks_exact(18).zip(x.chunks_exact(32)) {
        let d = half_at(b, 0);
        let qs = &b[2..18];
        let mut sq = [0f32; 16];
        for j in 0..16 {
            let lo = f32::from(qs[j] & 0xf) - 8.0;
            let hi = f32::from(qs[j] >> 4) - 8.0;
            sq[j] = lo.mul_add(xs[j], hi * xs[j + 16]);
        }
        total += d * sq.iter().sum::<f32>();
    }
    total
}

#[inline(always)]
fn dot_q8_0_body(row: &[u8], x: &[f32]) -> f32 {
    let mut total = 0f32;
    for (b, xs) in row.chunks_exact(34).zip(x.chunks_exact(32)) {
        let d = half_at(b, 0);
        let qs = &b[2..34];
        let mut sq = [0f32; 32];
        for j in 0..32 {
            sq[j] = f32::from(qs[j] as i8) * xs[j];
        }
        total += d * sq.iter().sum::<f32>();
    }
    total
}
