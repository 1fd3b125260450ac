//! `hearth bench`: Hearth's prefill and decode speed, and llama.cpp's on the same file in the
//! same run when a peer is given, printed with ratios.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use hearth_gguf::GgufFile;
use hearth_models::{KvCache, Llama, ThreadPool};

use crate::AppError;

/// Token ids for a synthetic prompt (speed does not depend on which tokens).
fn prompt_ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 1000) % vocab) as u32).collect()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// A loaded model ready to be measured.
pub struct Subject {
    model: Llama,
    pool: ThreadPool,
}

impl Subject {
    pub fn load(path: &Path, threads: usize) -> Result<Self, AppError> {
        let file = GgufFile::open(path).map_err(|e| AppError::Message(e.to_string()))?;
        let model = Llama::load(&file).map_err(|e| AppError::Message(e.to_string()))?;
        let pool = ThreadPool::new(threads).map_err(|e| AppError::Message(e.to_string()))?;
        Ok(Self { model, pool })
    }

    /// (prefill tokens/s, decode tokens/s) for one round.
    pub fn measure(&self, prompt_tokens: usize, gen_tokens: usize) -> Result<(f64, f64), AppError> {
        let err = |e: hearth_models::ModelError| AppError::Message(e.to_string());
        let prompt = prompt_ids(prompt_tokens, self.model.config.vocab_size);
        let mut cache = KvCache::new(&self.model.config);
        let t = Instant::now();
        let logits = self
            .model
            .forward(&self.pool, &prompt, &mut cache, false)
            .map_err(err)?;
        let prefill = prompt_tokens as f64 / t.elapsed().as_secs_f64();
        let mut next = argmax(&logits);
        let t = Instant::now();
        for _ in 0..gen_tokens {
            let logits = self
                .model
                .forward(&self.pool, &[next], &mut cache, false)
                .map_err(err)?;
            next = argmax(&logits);
        }
        let decode = gen_tokens as f64 / t.elapsed().as_secs_f64();
        Ok((prefill, decode))
    }
}

/// One round of llama.cpp through `bench/peer_speed.py` (see that file for its output).
pub fn peer_speed(
    python: &Path,
    script: &Path,
    model: &Path,
    threads: usize,
    prompt_tokens: usize,
    gen_tokens: usize,
) -> Result<(f64, f64), AppError> {
    let out = Command::new(python)
        .arg(script)
        .arg(model)
        .args(["--threads", &threads.to_string()])
        .args(["--prompt-tokens", &prompt_tokens.to_string()])
        .args(["--gen-tokens", &gen_tokens.to_string()])
        .args(["--rounds", "1"])
        .output()
        .map_err(|e| AppError::Message(format!("cannot run {}: {e}", python.display())))?;
    if !out.status.success() {
        return Err(AppError::Message(format!(
            "llama.cpp peer failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| AppError::Message(format!("llama.cpp peer printed no JSON: {text}")))?;
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| AppError::Message(e.to_string()))?;
    let get = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| AppError::Message(format!("llama.cpp peer output lacks {k}: {line}")))
    };
    Ok((get("prefill_tps")?, get("decode_tps")?))
}

/// Median of measurements.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A result row: threads, hearth (prefill, decode), peer (prefill, decode) if measured.
pub struct Row {
    pub threads: usize,
    pub hearth: (f64, f64),
    pub peer: Option<(f64, f64)>,
}

pub fn print_table(rows: &[Row]) {
    println!(
        "{:>7}  {:>14} {:>14}  {:>14} {:>14}  {:>13} {:>12}",
        "threads",
        "prefill tok/s",
        "decode tok/s",
        "llama.cpp pre",
        "llama.cpp dec",
        "prefill ratio",
        "decode ratio"
    );
    for r in rows {
        let (pp, pd, rp, rd) = match r.peer {
            Some((p, d)) => (
                format!("{p:.1}"),
                format!("{d:.1}"),
                format!("{:.2}x", r.hearth.0 / p),
                format!("{:.2}x", r.hearth.1 / d),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:>7}  {:>14.1} {:>14.1}  {:>14} {:>14}  {:>13} {:>12}",
            r.threads, r.hearth.0, r.hearth.1, pp, pd, rp, rd
        );
    }
}

/// One streamed chat request's timings.
struct StreamResult {
    ttft: f64,
    tokens: u64,
    end: f64,
}

/// Send one streaming chat request; times are seconds since `t0`.
fn stream_once(
    addr: std::net::SocketAddr,
    model: &str,
    t0: Instant,
    user: &str,
    prompt: &str,
    max_tokens: usize,
    suppress: &[u32],
) -> Result<StreamResult, AppError> {
    let bias: serde_json::Map<String, serde_json::Value> = suppress
        .iter()
        .map(|id| (id.to_string(), serde_json::json!(-100)))
        .collect();
    let body = serde_json::json!({
        "model": model, "stream": true, "stream_options": {"include_usage": true},
        "max_tokens": max_tokens, "temperature": 0.7, "seed": 1, "user": user,
        "messages": [{"role": "user", "content": prompt}],
        "logit_bias": bias,
    });
    let mut resp = crate::client::request(
        addr,
        "POST",
        "/v1/chat/completions",
        Some(&body.to_string()),
    )?;
    let mut ttft = None;
    let mut tokens = 0;
    resp.for_each_line(|line| {
        let Some(data) = line.strip_prefix("data: ") else {
            return Ok(());
        };
        if data == "[DONE]" {
            return Ok(());
        }
        let v: serde_json::Value = serde_json::from_str(data)
            .map_err(|e| crate::client::ClientError::Protocol(e.to_string()))?;
        if ttft.is_none()
            && v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        {
            ttft = Some(t0.elapsed().as_secs_f64());
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            tokens = n;
        }
        Ok(())
    })?;
    let end = t0.elapsed().as_secs_f64();
    Ok(StreamResult {
        ttft: ttft.unwrap_or(end),
        tokens,
        end,
    })
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// A prompt no earlier request began with (beyond the chat template's shared system prompt), so
/// time to first token includes computing it.
fn fresh_prompt(i: usize) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NONCE: AtomicUsize = AtomicUsize::new(0);
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    format!("Request {nonce}. {}", PROMPTS[i % PROMPTS.len()])
}

const PROMPTS: [&str; 4] = [
    "Write a long story about a lighthouse keeper.",
    "Explain how rainbows form, in detail.",
    "Describe a journey across the desert.",
    "List many facts about the ocean.",
];

/// Peak resident memory of this process in bytes, if known.
fn peak_rss() -> Option<u64> {
    crate::proc_kb("/proc/self/status", "VmHWM")
}

/// What `hearth bench serve` measures and how.
pub struct ServeBench<'a> {
    pub model: &'a str,
    /// Concurrent streams to measure (1 is the baseline of the ratios).
    pub streams: &'a [usize],
    /// Tokens each stream generates.
    pub tokens: usize,
    /// Requests user A keeps queued in the fairness measurement.
    pub flood: usize,
    /// Interleaved rounds over all concurrencies (medians are reported).
    pub rounds: usize,
    /// Tokens given a -100 logit bias (the model's end-of-generation tokens), so every stream
    /// generates exactly `tokens` tokens and each concurrency stays at its width throughout.
    pub suppress: Vec<u32>,
}

/// Streams of one concurrency, all started at once: (aggregate tokens/s, TTFTs in ms).
fn concurrent_round(
    addr: std::net::SocketAddr,
    b: &ServeBench<'_>,
    c: usize,
) -> Result<(f64, Vec<f64>), AppError> {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..c)
        .map(|i| {
            let prompt = fresh_prompt(i);
            let model = b.model.to_owned();
            let (tokens, suppress) = (b.tokens, b.suppress.clone());
            std::thread::spawn(move || {
                stream_once(
                    addr,
                    &model,
                    t0,
                    &format!("u{i}"),
                    &prompt,
                    tokens,
                    &suppress,
                )
            })
        })
        .collect();
    let (mut ttfts, mut total, mut end) = (Vec::new(), 0u64, 0f64);
    for h in handles {
        let r = h
            .join()
            .map_err(|_| AppError::Message("a bench client thread panicked".into()))??;
        ttfts.push(r.ttft * 1000.0);
        total += r.tokens;
        end = end.max(r.end);
    }
    Ok((total as f64 / end, ttfts))
}

/// Serving under load, measured through the HTTP API of an in-process server: aggregate decode
/// tokens/s and time to first token at each concurrency, in interleaved rounds (each ratio
/// against one stream is taken within a round, then the median over rounds is reported, since
/// the machine's speed drifts); fairness (user B's first token while user A keeps `flood`
/// requests queued, against B alone); peak RSS.
pub fn serve_bench(addr: std::net::SocketAddr, b: &ServeBench<'_>) -> Result<(), AppError> {
    let (model, tokens, flood) = (b.model, b.tokens, b.flood);
    let suppress = b.suppress.as_slice();
    // Warm up: load the model, then one round at the widest concurrency (first-touch costs).
    stream_once(addr, model, Instant::now(), "warmup", "Hello", 4, suppress)?;
    if let Some(&widest) = b.streams.iter().max() {
        concurrent_round(addr, b, widest)?;
    }
    let rounds = b.rounds.max(1);
    // Per concurrency: aggregate tok/s per round, and every TTFT.
    let mut agg = vec![Vec::new(); b.streams.len()];
    let mut ttfts = vec![Vec::new(); b.streams.len()];
    for round in 0..rounds {
        for (i, &c) in b.streams.iter().enumerate() {
            eprint!("\rround {}/{rounds}: {c} streams   ", round + 1);
            // Few streams finish fast: repeat them so each measurement spans about as many
            // tokens as the wide ones.
            let (mut tok_s, mut n) = (0.0, 0);
            for _ in 0..8usize.div_ceil(c).max(1) {
                let (a, t) = concurrent_round(addr, b, c)?;
                tok_s += a;
                n += 1;
                ttfts[i].extend(t);
            }
            agg[i].push(tok_s / f64::from(n));
        }
    }
    eprintln!();
    println!(
        "{:>7}  {:>16} {:>9}  {:>12} {:>12}   per-round ratios",
        "streams", "aggregate tok/s", "vs 1", "TTFT p50 ms", "TTFT p95 ms"
    );
    let base = b.streams.iter().position(|&c| c == 1).unwrap_or(0);
    for (i, &c) in b.streams.iter().enumerate() {
        let ratios: Vec<f64> = agg[i].iter().zip(&agg[base]).map(|(a, s)| a / s).collect();
        println!(
            "{c:>7}  {:>16.1} {:>8.2}x  {:>12.0} {:>12.0}   {}",
            median(agg[i].clone()),
            median(ratios.clone()),
            percentile(ttfts[i].clone(), 0.5),
            percentile(ttfts[i].clone(), 0.95),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    // Fairness: user B's short requests, one after another with a pause, so they land at
    // different moments of A's batches.
    let b_ttfts = || -> Result<Vec<f64>, AppError> {
        (0..7)
            .map(|_| {
                let r = stream_once(
                    addr,
                    model,
                    Instant::now(),
                    "b",
                    &fresh_prompt(1),
                    8,
                    suppress,
                )?;
                std::thread::sleep(std::time::Duration::from_millis(60));
                Ok(r.ttft * 1000.0)
            })
            .collect()
    };
    let b_alone = b_ttfts()?;
    let t0 = Instant::now();
    let flooders: Vec<_> = (0..flood)
        .map(|i| {
            let prompt = fresh_prompt(i);
            let model = model.to_owned();
            let suppress = suppress.to_vec();
            std::thread::spawn(move || {
                stream_once(addr, &model, t0, "a", &prompt, tokens, &suppress)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let b_flood = b_ttfts()?;
    for h in flooders {
        let _ = h.join();
    }
    let (alone, flooded) = (median(b_alone), median(b_flood));
    println!(
        "\nfairness: user B's time to first token {flooded:.0} ms while user A keeps {flood} requests queued, \
         {alone:.0} ms on an idle server: {:.2}x (medians of 7)",
        flooded / alone
    );
    if let Some(rss) = peak_rss() {
        println!(
            "peak RSS of this process (server and clients): {:.1} MB",
            rss as f64 / 1e6
        );
    }
    Ok(())
}
