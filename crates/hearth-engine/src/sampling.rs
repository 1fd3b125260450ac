//! Turning logits into the next token: penalties, temperature, top-k, top-p, min-p, seeded draws.

/// Resolved sampling parameters (defaults are applied by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 or less: greedy (always the most likely token).
    pub temperature: f32,
    /// 0: no top-k cut.
    pub top_k: usize,
    /// 1.0: no nucleus cut.
    pub top_p: f32,
    /// 0.0: no min-p cut.
    pub min_p: f32,
    /// 1.0: no repeat penalty.
    pub repeat_penalty: f32,
    /// Tokens the penalties look back over (0: none).
    pub repeat_last_n: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Same seed and inputs → same tokens, for a request computed the same way: one computed in a
    /// batch with others (integer kernels) may differ in the last bits of its logits from one
    /// computed alone, and a draw can then differ. `None`: a fresh seed per request.
    pub seed: Option<u64>,
    /// `(token id, bias)` added to the logits before anything else (OpenAI's `logit_bias`);
    /// ids outside the vocabulary are ignored. -100 practically bans a token, +100 forces it.
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: Some(0),
            logit_bias: Vec::new(),
        }
    }
}

/// SplitMix64: small, fast and good enough for sampling; fully determined by its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed that differs between calls and processes.
    pub fn fresh_seed() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut r = Rng(t ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
        r.next_u64()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A per-sequence sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    candidates: Vec<(u32, f32)>,
    /// Softmax weights of the whole vocabulary (reused between tokens).
    weights: Vec<f32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(Rng::fresh_seed);
        Self {
            params,
            rng: Rng::new(seed),
            candidates: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// Apply repeat, presence and frequency penalties for `history` (most recent last).
    fn penalize(&self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        let n = p.repeat_last_n.min(history.len());
        if n == 0
            || (p.repeat_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0)
        {
            return;
        }
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for &t in &history[history.len() - n..] {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &c) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if p.repeat_penalty != 1.0 && p.repeat_penalty > 0.0 {
                if *l > 0.0 {
                    *l /= p.repeat_penalty;
                } else {
                    *l *= p.repeat_penalty;
                }
            }
            *l -= c as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }

    /// Choose the next token from `logits` (modified in place by penalties).
    ///
    /// Order: logit bias, penalties, top-k, temperature softmax, min-p, top-p, draw. Only the candidates a
    /// cut can keep are ever sorted: with no top-k the nucleus is searched among the 256 most
    /// likely first, and the whole vocabulary is sorted only when those hold too little mass.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        for &(id, bias) in &self.params.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        self.penalize(logits, history);
        let p = self.params.clone();
        if p.temperature <= 0.0 || p.top_k == 1 || logits.is_empty() {
            return argmax(logits);
        }
        let k = hearth_models::kernels::simd::Kernels::get();
        let max = k.max(logits);
        if !max.is_finite() {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        let by_weight = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        let c = &mut self.candidates;
        c.clear();
        if p.top_k > 0 && p.top_k < logits.len() {
            // Top-k first, on the logits (the order of the weights), then weights of those only.
            top_k(logits, p.top_k, c);
            for e in c.iter_mut() {
                e.1 = ((e.1 - max) * inv_t).exp();
            }
        } else {
            let w = &mut self.weights;
            w.resize(logits.len(), 0.0);
            let total = k.exp_weights(logits, max, inv_t, w);
            if p.min_p <= 0.0 && p.top_p >= 1.0 {
                // No cut: draw from the whole distribution, finding the token by chunk sums.
                let mut r = self.rng.next_f32() * total;
                const CHUNK: usize = 256;
                for (ci, chunk) in w.chunks(CHUNK).enumerate() {
                    let s = k.sum(chunk);
                    if r >= s {
                        r -= s;
                        continue;
                    }
                    for (i, &e) in chunk.iter().enumerate() {
                        if r < e {
                            return (ci * CHUNK + i) as u32;
                        }
                        r -= e;
                    }
                }
                // Rounding left `r` past the end: the last token with any weight.
                return w.iter().rposition(|&e| e > 0.0).unwrap_or(0) as u32;
            }
            // Tokens without weight (masked by a constraint) can never be drawn.
            c.extend(
                w.iter()
                    .enumerate()
                    .filter(|e| *e.1 > 0.0)
                    .map(|(i, &e)| (i as u32, e)),
            );
        }
        if p.min_p > 0.0 {
            // The largest weight is exp(0) = 1 (when it survived top-k it is the maximum).
            let best = c.iter().map(|e| e.1).fold(0.0, f32::max);
            let cut = best * p.min_p;
            c.retain(|e| e.1 >= cut);
        }
        if p.top_p < 1.0 {
            const HEAD: usize = 256;
            let total: f32 = c.iter().map(|e| e.1).sum();
            if c.len() > HEAD {
                c.select_nth_unstable_by(HEAD - 1, by_weight);
                let head: f32 = c[..HEAD].iter().map(|e| e.1).sum();
                if head >= p.top_p * total {
                    c.truncate(HEAD);
                }
            }
            c.sort_unstable_by(by_weight);
            let mut acc = 0.0;
            let mut keep = c.len();
            for (i, e) in c.iter().enumerate() {
                acc += e.1;
                if acc >= p.top_p * total {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        let total: f32 = c.iter().map(|e| e.1).sum();
        let mut r = self.rng.next_f32() * total;
        for e in c.iter() {
            if r < e.1 {
                return e.0;
            }
            r -= e.1;
        }
        // Rounding left `r` past the end: the last candidate that has any weight (a token
        // masked out by a constraint has none and must never be drawn).
        c.iter()
            .rev()
            .find(|e| e.1 > 0.0)
            .or(c.last())
            .map_or(0, |e| e.0)
    }
}

/// The `k` largest logits as `(token, logit)`, in no particular order, by one pass with a
/// min-heap of `k` (most logits fail the comparison with the heap's smallest).
fn top_k(logits: &[f32], k: usize, out: &mut Vec<(u32, f32)>) {
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;
    struct Entry(f32, u32);
    impl PartialEq for Entry {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == Ordering::Equal
        }
    }
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Entry {
        // Larger logit first; on ties the lower token id counts as larger (kept).
        fn cmp(&self, other: &Self) -> Ordering {
            self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
        }
    }
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        if heap.len() < k {
            heap.push(Reverse(Entry(l, i as u32)));
        } else if let Some(mut low) = heap.peek_mut()
            && l.total_cmp(&low.0.0) == Ordering::Greater
        {
            *low = Reverse(Entry(l, i as u32));
        }
    }
    out.extend(heap.into_iter().map(|Reverse(Entry(l, i))| (i, l)));
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}
