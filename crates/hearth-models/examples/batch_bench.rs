//! Batched forward-pass speed of a llama GGUF: one decoding step of `n` sequences (one token
//! each, after a short prompt) and one prefill of `n` short prompts together. Each measurement
//! alternates the integer kernels of a few tokens ("int") with the float ones ("f32") step by
//! step, so both see the same load on a shared machine.
//!
//! `cargo run --release -p hearth-models --example batch_bench -- MODEL.gguf [THREADS] [ROUNDS]`
//! (`BENCH_N=1,8` picks the batch sizes).
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark tool")]

use std::time::Instant;

use hearth_gguf::GgufFile;
use hearth_models::{BatchEntry, KvCache, Llama, ThreadPool};

fn prompt(i: usize, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|j| ((i * 7919 + j * 104_729 + 1000) % vocab) as u32)
        .collect()
}

fn step(model: &Llama, pool: &ThreadPool, caches: &mut [KvCache], toks: &[Vec<u32>]) -> f64 {
    let mut batch: Vec<BatchEntry<'_>> = caches
        .iter_mut()
        .zip(toks)
        .map(|(cache, t)| BatchEntry {
            tokens: t,
            cache,
            all_logits: false,
        })
        .collect();
    let t = Instant::now();
    model.forward_batch(pool, &mut batch).unwrap();
    t.elapsed().as_secs_f64()
}

/// The fastest quarter: the machine is shared, slow outliers are other people's work.
fn quartile(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 4]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: batch_bench MODEL.gguf [THREADS] [ROUNDS]");
    let threads: Vec<usize> = args.next().map_or(vec![1, 2], |s| {
        s.split(',').map(|t| t.parse().unwrap()).collect()
    });
    let rounds: usize = args.next().map_or(20, |s| s.parse().unwrap());
    let t = Instant::now();
    let model =
        Llama::load_with_float_kernels(&GgufFile::open(std::path::Path::new(&path)).unwrap())
            .unwrap();
    println!(
        "load: {:.0} ms, {:.1} MB of weights",
        t.elapsed().as_secs_f64() * 1e3,
        model.size_bytes() as f64 / 1e6
    );
    let vocab = model.config.vocab_size;
    let prompt_len = 48;
    let ns: Vec<usize> = std::env::var("BENCH_N").map_or(vec![1, 2, 4, 8, 16], |s| {
        s.split(',').map(|t| t.parse().unwrap()).collect()
    });
    // `BENCH_INT_ONLY=1`: decode with the integer kernels only (for profiling).
    let modes = if std::env::var("BENCH_INT_ONLY").is_ok() {
        1
    } else {
        2
    };
    for &th in &threads {
        let pool = ThreadPool::new(th).unwrap();
        println!(
            "{th} thread(s): decode step ms (int / f32), prefill n×{prompt_len} ms (int / f32)"
        );
        for &n in &ns {
            let prompts: Vec<Vec<u32>> = (0..n).map(|i| prompt(i, prompt_len, vocab)).collect();
            let fresh =
                || -> Vec<KvCache> { (0..n).map(|_| KvCache::new(&model.config)).collect() };
            let mut prefill = [Vec::new(), Vec::new()];
            for _ in 0..3 {
                for (mode, times) in prefill.iter_mut().enumerate() {
                    model.set_integer_kernels(mode == 0);
                    prefill_once(&model, &pool, &mut fresh(), &prompts, times);
                }
            }
            let mut caches = fresh();
            step(&model, &pool, &mut caches, &prompts);
            let mut decode = [Vec::new(), Vec::new()];
            for r in 0..rounds {
                if r % 16 == 15 {
                    for c in caches.iter_mut() {
                        c.truncate(prompt_len);
                    }
                }
                for (mode, times) in decode.iter_mut().enumerate().take(modes) {
                    model.set_integer_kernels(mode == 0);
                    let toks: Vec<Vec<u32>> = (0..n)
                        .map(|i| vec![((i * 31 + r * 17) % vocab) as u32])
                        .collect();
                    times.push(step(&model, &pool, &mut caches, &toks));
                }
            }
            let [di, df] = decode.map(|v| if v.is_empty() { f64::NAN } else { quartile(v) });
            let [pi, pf] = prefill.map(quartile);
            println!(
                "  n={n:>2}: decode {:>6.2} / {:>6.2} ms ({:.2}x; {:>5.0} tok/s int); prefill {:>6.1} / {:>6.1} ms ({:.2}x)",
                di * 1e3,
                df * 1e3,
                df / di,
                n as f64 / di,
                pi * 1e3,
                pf * 1e3,
                pf / pi
            );
        }
    }
}

fn prefill_once(
    model: &Llama,
    pool: &ThreadPool,
    caches: &mut [KvCache],
    prompts: &[Vec<u32>],
    times: &mut Vec<f64>,
) {
    times.push(step(model, pool, caches, prompts));
}
