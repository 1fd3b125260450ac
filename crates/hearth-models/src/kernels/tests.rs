use super::simd::Kernels;
use super::*;
use hearth_gguf::quants::{f16_to_f32, f32_to_f16};
use proptest::prelude::*;

fn block_q4_1(d: f32, m: f32, qs: &[u8; 16]) -> Vec<u8> {
    let mut b = f32_to_f16(d).to_le_bytes().to_vec();
    b.extend(f32_to_f16(m).to_le_bytes());
    b.extend(qs);
    b
}

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-4 * scale.max(1.0)
}

proptest! {
    #[test]
    fn dot_variants_agree(a in proptest::collection::vec(-4f32..4.0, 0..300)) {
        let b: Vec<f32> = a.iter().map(|x| x * 0.5 - 1.0).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
        for k in Kernels::available() {
            let got = k.dot_f32(&a, &b);
            prop_assert!(close(got, naive as f32, mag), "{:?}: {got} vs {naive}", k.isa);
        }
    }

    #[test]
    fn fused_q4_1_matches_dequantize_then_dot(
        blocks in proptest::collection::vec((0.0f32..0.5, -2f32..2.0, proptest::array::uniform16(any::<u8>())), 1..6),
        seed in any::<u32>(),
    ) {
        let ggml: Vec<u8> = blocks.iter().flat_map(|(d, m, qs)| block_q4_1(*d, *m, qs)).collect();
        let row = pack_blocks(GgmlType::Q4_1, &ggml);
        let n = blocks.len() * 32;
        let x: Vec<f32> = (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 250.0 - 2.0).collect();
        // The reference: hearth-gguf's scalar dequantization of the original ggml blocks.
        let deq = hearth_gguf::quants::dequantize_to_vec(GgmlType::Q4_1, &ggml).unwrap();
        let mut packed_deq = vec![0f32; n];
        dequantize_row(GgmlType::Q4_1, &row, &mut packed_deq);
        prop_assert_eq!(&packed_deq, &deq);
        let naive: f64 = deq.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let mag: f32 = deq.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
        let mut scratch = vec![0f32; n];
        for k in Kernels::available() {
            {
                let ty = GgmlType::Q4_1;
                let got = k.dot_row(ty, &row, &x, &mut scratch);
                prop_assert!(close(got, naive as f32, mag), "{:?}: {got} vs {naive}", k.isa);
            }
        }
    }

    #[test]
    fn fused_q8_0_and_q4_0_match(bytes in proptest::collection::vec(any::<u8>(), 34 * 3), seed in any::<u32>()) {
        // Give every block a sane f16 scale; quant bytes stay random.
        for (ty, ts) in [(GgmlType::Q8_0, 34usize), (GgmlType::Q4_0, 18usize)] {
            let mut row = bytes[..ts * 3].to_vec();
            for b in row.chunks_exact_mut(ts) {
                let scale = f32_to_f16(0.01 + f32::from(b[2]) / 512.0).to_le_bytes();
                b[..2].copy_from_slice(&scale);
            }
            let ggml = row.clone();
            let row = pack_blocks(ty, &ggml);
            let x: Vec<f32> = (0..96u32).map(|i| (i.wrapping_mul(40503).wrapping_add(seed) % 997) as f32 / 300.0 - 1.5).collect();
            let deq = hearth_gguf::quants::dequantize_to_vec(ty, &ggml).unwrap();
            let mut packed_deq = vec![0f32; 96];
            dequantize_row(ty, &row, &mut packed_deq);
            prop_assert_eq!(&packed_deq, &deq);
            let naive: f64 = deq.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            let mag: f32 = deq.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
            let mut scratch = vec![0f32; 96];
            for k in Kernels::available() {
                let got = k.dot_row(ty, &row, &x, &mut scratch);
                prop_assert!(close(got, naive as f32, mag), "{ty} {:?}: {got} vs {naive}", k.isa);
            }
        }
    }
}

#[test]
fn matmul_matches_naive_for_one_and_many_tokens() {
    let pool = ThreadPool::new(2).unwrap();
    let (rows, cols) = (37, 64);
    let data: Vec<u8> = (0..rows * 2)
        .flat_map(|i| {
            let qs: [u8; 16] = std::array::from_fn(|j| (i * 31 + j * 7) as u8);
            block_q4_1(0.03 + (i % 5) as f32 * 0.01, -0.2, &qs)
        })
        .collect();
    let w = QMatrix::new(GgmlType::Q4_1, rows, cols, &data).unwrap();
    for n in [1, 3, 4, 6, 9] {
        let x: Vec<f32> = (0..n * cols).map(|i| (i % 13) as f32 / 7.0 - 0.9).collect();
        let mut out = vec![0f32; n * rows];
        matmul(&pool, &w, &x, n, &mut out);
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            w.dequantize_row(r, &mut row);
            for t in 0..n {
                let want: f32 = row.iter().zip(&x[t * cols..]).map(|(a, b)| a * b).sum();
                assert!((out[t * rows + r] - want).abs() < 1e-3, "r{r} t{t}");
            }
        }
    }
}

#[test]
fn softmax_and_rope_basics() {
    let mut x = vec![1.0, 2.0, 3.0];
    softmax(&mut x);
    assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!(x[2] > x[1] && x[1] > x[0]);
    // Rotating by position 0 is the identity; rope preserves each pair's norm.
    let mut v = vec![1.0, 2.0, 3.0, 4.0];
    rope(&mut v, 4, 0, &[1.0, 0.01]);
    assert_eq!(v, [1.0, 2.0, 3.0, 4.0]);
    rope(&mut v, 4, 7, &[1.0, 0.01]);
    assert!((v[0].hypot(v[1]) - 5f32.sqrt()).abs() < 1e-5);
    assert!((v[2].hypot(v[3]) - 5.0).abs() < 1e-5);
}

/// Random packed rows of `ty` with sane scales: `rows` rows of `blocks` blocks.
fn random_rows(ty: GgmlType, rows: usize, blocks: usize, seed: u32) -> (Vec<u8>, Vec<u8>) {
    let ts = ty.type_size() as usize;
    let mut ggml: Vec<u8> = (0..rows * blocks * ts)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect();
    for (i, b) in ggml.chunks_exact_mut(ts).enumerate() {
        b[..2].copy_from_slice(&f32_to_f16(0.01 + (i % 7) as f32 / 64.0).to_le_bytes());
        if ty == GgmlType::Q4_1 {
            b[2..4].copy_from_slice(&f32_to_f16(-0.3 + (i % 5) as f32 / 16.0).to_le_bytes());
        }
    }
    let packed = pack_blocks(ty, &ggml);
    (ggml, packed)
}

proptest! {
    /// The matrix-vector kernels (several rows at once) against hearth-gguf's scalar
    /// dequantization and a float64 dot product, for every format and variant.
    #[test]
    fn gemv_matches_reference(rows in 1usize..11, blocks in 1usize..5, seed in any::<u32>()) {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let (ggml, packed) = random_rows(ty, rows, blocks, seed);
            let cols = blocks * 32;
            let row_bytes = packed.len() / rows;
            let x: Vec<f32> = (0..cols as u32).map(|i| (i.wrapping_mul(40503).wrapping_add(seed) % 997) as f32 / 300.0 - 1.5).collect();
            let deq = hearth_gguf::quants::dequantize_to_vec(ty, &ggml).unwrap();
            let mut scratch = vec![0f32; cols];
            for k in Kernels::available() {
                let mut out = vec![0f32; rows];
                k.gemv(ty, &packed, row_bytes, &x, &mut out, &mut scratch);
                for (r, got) in out.iter().enumerate() {
                    let wr = &deq[r * cols..(r + 1) * cols];
                    let naive: f64 = wr.iter().zip(&x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                    let mag: f32 = wr.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
                    prop_assert!(close(*got, naive as f32, mag), "{ty} {:?} row {r}: {got} vs {naive}", k.isa);
                }
            }
        }
    }

    /// The batched-decoding kernel (one row, up to four tokens) against hearth-gguf's scalar
    /// dequantization and float64 dot products, for every format and variant.
    #[test]
    fn dot_row_tokens_matches_reference(blocks in 1usize..5, n in 1usize..=simd::ROW_TOKENS, seed in any::<u32>()) {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let (ggml, packed) = random_rows(ty, 1, blocks, seed);
            let cols = blocks * 32;
            let xs: Vec<f32> = (0..(n * cols) as u32).map(|i| (i.wrapping_mul(40503).wrapping_add(seed) % 997) as f32 / 300.0 - 1.5).collect();
            let deq = hearth_gguf::quants::dequantize_to_vec(ty, &ggml).unwrap();
            for k in Kernels::available() {
                let mut out = vec![f32::NAN; n];
                k.dot_row_tokens(ty, &packed, &xs, cols, &mut out);
                for (t, got) in out.iter().enumerate() {
                    let xt = &xs[t * cols..(t + 1) * cols];
                    let naive: f64 = deq.iter().zip(xt).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                    let mag: f32 = deq.iter().zip(xt).map(|(a, b)| (a * b).abs()).sum();
                    prop_assert!(close(*got, naive as f32, mag), "{ty} {:?} token {t}: {got} vs {naive}", k.isa);
                }
            }
        }
    }

    /// The register-tiled f32 kernel (several rows × several tokens) against float64 dot
    /// products, for widths that are and are not multiples of the vector width.
    #[test]
    fn gemm_tile_matches_reference(cols in 1usize..100, n in 1usize..11, valid in 1usize..=simd::TILE_ROWS, seed in any::<u32>()) {
        let val = |i: usize, s: u32| ((i as u32).wrapping_mul(2654435761).wrapping_add(s) % 1000) as f32 / 250.0 - 2.0;
        let w: Vec<f32> = (0..simd::TILE_ROWS * cols).map(|i| val(i, seed)).collect();
        let x: Vec<f32> = (0..n * cols).map(|i| val(i, seed ^ 0x5555)).collect();
        for k in Kernels::available() {
            let mut out = vec![f32::NAN; valid * n];
            k.gemm_tile(&w, cols, &x, n, &mut out);
            for r in 0..valid {
                for t in 0..n {
                    let (wr, xt) = (&w[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols]);
                    let naive: f64 = wr.iter().zip(xt).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                    let mag: f32 = wr.iter().zip(xt).map(|(a, b)| (a * b).abs()).sum();
                    let got = out[r * n + t];
                    prop_assert!(close(got, naive as f32, mag), "{:?} r{r} t{t}: {got} vs {naive}", k.isa);
                }
            }
        }
    }
}

proptest! {
    /// One head's causal attention against a float64 softmax-weighted sum, for head widths
    /// with (64, 128) and without (24, 40) a dedicated kernel.
    #[test]
    fn attend_head_matches_reference(hd_i in 0usize..4, span in 1usize..70, heads in 1usize..4, seed in any::<u32>()) {
        let hd = [64, 128, 24, 40][hd_i];
        let stride = hd * heads;
        let val = |i: usize, s: u32| ((i as u32).wrapping_mul(2654435761).wrapping_add(s) % 1000) as f32 / 500.0 - 1.0;
        let q: Vec<f32> = (0..hd).map(|i| val(i, seed)).collect();
        let keys: Vec<u16> = (0..span * stride).map(|i| f32_to_f16(val(i, seed ^ 1))).collect();
        let values: Vec<u16> = (0..span * stride).map(|i| f32_to_f16(val(i, seed ^ 2))).collect();
        let scale = 1.0 / (hd as f64).sqrt();
        let logits: Vec<f64> = (0..span)
            .map(|p| (0..hd).map(|j| f64::from(q[j]) * f64::from(f16_to_f32(keys[p * stride + j]))).sum::<f64>() * scale)
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let z: f64 = e.iter().sum();
        let want: Vec<f64> = (0..hd)
            .map(|j| (0..span).map(|p| e[p] / z * f64::from(f16_to_f32(values[p * stride + j]))).sum())
            .collect();
        for k in Kernels::available() {
            let mut scores = vec![0f32; span];
            let mut out = vec![f32::NAN; hd];
            let kv = simd::KvView { keys: &keys, values: &values, stride };
            k.attend_head(&q, kv, span, scale as f32, &mut scores, &mut out);
            for (j, (got, w)) in out.iter().zip(&want).enumerate() {
                prop_assert!((f64::from(*got) - w).abs() < 1e-5, "{:?} hd {hd} span {span} [{j}]: {got} vs {w}", k.isa);
            }
        }
    }
}

/// Packed rows of `ty` with sane scales, interleaved, and their float64 dequantization.
/// Also each block's offset (`m` of Q4_1, `-8·d` of Q4_0, 0 for Q8_0).
fn interleaved_rows(
    ty: GgmlType,
    rows: usize,
    blocks: usize,
    seed: u32,
) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
    let (ggml, packed) = random_rows(ty, rows, blocks, seed);
    let il = interleaved::interleave(ty, &packed, rows, blocks * 32).unwrap();
    let deq = hearth_gguf::quants::dequantize_to_vec(ty, &ggml).unwrap();
    let f16 = |b: &[u8]| hearth_gguf::quants::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    let offsets = ggml
        .chunks_exact(ty.type_size() as usize)
        .map(|b| match ty {
            GgmlType::Q4_1 => f16(&b[2..]),
            GgmlType::Q4_0 => -8.0 * f16(b),
            _ => 0.0,
        })
        .collect();
    (il, deq, offsets)
}

fn tokens(n: usize, cols: usize, seed: u32) -> Vec<f32> {
    (0..(n * cols) as u32)
        .map(|i| {
            let v = (i.wrapping_mul(40503).wrapping_add(seed) % 997) as f32 / 300.0 - 1.5;
            // An outlier now and then, as real activations have.
            if i % 97 == 5 { v * 40.0 } else { v }
        })
        .collect()
}

proptest! {
    /// Activation quantization: the form this CPU runs and the portable one give the same
    /// integers and scales, the block sums within float rounding; each activation is within
    /// half a step of its quantized value.
    #[test]
    fn activation_quantization_agrees(n in 1usize..4, blocks in 1usize..4, seed in any::<u32>(), zero_block in any::<bool>()) {
        let cols = blocks * 32;
        let mut x = tokens(n, cols, seed);
        if zero_block {
            x[..32].fill(0.0);
        }
        let got = interleaved::quantize_acts(&x, n, cols);
        let want = interleaved::quantize_acts_portable(&x, n, cols);
        prop_assert_eq!(&got.q, &want.q);
        prop_assert_eq!(&got.d, &want.d);
        for (i, (a, b)) in got.s.iter().zip(&want.s).enumerate() {
            let mag: f32 = x[i * 32..(i + 1) * 32].iter().map(|v| v.abs()).sum();
            prop_assert!((a - b).abs() <= 1e-5 * mag.max(1.0), "block {}: {} vs {}", i, a, b);
        }
        for (i, (&v, &q)) in x.iter().zip(&got.q).enumerate() {
            let d = got.d[i / 32];
            prop_assert!((v - d * f32::from(q)).abs() <= d * 0.51 + 1e-30, "{}: {} vs {}·{}", i, v, d, q);
        }
    }

    /// The AVX-512 VNNI kernel (where the CPU has it) and the portable reference give the same
    /// bits: both are exact integer sums followed by the same float operations.
    #[test]
    fn interleaved_kernel_matches_its_reference(groups in 1usize..3, blocks in 1usize..5, n in 1usize..=interleaved::MAX_TOKENS, seed in any::<u32>()) {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let cols = blocks * 32;
            let (il, _, _) = interleaved_rows(ty, groups * interleaved::GROUP, blocks, seed);
            let acts = interleaved::quantize_acts(&tokens(n, cols, seed), n, cols);
            let rec = interleaved::record_bytes(ty).unwrap();
            for g in 0..groups {
                let recs = &il[g * blocks * rec..(g + 1) * blocks * rec];
                let mut want = vec![0f32; n * interleaved::GROUP];
                interleaved::group_scalar(ty, recs, &acts, 0, &mut want);
                let mut got = vec![f32::NAN; n * interleaved::GROUP];
                interleaved::group_for_tests(ty, recs, &acts, 0, &mut got);
                prop_assert_eq!(&got, &want, "{} group {}", ty, g);
            }
        }
    }

    /// Products through the interleaved rows against hearth-gguf's scalar dequantization and
    /// float64 dot products, within the bound of 16-bit activations (half a step of each
    /// block's scale per activation, times the quantized weight `w − offset`) — for any row
    /// count (the last group padded).
    #[test]
    fn interleaved_matmul_matches_reference(rows in 1usize..40, blocks in 1usize..5, n in 1usize..20, seed in any::<u32>()) {
        let pool = ThreadPool::new(2).unwrap();
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let cols = blocks * 32;
            let (il, deq, offsets) = interleaved_rows(ty, rows, blocks, seed);
            let x = tokens(n, cols, seed ^ 7);
            let mut out = vec![f32::NAN; n * rows];
            interleaved::matmul(&pool, ty, &il, rows, cols, &x, n, &mut out);
            for t in 0..n {
                let xt = &x[t * cols..(t + 1) * cols];
                for r in 0..rows {
                    let wr = &deq[r * cols..(r + 1) * cols];
                    let naive: f64 = wr.iter().zip(xt).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                    let mag: f64 = wr.iter().zip(xt).map(|(a, b)| f64::from((a * b).abs())).sum();
                    let quant: f64 = wr.chunks(32).zip(xt.chunks(32)).enumerate().map(|(b, (wb, xb))| {
                        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let off = offsets[r * blocks + b];
                        wb.iter().map(|w| f64::from((w - off).abs())).sum::<f64>() * f64::from(amax) / 65534.0
                    }).sum();
                    let got = f64::from(out[t * rows + r]);
                    prop_assert!((got - naive).abs() <= quant + 1e-5 * mag + 1e-6, "{} r{} t{}: {} vs {} (bound {})", ty, r, t, got, naive, quant);
                }
            }
        }
    }
}

proptest! {
    /// The arithmetic exp (every ISA) against float64 `exp`: within 4 ulp-ish relative error in
    /// its range, exactly 0 below it (softmax weights of masked tokens must be 0).
    #[test]
    fn exp_weights_match_f64(
        x in proptest::collection::vec(-120f32..20.0, 0..200),
        shift in -10f32..10.0,
        scale in 0.1f32..2.0,
    ) {
        let mut with_inf = x.clone();
        with_inf.push(f32::NEG_INFINITY);
        for k in Kernels::available() {
            let mut out = vec![f32::NAN; with_inf.len()];
            let sum = k.exp_weights(&with_inf, shift, scale, &mut out);
            let mut want_sum = 0f64;
            for (&v, &o) in with_inf.iter().zip(&out) {
                let arg = (v - shift) * scale;
                let want = if arg < -87.0 { 0.0 } else { f64::from(arg.min(88.0)).exp() };
                want_sum += want;
                prop_assert!((f64::from(o) - want).abs() <= 5e-7 * want, "{:?}: e^{arg} = {o}, want {want}", k.isa);
            }
            prop_assert!((f64::from(sum) - want_sum).abs() <= 1e-5 * want_sum.max(1e-30), "{:?}: sum {sum} vs {want_sum}", k.isa);
            prop_assert_eq!(*out.last().unwrap(), 0.0);
        }
    }

    #[test]
    fn swiglu_and_max_match_f64(g in proptest::collection::vec(-100f32..100.0, 0..200)) {
        let up: Vec<f32> = g.iter().map(|v| 0.5 - v * 0.25).collect();
        let want_max = g.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for k in Kernels::available() {
            let mut out = g.clone();
            k.swiglu(&mut out, &up);
            for ((&gv, &u), &o) in g.iter().zip(&up).zip(&out) {
                let (gv, u) = (f64::from(gv), f64::from(u));
                let want = gv / (1.0 + (-gv).exp()) * u;
                prop_assert!((f64::from(o) - want).abs() <= 1e-6 * want.abs().max(1e-6), "{:?}: silu({gv})·{u} = {o}, want {want}", k.isa);
            }
            prop_assert_eq!(k.max(&g), want_max, "{:?}", k.isa);
        }
    }
}

proptest! {
    #[test]
    fn rms_norm_and_rope_variants_match_f64(
        x in proptest::collection::vec(-50f32..50.0, 1..4 * 96),
        pos in 0usize..5000,
    ) {
        let d = 96; // three heads of 32: 16 pairs, the last 4 pairs of each not rotated
        let rows = x.len() / d;
        if rows == 0 {
            return Ok(());
        }
        let x = &x[..rows * d];
        let weight: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / 64.0).collect();
        let inv_freq: Vec<f32> = (0..12).map(|i| 10000f32.powf(-(i as f32) / 12.0)).collect();
        let mut angles = Vec::new();
        rope_angles(pos, &inv_freq, &mut angles);
        for k in Kernels::available() {
            let mut got = x.to_vec();
            k.rms_norm(&mut got, &weight, 1e-5);
            for (r, row) in x.chunks_exact(d).enumerate() {
                let ss: f64 = row.iter().map(|&v| f64::from(v).powi(2)).sum();
                let scale = 1.0 / (ss / d as f64 + 1e-5).sqrt();
                for (i, &v) in row.iter().enumerate() {
                    let want = f64::from(v) * scale * f64::from(weight[i]);
                    let g = f64::from(got[r * d + i]);
                    prop_assert!((g - want).abs() <= 1e-6 * want.abs().max(1e-3), "{:?}", k.isa);
                }
            }
            let mut got = x.to_vec();
            k.rope_rotate(&mut got, 32, &angles);
            for (h, head) in x.chunks_exact(32).enumerate() {
                for i in 0..16 {
                    let (a, b) = (f64::from(head[2 * i]), f64::from(head[2 * i + 1]));
                    let (want_a, want_b) = match angles.get(i) {
                        Some(&(s, c)) => {
                            let (s, c) = (f64::from(s), f64::from(c));
                            (a * c - b * s, a * s + b * c)
                        }
                        None => (a, b),
                    };
                    let (ga, gb) = (f64::from(got[h * 32 + 2 * i]), f64::from(got[h * 32 + 2 * i + 1]));
                    prop_assert!((ga - want_a).abs() <= 1e-5 && (gb - want_b).abs() <= 1e-5, "{:?}", k.isa);
                }
            }
        }
    }
}

proptest! {
    /// Query heads sharing a kv head, computed together, equal each head computed alone (for
    /// group sizes the AVX-512 kernel splits differently: 1–6 heads of 64, 1–3 of 128).
    #[test]
    fn attend_heads_equal_one_head_at_a_time(hd_i in 0usize..3, heads in 1usize..7, span in 1usize..50, seed in any::<u32>()) {
        let hd = [64, 128, 40][hd_i];
        let stride = hd * 2;
        let val = |i: usize, s: u32| ((i as u32).wrapping_mul(2654435761).wrapping_add(s) % 1000) as f32 / 500.0 - 1.0;
        let q: Vec<f32> = (0..heads * hd).map(|i| val(i, seed)).collect();
        let keys: Vec<u16> = (0..span * stride).map(|i| f32_to_f16(val(i, seed ^ 1))).collect();
        let values: Vec<u16> = (0..span * stride).map(|i| f32_to_f16(val(i, seed ^ 2))).collect();
        let kv = simd::KvView { keys: &keys[hd..], values: &values[hd..], stride };
        for k in Kernels::available() {
            let mut scores = vec![0f32; heads * span];
            let mut together = vec![f32::NAN; heads * hd];
            k.attend_heads(&q, hd, kv, span, 0.125, &mut scores, &mut together, &mut []);
            for h in 0..heads {
                let mut one = vec![f32::NAN; hd];
                k.attend_head(&q[h * hd..(h + 1) * hd], kv, span, 0.125, &mut scores, &mut one);
                for (a, b) in together[h * hd..(h + 1) * hd].iter().zip(&one) {
                    prop_assert!((a - b).abs() <= 1e-6, "{:?} hd {hd} heads {heads} span {span}: {a} vs {b}", k.isa);
                }
            }
        }
    }
}

/// A row read back from the interleaved layout is the reference dequantization of the original
/// ggml row (hearth-gguf's), for every format and a partial last group; and a matrix holding
/// only its interleaved rows gives the same rows and the same products as one holding both.
#[test]
fn interleaved_rows_read_back_and_multiply_alone() {
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        let (rows, blocks) = (21, 3);
        let cols = blocks * 32;
        let (il, deq, _) = interleaved_rows(ty, rows, blocks, 7);
        let rec = interleaved::record_bytes(ty).unwrap();
        for r in 0..rows {
            let g = r / interleaved::GROUP;
            let recs = &il[g * blocks * rec..(g + 1) * blocks * rec];
            let mut out = vec![f32::NAN; cols];
            interleaved::dequantize_row(ty, recs, r % interleaved::GROUP, &mut out);
            assert_eq!(out, deq[r * cols..(r + 1) * cols], "{ty} row {r}");
        }
        if !interleaved::enabled() {
            continue;
        }
        let (ggml, _) = random_rows(ty, rows, blocks, 7);
        let both = QMatrix::new(ty, rows, cols, &ggml).unwrap();
        let mut alone = both.clone();
        alone.drop_float_rows();
        assert!(alone.size_bytes() < both.size_bytes());
        let pool = ThreadPool::new(2).unwrap();
        for r in [0, 16, 20] {
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            both.dequantize_row(r, &mut a);
            alone.dequantize_row(r, &mut b);
            assert_eq!(a, b, "{ty} row {r}");
        }
        for n in [1, 3, 9] {
            let x = tokens(n, cols, 5);
            let (mut a, mut b) = (vec![0f32; n * rows], vec![f32::NAN; n * rows]);
            matmul_int(&pool, &both, &x, n, &mut a);
            matmul(&pool, &alone, &x, n, &mut b);
            assert_eq!(a, b, "{ty} n {n}");
        }
    }
}

proptest! {
    /// Attention over a cache split into parts and merged equals attention over the whole.
    #[test]
    fn attention_parts_merge_to_the_whole(hd_i in 0usize..3, heads in 1usize..4, span in 2usize..300, parts in 2usize..6, seed in any::<u32>()) {
        let hd = [64, 128, 40][hd_i];
        let parts = parts.min(span);
        let stride = hd;
        let val = |i: usize, s: u32| ((i as u32).wrapping_mul(2654435761).wrapping_add(s) % 1000) as f32 / 250.0 - 2.0;
        let q: Vec<f32> = (0..heads * hd).map(|i| val(i, seed)).collect();
        let keys: Vec<u16> = (0..span * stride).map(|i| f32_to_f16(val(i, seed ^ 1))).collect();
        let values: Vec<u16> = (0..span * stride).map(|i| f32_to_f16(val(i, seed ^ 2))).collect();
        for k in Kernels::available() {
            let mut scores = vec![0f32; heads * span];
            let mut whole = vec![f32::NAN; heads * hd];
            let kv = simd::KvView { keys: &keys, values: &values, stride };
            k.attend_heads(&q, hd, kv, span, 0.125, &mut scores, &mut whole, &mut []);
            let mut partial = vec![f32::NAN; parts * heads * hd];
            let mut stats = vec![(0f32, 0f32); parts * heads];
            for j in 0..parts {
                let (p0, p1) = (span * j / parts, span * (j + 1) / parts);
                let kv = simd::KvView { keys: &keys[p0 * stride..], values: &values[p0 * stride..], stride };
                k.attend_heads(&q, hd, kv, p1 - p0, 0.125, &mut scores, &mut partial[j * heads * hd..(j + 1) * heads * hd], &mut stats[j * heads..(j + 1) * heads]);
            }
            let mut merged = vec![f32::NAN; heads * hd];
            merge_attention(&partial, &stats, hd, &mut merged);
            for (a, b) in merged.iter().zip(&whole) {
                prop_assert!((a - b).abs() <= 1e-5, "{:?} hd {hd} heads {heads} span {span} parts {parts}: {a} vs {b}", k.isa);
            }
        }
    }
}

proptest! {
    /// Every ISA's conversion to half floats is hearth-gguf's (round to nearest, ties to even),
    /// subnormals, overflow and infinities included.
    #[test]
    fn to_half_matches_the_reference(bits in proptest::collection::vec(any::<u32>(), 0..70), scale in -30i32..30) {
        let x: Vec<f32> = bits
            .iter()
            .map(|&b| f32::from_bits(b))
            .filter(|v| !v.is_nan())
            .map(|v| (v % 4.0) * 2f32.powi(scale))
            .chain([f32::INFINITY, -70000.0, 6.0e-8, 1.0e-5])
            .collect();
        let want: Vec<u16> = x.iter().map(|&v| f32_to_f16(v)).collect();
        for k in Kernels::available() {
            let mut got = vec![7u16];
            k.to_half(&x, &mut got);
            prop_assert_eq!(got[0], 7);
            prop_assert_eq!(&got[1..], &want[..], "{:?}", k.isa);
        }
    }
}

/// Q4_K weights, taken as packed Q4_1 sub-blocks, dequantize to exactly hearth-gguf's floats,
/// and their products (integer kernels where the CPU has them, float otherwise) match a float64
/// reference.
#[test]
fn q4_k_takes_the_q4_1_kernels_exactly() {
    let (rows, cols) = (20, 512);
    let mut ggml: Vec<u8> = (0..rows * cols / 256 * 144)
        .map(|i| ((i as u32).wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    for (i, b) in ggml.chunks_exact_mut(144).enumerate() {
        b[..2].copy_from_slice(&f32_to_f16(0.002 + (i % 5) as f32 / 900.0).to_le_bytes());
        b[2..4].copy_from_slice(&f32_to_f16(0.001 + (i % 3) as f32 / 700.0).to_le_bytes());
    }
    let deq = hearth_gguf::quants::dequantize_to_vec(GgmlType::Q4_K, &ggml).unwrap();
    let w = QMatrix::new(GgmlType::Q4_K, rows, cols, &ggml).unwrap();
    let mut row = vec![f32::NAN; cols];
    for r in 0..rows {
        w.dequantize_row(r, &mut row);
        assert_eq!(row, deq[r * cols..(r + 1) * cols], "row {r}");
    }
    let pool = ThreadPool::new(2).unwrap();
    for n in [1, 3] {
        let x = tokens(n, cols, 9);
        let mut out = vec![f32::NAN; n * rows];
        matmul_int(&pool, &w, &x, n, &mut out);
        assert_products(&out, &x, &deq, rows, cols, 1.0, "Q4_K");
    }
}

proptest! {
    /// Rows of the formats without packed kernels dequantize, on every ISA, to exactly
    /// hearth-gguf's floats (bit for bit; a NaN only to a NaN, as the hardware conversion of a
    /// signalling half NaN sets its quiet bit).
    #[test]
    fn other_formats_dequantize_like_the_reference(bytes in proptest::collection::vec(any::<u8>(), 210 * 2..210 * 3), ti in 0usize..6) {
        let ty = [GgmlType::Q6_K, GgmlType::Q5_K, GgmlType::Q4_K, GgmlType::F16, GgmlType::BF16, GgmlType::Q5_0][ti];
        let ts = ty.type_size() as usize;
        let n = bytes.len() / ts * ts;
        let row = &bytes[..n];
        let want = hearth_gguf::quants::dequantize_to_vec(ty, row).unwrap();
        for k in Kernels::available() {
            let mut got = vec![0f32; want.len()];
            k.dequantize_row(ty, row, &mut got);
            let bits = |v: &[f32]| -> Vec<Option<u32>> { v.iter().map(|x| (!x.is_nan()).then(|| x.to_bits())).collect() };
            prop_assert_eq!(bits(&got), bits(&want), "{:?} {}", k.isa, ty);
        }
    }
}

/// Q6_K and Q5_K weights interleaved for the integer kernels: rows read back are exactly
/// hearth-gguf's dequantization, the VNNI kernel equals its portable reference bit for bit, and
/// products match a float64 reference; dropping the ggml rows changes nothing.
#[test]
fn k_quants_take_the_integer_kernels() {
    for ty in [GgmlType::Q6_K, GgmlType::Q5_K] {
        k_quant_integer_kernels(ty);
    }
}

fn k_quant_integer_kernels(ty: GgmlType) {
    let (rows, cols) = (37, 512);
    let ts = ty.type_size() as usize;
    let mut ggml: Vec<u8> = (0..rows * cols / 256 * ts)
        .map(|i| ((i as u32).wrapping_mul(2654435761) >> 9) as u8)
        .collect();
    for (i, b) in ggml.chunks_exact_mut(ts).enumerate() {
        let d = f32_to_f16(0.0005 + (i % 7) as f32 / 9000.0).to_le_bytes();
        if ty == GgmlType::Q6_K {
            b[208..210].copy_from_slice(&d);
        } else {
            b[0..2].copy_from_slice(&d);
            b[2..4].copy_from_slice(&f32_to_f16(0.0003 + (i % 5) as f32 / 9000.0).to_le_bytes());
        }
    }
    let deq = hearth_gguf::quants::dequantize_to_vec(ty, &ggml).unwrap();
    let packed = if ty == GgmlType::Q6_K {
        interleaved::pack_q6_k(&ggml)
    } else {
        interleaved::pack_q5_k(&ggml)
    };
    let il = interleaved::interleave(ty, &packed, rows, cols).unwrap();
    let rec = interleaved::record_bytes(ty).unwrap();
    let blocks = cols / 32;
    for r in 0..rows {
        let g = r / interleaved::GROUP;
        let mut out = vec![f32::NAN; cols];
        interleaved::dequantize_row(
            ty,
            &il[g * blocks * rec..(g + 1) * blocks * rec],
            r % interleaved::GROUP,
            &mut out,
        );
        assert_eq!(out, deq[r * cols..(r + 1) * cols], "{ty} row {r}");
    }
    for n in [1, 3, 8] {
        let x = tokens(n, cols, 3);
        let acts = interleaved::quantize_acts(&x, n, cols);
        for g in 0..rows.div_ceil(interleaved::GROUP) {
            let recs = &il[g * blocks * rec..(g + 1) * blocks * rec];
            let mut want = vec![0f32; n * interleaved::GROUP];
            interleaved::group_scalar(ty, recs, &acts, 0, &mut want);
            let mut got = vec![f32::NAN; n * interleaved::GROUP];
            interleaved::group_for_tests(ty, recs, &acts, 0, &mut got);
            assert_eq!(got, want, "{ty} group {g}, {n} tokens");
        }
    }
    let w = QMatrix::new(ty, rows, cols, &ggml).unwrap();
    let mut alone = w.clone();
    alone.drop_float_rows();
    let pool = ThreadPool::new(2).unwrap();
    for n in [1, 5] {
        let x = tokens(n, cols, 11);
        let mut out = vec![f32::NAN; n * rows];
        let mut out_alone = vec![f32::NAN; n * rows];
        matmul_int(&pool, &w, &x, n, &mut out);
        matmul(&pool, &alone, &x, n, &mut out_alone);
        assert_eq!(out, out_alone);
        assert_products(&out, &x, &deq, rows, cols, 1e-3, &ty.to_string());
    }
}

/// Q5_0 weights taken as Q8_0 blocks dequantize to exactly hearth-gguf's Q5_0 floats.
#[test]
fn q5_0_takes_the_q8_0_kernels_exactly() {
    let (rows, cols) = (19, 96);
    let mut ggml: Vec<u8> = (0..rows * cols / 32 * 22)
        .map(|i| ((i as u32).wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    for (i, b) in ggml.chunks_exact_mut(22).enumerate() {
        b[..2].copy_from_slice(&f32_to_f16(0.01 + (i % 7) as f32 / 300.0).to_le_bytes());
    }
    let deq = hearth_gguf::quants::dequantize_to_vec(GgmlType::Q5_0, &ggml).unwrap();
    let as_q8 = q5_0_as_q8_0(&ggml);
    assert_eq!(
        hearth_gguf::quants::dequantize_to_vec(GgmlType::Q8_0, &as_q8).unwrap(),
        deq
    );
    let mut w = QMatrix::new(GgmlType::Q5_0, rows, cols, &ggml).unwrap();
    w.drop_float_rows();
    let mut row = vec![f32::NAN; cols];
    for r in 0..rows {
        w.dequantize_row(r, &mut row);
        assert_eq!(row, deq[r * cols..(r + 1) * cols], "row {r}");
    }
}

/// Each of `out` (`n × rows`, token-major) within 1e-4 of its float64 product of the reference
/// rows `deq` (`rows × cols`) and the tokens `x`, relative to the sum of the magnitudes of its
/// terms (at least `floor`).
fn assert_products(
    out: &[f32],
    x: &[f32],
    deq: &[f32],
    rows: usize,
    cols: usize,
    floor: f64,
    what: &str,
) {
    for (t, xs) in x.chunks_exact(cols).enumerate() {
        for (r, ws) in deq.chunks_exact(cols).enumerate().take(rows) {
            let terms = ws
                .iter()
                .zip(xs)
                .map(|(a, b)| f64::from(*a) * f64::from(*b));
            let want: f64 = terms.clone().sum();
            let mag: f64 = terms.map(f64::abs).sum();
            let got = f64::from(out[t * rows + r]);
            assert!(
                (got - want).abs() <= 1e-4 * mag.max(floor),
                "{what}: token {t}, row {r}: {got} vs {want}"
            );
        }
    }
}
