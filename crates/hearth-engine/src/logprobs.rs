//! Log-probabilities of the raw model distribution (before any sampling transform), for
//! OpenAI's and Ollama's `logprobs` options.

/// Most alternatives a request may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// The chosen token's log-probability and the most likely tokens with theirs, most likely
/// first (ties: lower id first).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// `log_softmax(logits)[chosen]` and the `k` (at most [`MAX_TOP_LOGPROBS`]) largest entries,
/// in one pass for the normaliser and one for the selection (a k-slot insertion buffer: no
/// sort of the vocabulary, no allocation beyond `k`). Non-finite logits are skipped as
/// candidates; a chosen id outside the vocabulary gets `-inf`.
pub fn token_logprobs(logits: &[f32], chosen: u32, k: usize) -> TokenLogprobs {
    let k = k.min(MAX_TOP_LOGPROBS).min(logits.len());
    let max = logits
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| f64::from(x - max).exp())
        .sum();
    let lse = f64::from(max) + sum.ln();
    let lp = |x: f32| (f64::from(x) - lse) as f32;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (id, &x) in (0u32..).zip(logits) {
            if !x.is_finite() || (top.len() == k && top.last().is_some_and(|&(_, m)| x <= m)) {
                continue;
            }
            let at = top.partition_point(|&(_, y)| y >= x);
            top.insert(at, (id, x));
            top.truncate(k);
        }
    }
    TokenLogprobs {
        logprob: logits
            .get(chosen as usize)
            .map_or(f32::NEG_INFINITY, |&x| lp(x)),
        top: top.into_iter().map(|(id, x)| (id, lp(x))).collect(),
    }
}
