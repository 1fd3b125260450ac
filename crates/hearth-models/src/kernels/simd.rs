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
        dot_f32(self.isa, a, b)
    }

    #[inline]
    pub fn axpy(self, out: &mut [f32], w: f32, v: &[f32]) {
        axpy(self.isa, out, w, v)
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
                super::dequantize_row(ty, row, scratch);
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
    acc.iter().sum::<f32>() + tail
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
    acc.iter().sum()
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
    acc.iter().sum()
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
    acc.iter().sum()
}}
