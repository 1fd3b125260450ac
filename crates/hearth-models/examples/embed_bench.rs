//! Embedding speed of a BERT model folder: a batch of 32 short texts (the golden MiniLM rows of
//! fewer than 32 tokens, cycled) at 1 and 2 threads.
//!
//! `cargo run --release -p hearth-models --example embed_bench -- MODEL_DIR`
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark tool")]

use std::time::Instant;

use hearth_models::{Bert, ThreadPool};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: embed_bench MODEL_DIR");
    let t0 = Instant::now();
    let bert = Bert::load_dir(std::path::Path::new(&dir)).unwrap();
    println!("load: {:.2} s", t0.elapsed().as_secs_f64());
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/minilm/embeddings.jsonl");
    let short: Vec<Vec<u32>> = std::fs::read_to_string(golden)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| {
            r["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect::<Vec<u32>>()
        })
        .filter(|ids| ids.len() < 32)
        .collect();
    let batch: Vec<Vec<u32>> = short.iter().cycle().take(32).cloned().collect();
    let tokens: usize = batch.iter().map(Vec::len).sum();
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads).unwrap();
        bert.embed(&pool, &batch).unwrap();
        let runs = 10;
        let t = Instant::now();
        for _ in 0..runs {
            bert.embed(&pool, &batch).unwrap();
        }
        let per = t.elapsed().as_secs_f64() / f64::from(runs);
        println!(
            "{threads} thread(s): batch of 32 texts ({tokens} tokens) in {:.1} ms: {:.0} texts/s, {:.0} tokens/s",
            per * 1e3,
            32.0 / per,
            tokens as f64 / per
        );
    }
}
