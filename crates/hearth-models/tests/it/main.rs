//! Golden parity: teacher-forced log-probabilities of the default model against a float64
//! reference forward pass (../shared/golden/smollm2-135m/greedy.jsonl, made outside Hearth).

mod bert;
mod safetensors;

use hearth_gguf::GgufFile;
use hearth_models::{BatchEntry, KvCache, Llama, ThreadPool};
use hearth_testkit::{golden_rows, ids, test_model};

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    logits.iter().map(|&l| l as f64 - lse).collect()
}

/// Agreement with the reference, summed over steps.
#[derive(Default)]
struct Agreement {
    sum: f64,
    count: usize,
    agree: usize,
    decisive: usize,
    worst: f64,
}

#[expect(clippy::unwrap_used, reason = "a test helper reading golden data")]
impl Agreement {
    /// Score one step's logits against the reference step (its top-5 log-probabilities).
    fn add(&mut self, logits: &[f32], step: &serde_json::Value) {
        let lp = log_softmax(logits);
        let top = step["top"].as_array().unwrap();
        for t in top {
            let d = (lp[t["id"].as_u64().unwrap() as usize] - t["logprob"].as_f64().unwrap()).abs();
            self.sum += d;
            self.worst = self.worst.max(d);
            self.count += 1;
        }
        let margin = top[0]["logprob"].as_f64().unwrap() - top[1]["logprob"].as_f64().unwrap();
        if margin >= 0.1 {
            self.decisive += 1;
            let argmax = lp
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                )
                .0;
            if argmax as u64 == top[0]["id"].as_u64().unwrap() {
                self.agree += 1;
            }
        }
    }

    /// Per the bounds the golden README records for llama.cpp's CPU build: mean |Δ
    /// log-probability| over the reference top-5 ≤ 0.087, argmax agreement ≥ 1224/1237 at steps
    /// whose reference top-2 margin is at least 0.1.
    fn check(&self, what: &str) {
        let mean = self.sum / self.count as f64;
        let (agree, decisive) = (self.agree, self.decisive);
        eprintln!(
            "{what}: mean |Δlogprob| {mean:.3e} (max {:.3e}) over {}; argmax agreement {agree}/{decisive}",
            self.worst, self.count
        );
        assert!(
            decisive >= 1200,
            "the golden file lost its steps ({decisive})"
        );
        assert!(
            mean <= 0.087,
            "{what}: mean |Δ log-probability| {mean} exceeds llama.cpp's 0.087"
        );
        assert!(
            agree * 1237 >= 1224 * decisive,
            "{what}: argmax agreement {agree}/{decisive} is below llama.cpp's 1224/1237"
        );
    }
}

/// Teacher-forced comparison, each golden row in one forward pass (the prefill kernels), with
/// the integer kernels (where the CPU has them) and with float activations.
#[test]
fn teacher_forced_logprobs_match_reference() {
    let Some(path) = test_model() else { return };
    let file = GgufFile::open(&path).unwrap();
    let model = Llama::load_with_float_kernels(&file).unwrap();
    let pool = ThreadPool::new(0).unwrap();
    let vocab = model.config.vocab_size;
    for (integer, what) in [
        (true, "one pass per row"),
        (false, "one pass per row, float activations"),
    ] {
        model.set_integer_kernels(integer);
        let mut score = Agreement::default();
        for row in golden_rows("smollm2-135m/greedy.jsonl") {
            let prompt = ids(&row["prompt_ids"]);
            let generated = ids(&row["generated_ids"]);
            let mut tokens = prompt.clone();
            tokens.extend(&generated[..generated.len().saturating_sub(1)]);
            let mut cache = KvCache::new(&model.config);
            let logits = model.forward(&pool, &tokens, &mut cache, true).unwrap();
            for (i, step) in row["steps"].as_array().unwrap().iter().enumerate() {
                let pos = prompt.len() - 1 + i;
                score.add(&logits[pos * vocab..(pos + 1) * vocab], step);
            }
        }
        score.check(what);
    }
}

/// Teacher-forced comparison through the batched-decoding kernels: the golden rows in groups
/// of `group`, each prompt in one pass, then one token per row per step, all rows of a group in
/// one batched forward pass.
#[test]
fn batched_decoding_logprobs_match_reference() {
    let Some(path) = test_model() else { return };
    let model = Llama::load(&GgufFile::open(&path).unwrap()).unwrap();
    let pool = ThreadPool::new(0).unwrap();
    let rows = golden_rows("smollm2-135m/greedy.jsonl");
    for group in [2, 8] {
        let mut score = Agreement::default();
        for chunk in rows.chunks(group) {
            let steps: Vec<&Vec<serde_json::Value>> = chunk
                .iter()
                .map(|r| r["steps"].as_array().unwrap())
                .collect();
            let generated: Vec<Vec<u32>> = chunk.iter().map(|r| ids(&r["generated_ids"])).collect();
            let mut caches: Vec<KvCache> =
                chunk.iter().map(|_| KvCache::new(&model.config)).collect();
            for (row, cache) in chunk.iter().zip(&mut caches) {
                let logits = model
                    .forward(&pool, &ids(&row["prompt_ids"]), cache, false)
                    .unwrap();
                score.add(&logits, &row["steps"][0]);
            }
            let longest = steps.iter().map(|s| s.len()).max().unwrap_or(0);
            for i in 1..longest {
                let live: Vec<usize> = (0..chunk.len()).filter(|&r| i < steps[r].len()).collect();
                let feed: Vec<[u32; 1]> = live.iter().map(|&r| [generated[r][i - 1]]).collect();
                let mut batch: Vec<BatchEntry<'_>> = caches
                    .iter_mut()
                    .enumerate()
                    .filter(|(r, _)| live.contains(r))
                    .zip(&feed)
                    .map(|((_, cache), tokens)| BatchEntry {
                        tokens,
                        cache,
                        all_logits: false,
                    })
                    .collect();
                let logits = model.forward_batch(&pool, &mut batch).unwrap();
                for (&r, l) in live.iter().zip(&logits) {
                    score.add(l, &steps[r][i]);
                }
            }
        }
        score.check(&format!("batched decoding, {group} rows together"));
    }
}

/// The largest |a − b| over two logit vectors.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// How far logits of one sequence may move with the split of a pass with float activations:
/// the kernels for one token and for many round differently, and a cached key or value may then
/// round to a neighbouring half float.
const FLOAT_PASS_BOUND: f32 = 0.01;

/// How far logits of one sequence may move with the split of a pass: not at all with the
/// integer kernels (a token's arithmetic there is the same in any pass), else
/// [`FLOAT_PASS_BOUND`].
fn pass_bound() -> f32 {
    if hearth_models::kernels::interleaved::enabled() {
        0.0
    } else {
        FLOAT_PASS_BOUND
    }
}

/// Running the prompt in one batch or token by token gives the same logits (the KV cache works):
/// within [`FLOAT_PASS_BOUND`] with float activations; exactly with the 16-bit integer kernels,
/// whose every token's arithmetic is the same however many tokens share the pass.
#[test]
fn incremental_decoding_matches_batch() {
    let Some(path) = test_model() else { return };
    let model = Llama::load_with_float_kernels(&GgufFile::open(&path).unwrap()).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let tokens = [1u32, 9690, 198, 2683, 359, 253, 5356, 5646];
    for (integer, bound) in [(false, FLOAT_PASS_BOUND), (true, pass_bound())] {
        model.set_integer_kernels(integer);
        let mut batch_cache = KvCache::new(&model.config);
        let batch = model
            .forward(&pool, &tokens, &mut batch_cache, true)
            .unwrap();
        let mut cache = KvCache::new(&model.config);
        let vocab = model.config.vocab_size;
        for (i, &t) in tokens.iter().enumerate() {
            let step = model.forward(&pool, &[t], &mut cache, false).unwrap();
            let diff = max_diff(&step, &batch[i * vocab..(i + 1) * vocab]);
            assert!(
                diff <= bound,
                "integer kernels {integer}, position {i}: max logit difference {diff}"
            );
        }
        assert_eq!(cache.len(), tokens.len());
    }
}

/// Sequences run together in one batched pass get the logits they get alone: within
/// [`FLOAT_PASS_BOUND`] with float activations, exactly with the 16-bit integer kernels (their error against a float64
/// reference is measured on the golden set by `batched_decoding_logprobs_match_reference`).
#[test]
fn batched_forward_matches_separate_passes() {
    let Some(path) = test_model() else { return };
    let model = Llama::load(&GgufFile::open(&path).unwrap()).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let vocab = model.config.vocab_size;
    let a = [1u32, 9690, 198, 2683, 359, 253];
    let b = [1u32, 4093, 198, 1780, 314, 260, 3575, 282, 4649];
    // Separate: a's prefix, then two more tokens; b whole.
    let mut ca = KvCache::new(&model.config);
    model.forward(&pool, &a[..4], &mut ca, false).unwrap();
    let want_a = model.forward(&pool, &a[4..], &mut ca, true).unwrap();
    let mut cb = KvCache::new(&model.config);
    let want_b = model.forward(&pool, &b, &mut cb, false).unwrap();
    // Together: a continues from its cached prefix while b starts fresh.
    let mut ca2 = KvCache::new(&model.config);
    model.forward(&pool, &a[..4], &mut ca2, false).unwrap();
    let mut cb2 = KvCache::new(&model.config);
    let mut batch = [
        BatchEntry {
            tokens: &a[4..],
            cache: &mut ca2,
            all_logits: true,
        },
        BatchEntry {
            tokens: &b,
            cache: &mut cb2,
            all_logits: false,
        },
    ];
    let got = model.forward_batch(&pool, &mut batch).unwrap();
    assert_eq!(got[0].len(), 2 * vocab);
    assert_eq!(got[1].len(), vocab);
    for (got, want) in [(&got[0], &want_a), (&got[1], &want_b)] {
        let diff = max_diff(got, want);
        assert!(diff <= pass_bound(), "max logit difference {diff}");
    }
    assert_eq!(ca2.len(), a.len());
    assert_eq!(cb2.len(), b.len());
}

/// Past `2 × 512` cached positions attention is split into parts computed in parallel and
/// merged; the split depends only on a token's position, so a long context still gives the same
/// logits token by token as in one pass (exactly with the integer kernels), and the merged
/// attention still finds the context: after a ten-token phrase repeated 110 times, the top
/// token is always the phrase's next one.
#[test]
fn long_context_attention_is_consistent() {
    let Some(path) = test_model() else { return };
    let model = Llama::load(&GgufFile::open(&path).unwrap()).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let vocab = model.config.vocab_size;
    let phrase = [504u32, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30];
    let tokens: Vec<u32> = phrase.iter().copied().cycle().take(1105).collect();
    let (head, tail) = tokens.split_at(1100);
    let mut one = KvCache::new(&model.config);
    model.forward(&pool, head, &mut one, false).unwrap();
    let mut stepwise = one.clone();
    let together = model.forward(&pool, tail, &mut one, true).unwrap();
    for (i, &t) in tail.iter().enumerate() {
        let step = model.forward(&pool, &[t], &mut stepwise, false).unwrap();
        let diff = max_diff(&step, &together[i * vocab..(i + 1) * vocab]);
        assert!(
            diff <= pass_bound(),
            "position {}: max logit difference {diff}",
            1100 + i
        );
        let best = step
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32);
        assert_eq!(
            best,
            Some(phrase[(1101 + i) % phrase.len()]),
            "position {}",
            1100 + i
        );
    }
}
