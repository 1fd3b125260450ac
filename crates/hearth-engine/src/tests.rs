use super::sampling::*;
use super::stop::*;

fn run_stops(stops: &[&str], pieces: &[&str]) -> (String, bool) {
    let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
    let mut out = String::new();
    for p in pieces {
        match m.push(p) {
            StopResult::Continue(t) => out.push_str(&t),
            StopResult::Stop(t) => {
                out.push_str(&t);
                return (out, true);
            }
        }
    }
    out.push_str(&m.finish());
    (out, false)
}

#[test]
fn stop_strings_across_pieces() {
    let cases: &[(&[&str], &[&str], &str, bool)] = &[
        (&[], &["a", "b"], "ab", false),
        (&["END"], &["hello E", "N", "D tail"], "hello ", true),
        (&["END"], &["hello E", "N", "x"], "hello ENx", false),
        (&["\n\n", "###"], &["one\n", "\ntwo"], "one", true),
        (&["é!"], &["café", "!"], "caf", true),
        (&["ab"], &["xa"], "xa", false),
    ];
    for (stops, pieces, want, stopped) in cases {
        assert_eq!(
            run_stops(stops, pieces),
            (want.to_string(), *stopped),
            "{stops:?} {pieces:?}"
        );
    }
}

#[test]
fn greedy_takes_argmax_and_ignores_seed() {
    let mut logits = vec![0.1, 3.0, 2.9, -1.0];
    let mut s = Sampler::new(SamplingParams::greedy());
    assert_eq!(s.sample(&mut logits.clone(), &[]), 1);
    let mut p = SamplingParams::greedy();
    p.seed = Some(99);
    assert_eq!(Sampler::new(p).sample(&mut logits, &[]), 1);
}

#[test]
fn same_seed_same_tokens_different_seed_differs() {
    let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 0.3).collect();
    let draw = |seed| {
        let p = SamplingParams {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(p);
        (0..50)
            .map(|_| s.sample(&mut logits.clone(), &[]))
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}

#[test]
fn top_k_one_and_min_p_restrict_choices() {
    let logits = vec![5.0, 4.9, 0.0, -3.0];
    for seed in 0..50 {
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        assert!(Sampler::new(p).sample(&mut logits.clone(), &[]) < 2);
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            repeat_penalty: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        assert!(Sampler::new(p).sample(&mut logits.clone(), &[]) < 2);
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.3,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        assert_eq!(Sampler::new(p).sample(&mut logits.clone(), &[]), 0);
    }
}

#[test]
fn penalties_push_repeated_tokens_down() {
    let p = SamplingParams {
        temperature: 0.0,
        repeat_penalty: 2.0,
        repeat_last_n: 8,
        ..SamplingParams::greedy()
    };
    // Token 0 leads but was just generated twice; the penalty halves its logit.
    let mut logits = vec![3.0, 2.0, 1.0];
    assert_eq!(Sampler::new(p).sample(&mut logits, &[0, 0]), 1);
    let p = SamplingParams {
        frequency_penalty: 0.6,
        presence_penalty: 0.0,
        repeat_last_n: 8,
        ..SamplingParams::greedy()
    };
    let mut logits = vec![3.0, 2.0, 1.0];
    assert_eq!(Sampler::new(p).sample(&mut logits, &[0, 0]), 1);
    // Outside the look-back window nothing happens.
    let p = SamplingParams {
        repeat_penalty: 2.0,
        repeat_last_n: 1,
        ..SamplingParams::greedy()
    };
    let mut logits = vec![3.0, 2.0, 1.0];
    assert_eq!(Sampler::new(p).sample(&mut logits, &[0, 2]), 0);
}

/// Logits `ln(w)` make probabilities `w / Σw`, so the expected values are known by hand.
fn check_logprobs(
    weights: &[f64],
    chosen: u32,
    k: usize,
    expect_logprob: f64,
    expect_top: &[(u32, f64)],
) {
    let logits: Vec<f32> = weights.iter().map(|w| w.ln() as f32 + 3.0).collect();
    let got = super::token_logprobs(&logits, chosen, k);
    assert!(
        (f64::from(got.logprob) - expect_logprob).abs() < 1e-6,
        "{got:?}"
    );
    assert_eq!(got.top.len(), expect_top.len(), "{got:?}");
    for (&(id, lp), &(want_id, want_lp)) in got.top.iter().zip(expect_top) {
        assert_eq!(id, want_id, "{got:?}");
        assert!((f64::from(lp) - want_lp).abs() < 1e-6, "{got:?}");
    }
}

#[test]
fn logprobs_of_the_raw_distribution() {
    let l = |p: f64| p.ln();
    // probabilities .1 .2 .3 .4
    check_logprobs(
        &[1.0, 2.0, 3.0, 4.0],
        1,
        2,
        l(0.2),
        &[(3, l(0.4)), (2, l(0.3))],
    );
    check_logprobs(&[1.0, 2.0, 3.0, 4.0], 3, 0, l(0.4), &[]);
    // more asked than the vocabulary holds: all of it
    check_logprobs(
        &[4.0, 3.0, 2.0, 1.0],
        0,
        9,
        l(0.4),
        &[(0, l(0.4)), (1, l(0.3)), (2, l(0.2)), (3, l(0.1))],
    );
    // ties: lower id first
    check_logprobs(
        &[1.0, 1.0, 2.0],
        0,
        2,
        l(0.25),
        &[(2, l(0.5)), (0, l(0.25))],
    );
    // the limit is 20
    check_logprobs(
        &[1.0; 40],
        39,
        30,
        l(1.0 / 40.0),
        &(0..20).map(|i| (i, l(1.0 / 40.0))).collect::<Vec<_>>(),
    );
}

#[test]
fn logprobs_skip_non_finite_logits_and_bad_ids() {
    let got = super::token_logprobs(&[0.0, f32::NEG_INFINITY, f32::NAN, 0.0], 7, 3);
    assert_eq!(got.logprob, f32::NEG_INFINITY);
    let half = 0.5f32.ln();
    assert_eq!(got.top.len(), 2);
    assert_eq!((got.top[0].0, got.top[1].0), (0, 3));
    assert!((got.top[0].1 - half).abs() < 1e-6 && (got.top[1].1 - half).abs() < 1e-6);
    assert!(super::token_logprobs(&[], 0, 5).top.is_empty());
}

/// Logits masked to -inf (a constraint's verdict) are never drawn, whatever the settings.
#[test]
fn masked_tokens_are_never_sampled() {
    let mut logits = vec![f32::NEG_INFINITY; 1000];
    logits[7] = -30.0;
    logits[900] = -31.0;
    for seed in 0..200 {
        for (temperature, top_k, top_p, min_p) in
            [(1.0, 0, 1.0, 0.0), (2.0, 40, 0.9, 0.05), (0.0, 0, 1.0, 0.0)]
        {
            let p = SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                repeat_penalty: 1.3,
                repeat_last_n: 64,
                presence_penalty: 0.5,
                frequency_penalty: 0.5,
                seed: Some(seed),
                logit_bias: Vec::new(),
            };
            let t = Sampler::new(p).sample(&mut logits.clone(), &[7, 7, 900]);
            assert!(t == 7 || t == 900, "drew {t}");
        }
    }
}

#[test]
fn logit_bias_is_added_before_sampling() {
    let check = |bias: Vec<(u32, f32)>, want: u32| {
        let p = SamplingParams {
            logit_bias: bias.clone(),
            ..SamplingParams::greedy()
        };
        let mut logits = vec![3.0, 2.0, 1.0];
        assert_eq!(Sampler::new(p).sample(&mut logits, &[]), want, "{bias:?}");
    };
    check(vec![], 0);
    check(vec![(0, -1.5)], 1);
    check(vec![(2, 100.0)], 2);
    check(vec![(0, -100.0), (1, -100.0)], 2);
    check(vec![(7, 100.0)], 0);
}

/// Draw `n` tokens with `params` (seeded) and count each token.
fn frequencies(logits: &[f32], params: SamplingParams, n: usize) -> Vec<usize> {
    let mut s = Sampler::new(params);
    let mut counts = vec![0; logits.len()];
    for _ in 0..n {
        counts[s.sample(&mut logits.to_vec(), &[]) as usize] += 1;
    }
    counts
}

#[test]
fn draws_follow_the_softmax_and_never_pick_masked_tokens() {
    // Weights 1 : 2 : 3 : 4 at tokens spread over several scan chunks; the rest masked (-∞).
    let mut logits = vec![f32::NEG_INFINITY; 1000];
    let tokens = [3usize, 300, 511, 999];
    for (i, &t) in tokens.iter().enumerate() {
        logits[t] = ((i + 1) as f32).ln() * 0.5; // temperature 0.5 undoes the halving
    }
    for (top_k, top_p) in [(0, 1.0), (3, 1.0), (0, 0.95)] {
        let p = SamplingParams {
            temperature: 0.5,
            top_k,
            top_p,
            min_p: 0.0,
            repeat_penalty: 1.0,
            seed: Some(11),
            ..SamplingParams::default()
        };
        let n = 20_000;
        let counts = frequencies(&logits, p, n);
        let kept: &[usize] = match (top_k, top_p) {
            (3, _) => &tokens[1..],
            _ => &tokens,
        };
        let mass: f64 = kept.iter().map(|&t| f64::from(logits[t] * 2.0).exp()).sum();
        for (t, &c) in counts.iter().enumerate() {
            if !kept.contains(&t) {
                assert_eq!(c, 0, "token {t} drawn {c} times (top_k {top_k})");
                continue;
            }
            let prob = f64::from(logits[t] * 2.0).exp() / mass;
            let expect = prob * n as f64;
            let sigma = (n as f64 * prob * (1.0 - prob)).sqrt();
            assert!(
                (c as f64 - expect).abs() < 5.0 * sigma,
                "token {t}: {c} draws, expected {expect:.0} ± {sigma:.0} (top_k {top_k}, top_p {top_p})"
            );
        }
    }
}

#[test]
fn top_k_keeps_the_k_largest_of_a_large_vocabulary() {
    let logits: Vec<f32> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) % 10_000) as f32 / 1000.0)
        .collect();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let best: Vec<usize> = order[..5].to_vec();
    let p = SamplingParams {
        temperature: 5.0,
        top_k: 5,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        seed: Some(3),
        ..SamplingParams::default()
    };
    let counts = frequencies(&logits, p, 2000);
    for (t, &c) in counts.iter().enumerate() {
        assert_eq!(c > 0, best.contains(&t), "token {t}: {c} draws");
    }
}
