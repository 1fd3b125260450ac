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
