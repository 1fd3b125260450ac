//! The engine with the real default model: greedy output against the float64 reference
//! (../shared/golden/smollm2-135m/greedy.jsonl), alone and with every prompt in flight at once;
//! seeds, stop strings, limits and cancellation.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::sync::mpsc;
use std::time::Duration;

use hearth_engine::{
    EngineConfig, EngineError, EngineHandle, Event, EventSink, FinishReason, Finished,
    GenerateRequest, SamplingParams, TokenConstraint, TokenLogprobs,
};
use hearth_gguf::GgufFile;
use hearth_testkit::{golden_rows, ids, test_model};
use serde_json::Value;

fn engine(threads: usize) -> Option<EngineHandle> {
    engine_with(EngineConfig {
        threads,
        ..EngineConfig::default()
    })
}

fn engine_with(config: EngineConfig) -> Option<EngineHandle> {
    let file = GgufFile::open(&test_model()?).unwrap();
    Some(EngineHandle::start(&file, config).unwrap())
}

/// Collects a request's events and reports the end over a channel.
struct Collect {
    tokens: Vec<u32>,
    logprobs: Vec<TokenLogprobs>,
    text: String,
    done: Option<mpsc::Sender<Outcome>>,
    /// Stop listening after this many tokens (cancellation).
    hang_up_after: Option<usize>,
    /// Told when the first token arrives (the prompt is computed).
    first_token: Option<mpsc::Sender<()>>,
}

#[derive(Debug)]
struct Outcome {
    tokens: Vec<u32>,
    logprobs: Vec<TokenLogprobs>,
    text: String,
    result: Result<Finished, String>,
}

impl EventSink for Collect {
    fn send(&mut self, event: Event) -> bool {
        match event {
            Event::Token { id, text, logprobs } => {
                if let Some(tx) = self.first_token.take() {
                    let _ = tx.send(());
                }
                self.tokens.push(id);
                self.logprobs.extend(logprobs);
                self.text.push_str(&text);
                if self.hang_up_after.is_some_and(|n| self.tokens.len() >= n) {
                    self.finish(Err("hung up".into()));
                    return false;
                }
            }
            Event::Text(text) => self.text.push_str(&text),
            Event::Done(f) => self.finish(Ok(f)),
            Event::Error(e) => self.finish(Err(e)),
        }
        true
    }

    fn is_closed(&self) -> bool {
        self.done.is_none()
    }
}

impl Collect {
    fn finish(&mut self, result: Result<Finished, String>) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(Outcome {
                tokens: std::mem::take(&mut self.tokens),
                logprobs: std::mem::take(&mut self.logprobs),
                text: std::mem::take(&mut self.text),
                result,
            });
        }
    }
}

fn submit(
    e: &EngineHandle,
    req: GenerateRequest,
    hang_up_after: Option<usize>,
) -> mpsc::Receiver<Outcome> {
    submit_with(e, req, hang_up_after, None)
}

fn submit_with(
    e: &EngineHandle,
    req: GenerateRequest,
    hang_up_after: Option<usize>,
    first_token: Option<mpsc::Sender<()>>,
) -> mpsc::Receiver<Outcome> {
    let (tx, rx) = mpsc::channel();
    let sink = Collect {
        tokens: Vec::new(),
        logprobs: Vec::new(),
        text: String::new(),
        done: Some(tx),
        hang_up_after,
        first_token,
    };
    e.generate(req, Box::new(sink)).unwrap();
    rx
}

fn wait(rx: &mpsc::Receiver<Outcome>) -> Outcome {
    rx.recv_timeout(Duration::from_secs(300))
        .expect("the engine answered in time")
}

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        stop: Vec::new(),
        user: String::new(),
        deadline: None,
        top_logprobs: None,
        constraint: None,
    }
}

/// Greedy tokens agree with the reference at every step before its first near-tie, for each
/// prompt run alone and for all prompts in flight together.
#[test]
fn greedy_matches_reference_alone_and_together() {
    let Some(e) = engine(0) else { return };
    let rows = golden_rows("smollm2-135m/greedy.jsonl");
    let check = |row: &Value, got: &[u32]| {
        let want = ids(&row["generated_ids"]);
        let safe = row["first_near_tie"].as_u64().unwrap() as usize;
        // The reference includes the end-of-generation token; the engine reports it by stopping.
        let want: Vec<u32> = want.into_iter().filter(|&t| t != 2).collect();
        let n = safe.min(want.len());
        assert_eq!(
            &got[..n.min(got.len())],
            &want[..n],
            "prompt {:?}",
            row["prompt"]
        );
        assert!(got.len() >= n, "stopped early on {:?}", row["prompt"]);
    };
    let alone: Vec<Vec<u32>> = rows
        .iter()
        .map(|row| wait(&submit(&e, greedy(ids(&row["prompt_ids"]), 64), None)).tokens)
        .collect();
    for (row, got) in rows.iter().zip(&alone) {
        check(row, got);
    }
    let pending: Vec<_> = rows
        .iter()
        .map(|row| submit(&e, greedy(ids(&row["prompt_ids"]), 64), None))
        .collect();
    // Batched, a sequence's sums are grouped differently than alone, so past the reference's
    // first near-tie either token may win; before it, both must be the reference's.
    for (row, rx) in rows.iter().zip(pending) {
        check(row, &wait(&rx).tokens);
    }
}

/// With `top_logprobs: Some(5)`, each greedy step reports the reference's top five ids and
/// log-probabilities (float64 reference) before the first near-tie; the chosen token's
/// log-probability is the first alternative's. Each within 0.02 and 2e-3 on average: the
/// half-float KV cache and the 16-bit integer kernels keep the golden set's mean at 1.5e-3.
#[test]
fn logprobs_match_the_reference() {
    let Some(e) = engine(0) else { return };
    let rows = golden_rows("smollm2-135m/greedy.jsonl");
    let (bound, mean_bound) = (0.02, 2e-3);
    let (mut sum, mut count) = (0f64, 0usize);
    let mut steps_checked = 0;
    for row in &rows {
        let req = GenerateRequest {
            top_logprobs: Some(5),
            constraint: None,
            ..greedy(ids(&row["prompt_ids"]), 64)
        };
        let got = wait(&submit(&e, req, None));
        assert_eq!(got.logprobs.len(), got.tokens.len(), "one entry per token");
        let safe = row["first_near_tie"].as_u64().unwrap() as usize;
        let steps = row["steps"].as_array().unwrap();
        for (i, (step, lp)) in steps.iter().zip(&got.logprobs).take(safe).enumerate() {
            let want: Vec<(u32, f64)> = step["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["id"].as_u64().unwrap() as u32,
                        t["logprob"].as_f64().unwrap(),
                    )
                })
                .collect();
            let ctx = format!(
                "prompt {:?} step {i}: got {lp:?}, want {want:?}",
                row["prompt"]
            );
            assert_eq!(lp.top.len(), want.len(), "{ctx}");
            assert_eq!(lp.top[0].0, want[0].0, "{ctx}");
            // Alternatives closer than the bound may swap places, or swap in at the end.
            let last = want.last().map_or(f64::NEG_INFINITY, |w| w.1);
            for &(id, l) in &lp.top {
                match want.iter().find(|w| w.0 == id) {
                    Some(&(_, want_l)) => {
                        let d = (f64::from(l) - want_l).abs();
                        assert!(d < bound, "{ctx}");
                        sum += d;
                        count += 1;
                    }
                    None => assert!(f64::from(l) < last + bound, "{ctx}"),
                }
            }
            let chosen = step["logprob"].as_f64().unwrap();
            assert!((f64::from(lp.logprob) - chosen).abs() < bound, "{ctx}");
            assert_eq!(lp.logprob, lp.top[0].1, "{ctx}");
            steps_checked += 1;
        }
    }
    assert!(steps_checked > 20, "only {steps_checked} steps compared");
    let mean = sum / count as f64;
    assert!(mean < mean_bound, "mean |Δ logprob| {mean} over {count}");
    // Off by default: no entries.
    let row = &rows[0];
    assert!(
        wait(&submit(&e, greedy(ids(&row["prompt_ids"]), 4), None))
            .logprobs
            .is_empty()
    );
}

fn prompt(e: &EngineHandle, text: &str) -> Vec<u32> {
    e.tokenizer().encode(
        &format!("<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"),
        false,
        true,
    )
}

#[test]
fn seeds_reproduce_and_limits_hold() {
    let Some(e) = engine(2) else { return };
    let p = prompt(&e, "Write a short poem about the sea.");
    let sampled = |seed| {
        let sampling = SamplingParams {
            temperature: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        let req = GenerateRequest {
            prompt: p.clone(),
            sampling,
            max_tokens: Some(24),
            stop: Vec::new(),
            user: String::new(),
            deadline: None,
            top_logprobs: None,
            constraint: None,
        };
        wait(&submit(&e, req, None))
    };
    let (a, b, c) = (sampled(7), sampled(7), sampled(8));
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.text, b.text);
    assert_ne!(
        a.tokens, c.tokens,
        "different seeds gave the same 24 tokens"
    );
    let f = a.result.unwrap();
    assert_eq!(f.completion_tokens, 24);
    assert_eq!(f.reason, FinishReason::Length);
    assert_eq!(f.prompt_tokens, p.len());
}

#[test]
fn stop_strings_end_generation_and_are_not_returned() {
    let Some(e) = engine(2) else { return };
    let p = prompt(&e, "What is the capital of France?");
    let full = wait(&submit(&e, greedy(p.clone(), 32), None));
    let mut req = greedy(p.clone(), 32);
    assert!(
        full.text.starts_with("The capital of France is Paris"),
        "{}",
        full.text
    );
    req.stop = vec!["Paris".into()];
    let cut = wait(&submit(&e, req, None));
    assert_eq!(cut.text, "The capital of France is ");
    assert_eq!(cut.result.unwrap().reason, FinishReason::Stop);
}

#[test]
fn a_client_that_hangs_up_frees_the_engine() {
    let Some(e) = engine(2) else { return };
    let p = prompt(&e, "Count from one to one hundred.");
    let gone = submit(&e, greedy(p.clone(), 10_000), Some(3));
    let after = submit(&e, greedy(p, 4), None);
    assert_eq!(wait(&gone).tokens.len(), 3);
    assert_eq!(wait(&after).result.unwrap().completion_tokens, 4);
    // Nothing is left running once both are answered.
    for _ in 0..100 {
        if e.load() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the cancelled request is still counted as running");
}

#[test]
fn prompts_beyond_the_context_are_refused() {
    let Some(e) = engine(1) else { return };
    let n = e.summary().context_length;
    let err = e
        .generate(
            greedy(vec![1; n + 1], 1),
            Box::new(Collect {
                tokens: vec![],
                logprobs: vec![],
                text: String::new(),
                done: None,
                hang_up_after: None,
                first_token: None,
            }),
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::PromptTooLong { .. }), "{err}");
    assert!(err.to_string().contains(&n.to_string()));
}

/// One user's flood does not lock another out: while user A fills every slot and has more
/// requests waiting, user B's request is let in at once, so B's first token comes before any of
/// A's requests has finished (without that rule B would wait for one of A's to end).
#[test]
fn a_flood_from_one_user_does_not_lock_out_another() {
    let Some(e) = engine_with(EngineConfig {
        threads: 2,
        max_active: 4,
        ..EngineConfig::default()
    }) else {
        return;
    };
    let p = prompt(&e, "Tell me about the moon.");
    let (tx, rx) = mpsc::channel::<String>();
    /// Reports "<user> first" at its first token and "<user> done" at the end.
    struct Witness {
        user: &'static str,
        tx: mpsc::Sender<String>,
        started: bool,
    }
    impl EventSink for Witness {
        fn send(&mut self, event: Event) -> bool {
            match event {
                Event::Token { .. } if !self.started => {
                    self.started = true;
                    let _ = self.tx.send(format!("{} first", self.user));
                }
                Event::Done(_) | Event::Error(_) => {
                    let _ = self.tx.send(format!("{} done", self.user));
                }
                _ => {}
            }
            true
        }
        fn is_closed(&self) -> bool {
            false
        }
    }
    let send = |user: &'static str, max_tokens| {
        let mut req = greedy(p.clone(), max_tokens);
        req.user = user.into();
        let sink = Witness {
            user,
            tx: tx.clone(),
            started: false,
        };
        e.generate(req, Box::new(sink)).unwrap();
    };
    for _ in 0..12 {
        send("a", 16);
    }
    send("b", 4);
    let mut seen = Vec::new();
    while seen.len() < 26 {
        seen.push(rx.recv_timeout(Duration::from_secs(300)).unwrap());
    }
    let b_first = seen.iter().position(|s| s == "b first").unwrap();
    let a_done = seen.iter().position(|s| s == "a done").unwrap();
    assert!(b_first < a_done, "B waited for A: {seen:?}");
}

#[test]
fn a_full_queue_refuses_more_and_recovers() {
    let Some(e) = engine_with(EngineConfig {
        threads: 1,
        max_queue: 2,
        ..EngineConfig::default()
    }) else {
        return;
    };
    let p = prompt(&e, "Hello");
    let first = submit(&e, greedy(p.clone(), 8), None);
    let second = submit(&e, greedy(p.clone(), 8), None);
    let sink = Collect {
        tokens: vec![],
        logprobs: vec![],
        text: String::new(),
        done: None,
        hang_up_after: None,
        first_token: None,
    };
    let err = e
        .generate(greedy(p.clone(), 8), Box::new(sink))
        .unwrap_err();
    assert!(matches!(err, EngineError::QueueFull { limit: 2 }), "{err}");
    wait(&first).result.unwrap();
    wait(&second).result.unwrap();
    // Room again.
    wait(&submit(&e, greedy(p, 2), None)).result.unwrap();
}

#[test]
fn requests_past_their_deadline_end_with_an_error() {
    let Some(e) = engine(1) else { return };
    let mut req = greedy(prompt(&e, "Count to a thousand."), 10_000);
    req.deadline = Some(std::time::Instant::now());
    let out = wait(&submit(&e, req, None));
    assert!(out.result.unwrap_err().contains("time limit"));
}

/// A prompt that begins like an earlier one (the same system prompt) reuses its computed keys
/// and values, and still answers as the reference does.
#[test]
fn a_shared_prompt_prefix_is_computed_once() {
    let Some(e) = engine(2) else { return };
    let rows = golden_rows("smollm2-135m/greedy.jsonl");
    // Rows 0 and 4 share the default system prompt and differ in the question.
    let (first, second) = (&rows[0], &rows[4]);
    let a = ids(&first["prompt_ids"]);
    let b = ids(&second["prompt_ids"]);
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(shared > 16, "the rows share {shared} tokens");
    let one = wait(&submit(&e, greedy(a, 8), None)).result.unwrap();
    assert_eq!(one.cached_tokens, 0);
    let out = wait(&submit(&e, greedy(b.clone(), 64), None));
    let two = out.result.unwrap();
    assert_eq!(two.cached_tokens, shared);
    let want: Vec<u32> = ids(&second["generated_ids"])
        .into_iter()
        .filter(|&t| t != 2)
        .collect();
    let safe = (second["first_near_tie"].as_u64().unwrap() as usize).min(want.len());
    assert_eq!(&out.tokens[..safe], &want[..safe]);
}

/// Allows only the tokens of a fixed list, in order, then end of generation; counts its calls.
struct Script {
    tokens: Vec<u32>,
    at: usize,
    eog: u32,
    /// Every `remaining` the engine passed.
    seen: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
}

impl TokenConstraint for Script {
    fn restrict(&mut self, allowed: &mut [bool], remaining: usize) {
        self.seen.lock().unwrap().push(remaining);
        let only = self.tokens.get(self.at).copied().unwrap_or(self.eog);
        for (i, a) in allowed.iter_mut().enumerate() {
            *a = *a && i as u32 == only;
        }
    }
    fn accept(&mut self, token: u32) -> Result<(), String> {
        if self.tokens.get(self.at) == Some(&token) {
            self.at += 1;
            Ok(())
        } else if token == self.eog && self.at == self.tokens.len() {
            Ok(())
        } else {
            Err(format!("unexpected token {token}"))
        }
    }
    fn is_finished(&self) -> bool {
        false
    }
}

/// Forbids every token.
struct Nothing;

impl TokenConstraint for Nothing {
    fn restrict(&mut self, allowed: &mut [bool], _remaining: usize) {
        allowed.fill(false);
    }
    fn accept(&mut self, _token: u32) -> Result<(), String> {
        Err("nothing may be accepted".into())
    }
    fn is_finished(&self) -> bool {
        false
    }
}

/// A constrained sequence batched with unconstrained ones gets exactly its allowed tokens (at
/// temperature 1, where the model alone would wander), the others run to their limit untouched,
/// `remaining` counts down from `max_tokens`, and a constraint
/// that allows nothing ends its request with an error.
#[test]
fn constraints_hold_in_a_batch_with_unconstrained_sequences() {
    let Some(e) = engine(2) else { return };
    let p = prompt(&e, "Write a short poem about the sea.");
    let script = e
        .tokenizer()
        .encode("Forty-two, said the sea.", false, false);
    let eog = e.tokenizer().eos().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let free = submit(&e, greedy(p.clone(), 16), None);
    let constrained = submit(
        &e,
        GenerateRequest {
            sampling: SamplingParams {
                temperature: 1.0,
                seed: Some(3),
                ..SamplingParams::default()
            },
            constraint: Some(Box::new(Script {
                tokens: script.clone(),
                at: 0,
                eog,
                seen: seen.clone(),
            })),
            ..greedy(p.clone(), 40)
        },
        None,
    );
    let failing = submit(
        &e,
        GenerateRequest {
            constraint: Some(Box::new(Nothing)),
            ..greedy(p.clone(), 16)
        },
        None,
    );
    let free = wait(&free);
    let constrained = wait(&constrained);
    let failing = wait(&failing);
    assert_eq!(free.tokens.len(), 16);
    assert!(!free.text.starts_with("Forty"), "{}", free.text);
    assert_eq!(free.result.unwrap().reason, FinishReason::Length);
    assert_eq!(constrained.tokens, script);
    assert_eq!(constrained.result.unwrap().reason, FinishReason::Stop);
    let want: Vec<usize> = (0..=script.len()).map(|i| 40 - i).collect();
    assert_eq!(*seen.lock().unwrap(), want);
    assert!(failing.tokens.is_empty());
    assert!(
        failing.result.unwrap_err().contains("allows no next token"),
        "error event"
    );
    // The engine keeps serving after a failed constrained request.
    let after = wait(&submit(&e, greedy(p, 16), None));
    assert_eq!(after.result.unwrap().reason, FinishReason::Length);
}

/// Requests for the same prompt while one of them is running (OpenAI's `n` choices) copy its
/// computed keys and values instead of computing the prompt again, and answer the same.
#[test]
fn a_running_prompt_is_shared_with_requests_that_repeat_it() {
    let Some(e) = engine(2) else { return };
    let rows = golden_rows("smollm2-135m/greedy.jsonl");
    let p = ids(&rows[0]["prompt_ids"]);
    let (started, first) = mpsc::channel();
    let one = submit_with(&e, greedy(p.clone(), 24), None, Some(started));
    first.recv_timeout(Duration::from_secs(300)).unwrap();
    let two = wait(&submit(&e, greedy(p.clone(), 8), None));
    let one = wait(&one);
    let (f1, f2) = (one.result.unwrap(), two.result.unwrap());
    assert_eq!(f1.cached_tokens, 0);
    assert_eq!(f2.cached_tokens, p.len() - 1);
    assert_eq!(two.tokens[..], one.tokens[..two.tokens.len()]);
}

/// `logit_bias` moves the greedy choice: -100 on the greedy token makes another one win,
/// +100 on a chosen token makes it the answer.
#[test]
fn logit_bias_moves_the_choice() {
    let Some(e) = engine(2) else { return };
    let p = prompt(&e, "The capital of France is");
    let plain = wait(&submit(&e, greedy(p.clone(), 1), None)).tokens;
    let with = |bias: Vec<(u32, f32)>| {
        let mut req = greedy(p.clone(), 1);
        req.sampling.logit_bias = bias;
        wait(&submit(&e, req, None)).tokens
    };
    let banned = with(vec![(plain[0], -100.0)]);
    assert_ne!(banned, plain);
    assert_eq!(with(vec![(1234, 100.0)]), vec![1234]);
    // Ids beyond the vocabulary are ignored.
    assert_eq!(with(vec![(u32::MAX, 100.0)]), plain);
}
