//! The llama architecture (Llama 2/3.x, Mistral, TinyLlama, SmolLM2, …) from GGUF weights.

use hearth_gguf::quants::dequantize_to_vec;
use hearth_gguf::{GgmlType, GgufFile};
use rayon::prelude::*;

use crate::ModelError;
use crate::kernels::simd::{Kernels, KvView};
use crate::kernels::{self, QMatrix, ThreadPool};

/// Hyper-parameters resolved from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub vocab_size: usize,
    pub context_length: usize,
}

impl LlamaConfig {
    pub fn from_gguf(g: &hearth_gguf::Gguf) -> Result<Self, ModelError> {
        let arch = g.architecture()?;
        if arch != "llama" {
            return Err(ModelError::UnsupportedArchitecture(arch.to_owned()));
        }
        let u = |k: &str| -> Result<usize, ModelError> {
            let v = g.u64(&format!("llama.{k}"))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0 && v < (1 << 24))
                .ok_or_else(|| ModelError::Invalid(format!("llama.{k} = {v}")))
        };
        let n_embd = u("embedding_length")?;
        let n_head = u("attention.head_count")?;
        let n_head_kv = match g.get("llama.attention.head_count_kv") {
            Some(_) => u("attention.head_count_kv")?,
            None => n_head,
        };
        if n_embd % n_head != 0 || n_head % n_head_kv != 0 {
            return Err(ModelError::Invalid(format!(
                "{n_embd} embedding width, {n_head} heads, {n_head_kv} kv heads do not divide"
            )));
        }
        let head_dim = n_embd / n_head;
        let rope_dim = match g.get("llama.rope.dimension_count") {
            Some(_) => u("rope.dimension_count")?,
            None => head_dim,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(ModelError::Invalid(format!("rope dimension {rope_dim}")));
        }
        let vocab_size = match g.get("llama.vocab_size") {
            Some(_) => u("vocab_size")?,
            None => g.array("tokenizer.ggml.tokens")?.len(),
        };
        let f = |k: &str, default: f64| -> Result<f32, ModelError> {
            Ok(g.opt(&format!("llama.{k}"), hearth_gguf::Gguf::f64)?
                .unwrap_or(default) as f32)
        };
        Ok(Self {
            n_layers: u("block_count")?,
            n_embd,
            n_ff: u("feed_forward_length")?,
            n_head,
            n_head_kv,
            head_dim,
            rope_dim,
            rope_base: f("rope.freq_base", 10_000.0)?,
            rms_eps: f("attention.layer_norm_rms_epsilon", 1e-5)?,
            vocab_size,
            context_length: u("context_length")?,
        })
    }

    fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    w_gate: QMatrix,
    w_up: QMatrix,
    w_down: QMatrix,
}

/// A loaded llama model.
pub struct Llama {
    pub config: LlamaConfig,
    tok_embd: QMatrix,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    /// `None` when the output projection is tied to the token embedding.
    output: Option<QMatrix>,
    inv_freq: Vec<f32>,
    /// Whether passes use the integer kernels (see [`Llama::set_integer_kernels`]).
    integer: std::sync::atomic::AtomicBool,
    /// The file's type of most weights (kernels may hold them in another, e.g. Q4_K as Q4_1).
    main_type: GgmlType,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One sequence's part of a batched forward pass.
pub struct BatchEntry<'a> {
    /// New tokens, at the positions following `cache`.
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    /// Logits for every new token, or only the last.
    pub all_logits: bool,
}

/// Keys and values of past positions, for one sequence, as IEEE half floats (half the memory
/// and the reading of float32, as llama.cpp keeps them by default).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// Per layer: `len × kv_dim` keys and values (half-float bits).
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
    len: usize,
}

impl KvCache {
    pub fn new(config: &LlamaConfig) -> Self {
        Self {
            k: vec![Vec::new(); config.n_layers],
            v: vec![Vec::new(); config.n_layers],
            len: 0,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget positions from `len` on (to reuse a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            for l in self.k.iter_mut().chain(self.v.iter_mut()) {
                let per_position = l.len() / self.len;
                l.truncate(len * per_position);
            }
            self.len = len;
        }
    }

    /// A copy of the first `len` positions.
    pub fn prefix(&self, len: usize) -> Self {
        let len = len.min(self.len);
        let cut = |layers: &[Vec<u16>]| -> Vec<Vec<u16>> {
            layers
                .iter()
                .map(|l| l[..len * (l.len() / self.len.max(1))].to_vec())
                .collect()
        };
        Self {
            k: cut(&self.k),
            v: cut(&self.v),
            len,
        }
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|l| l.len() * 2).sum()
    }
}

fn matrix(g: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<QMatrix, ModelError> {
    let (info, data) = g.tensor_by_name(name)?;
    if info.dims != [cols as u64, rows as u64] {
        return Err(ModelError::Invalid(format!(
            "tensor `{name}` has shape {:?}, expected [{cols}, {rows}]",
            info.dims
        )));
    }
    QMatrix::new(info.ggml_type, rows, cols, data)
}

fn vector(g: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
    let (info, data) = g.tensor_by_name(name)?;
    if info.elements() != len as u64 {
        return Err(ModelError::Invalid(format!(
            "tensor `{name}` has {} elements, expected {len}",
            info.elements()
        )));
    }
    Ok(dequantize_to_vec(info.ggml_type, data)?)
}

/// Positions of the cache one attention work item covers at least (longer caches are split).
const ATTENTION_PART: usize = 512;

impl Llama {
    /// Load weights from a validated GGUF file. The weights are copied out of the file, so the
    /// file may be dropped afterwards. Where the CPU has the integer kernels, weights they can
    /// multiply are held only in their layout (once, not twice).
    pub fn load(g: &GgufFile) -> Result<Self, ModelError> {
        Self::load_keeping(g, false)
    }

    /// [`Llama::load`], also keeping every weight in the layout of the float kernels, so
    /// [`Llama::set_integer_kernels`] can switch between the two (tests and benchmarks).
    pub fn load_with_float_kernels(g: &GgufFile) -> Result<Self, ModelError> {
        Self::load_keeping(g, true)
    }

    fn load_keeping(g: &GgufFile, float_rows: bool) -> Result<Self, ModelError> {
        // Each matrix drops its float rows as soon as it is built, so loading never holds two
        // copies of the whole model.
        let matrix = |name: &str, rows: usize, cols: usize| {
            let mut m = matrix(g, name, rows, cols)?;
            if !float_rows {
                m.drop_float_rows();
            }
            Ok::<_, ModelError>(m)
        };
        let c = LlamaConfig::from_gguf(g)?;
        let layers = (0..c.n_layers)
            .map(|i| {
                let p = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: vector(g, &p("attn_norm"), c.n_embd)?,
                    wq: matrix(&p("attn_q"), c.n_head * c.head_dim, c.n_embd)?,
                    wk: matrix(&p("attn_k"), c.kv_dim(), c.n_embd)?,
                    wv: matrix(&p("attn_v"), c.kv_dim(), c.n_embd)?,
                    wo: matrix(&p("attn_output"), c.n_embd, c.n_head * c.head_dim)?,
                    ffn_norm: vector(g, &p("ffn_norm"), c.n_embd)?,
                    w_gate: matrix(&p("ffn_gate"), c.n_ff, c.n_embd)?,
                    w_up: matrix(&p("ffn_up"), c.n_ff, c.n_embd)?,
                    w_down: matrix(&p("ffn_down"), c.n_embd, c.n_ff)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let tok_embd = matrix("token_embd.weight", c.vocab_size, c.n_embd)?;
        let output = match g.tensor("output.weight") {
            Some(_) => Some(matrix("output.weight", c.vocab_size, c.n_embd)?),
            None => None,
        };
        let mut inv_freq: Vec<f32> = (0..c.rope_dim / 2)
            .map(|i| (f64::from(c.rope_base).powf(-2.0 * i as f64 / c.rope_dim as f64)) as f32)
            .collect();
        // Llama 3.1+ ship per-pair frequency divisors.
        if g.tensor("rope_freqs.weight").is_some() {
            let factors = vector(g, "rope_freqs.weight", c.rope_dim / 2)?;
            for (f, d) in inv_freq.iter_mut().zip(factors) {
                *f /= d;
            }
        }
        Ok(Self {
            output_norm: vector(g, "output_norm.weight", c.n_embd)?,
            config: c,
            tok_embd,
            layers,
            output,
            inv_freq,
            integer: std::sync::atomic::AtomicBool::new(true),
            main_type: g
                .tensor("blk.0.ffn_up.weight")
                .or_else(|| g.tensor("token_embd.weight"))
                .map_or(GgmlType::F32, |t| t.ggml_type),
        })
    }

    /// Multiply with 16-bit integer activations where the CPU has AVX-512 VNNI (on by default):
    /// about twice as fast as float for prompts and batched decoding and 1.25× for one stream's
    /// decoding at one thread; mean |Δ log-probability| against a float64 reference 9e-4 instead
    /// of 2e-6 with a float32 KV cache (1.5e-3 and 1.1e-3 with the half-float one); and a
    /// sequence's logits are the same bits whether it runs alone or batched. Off, every pass
    /// keeps float activations (for accuracy tests and benchmarks comparing the two;
    /// only a model from [`Llama::load_with_float_kernels`] has the float layout for all weights).
    pub fn set_integer_kernels(&self, on: bool) {
        self.integer.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes of weights held in memory.
    pub fn size_bytes(&self) -> usize {
        let l: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .iter()
                    .map(|m| m.size_bytes())
                    .sum::<usize>()
                    + (l.attn_norm.len() + l.ffn_norm.len()) * 4
            })
            .sum();
        l + self.tok_embd.size_bytes() + self.output.as_ref().map_or(0, QMatrix::size_bytes)
    }

    /// The type most weights are stored in (e.g. Q4_1), for display.
    pub fn main_type(&self) -> GgmlType {
        self.main_type
    }

    /// Run `tokens` at the positions following `cache`, append their keys and values, and return
    /// logits: for every token when `all_logits`, else for the last one only (`vocab` floats each).
    pub fn forward(
        &self,
        pool: &ThreadPool,
        tokens: &[u32],
        cache: &mut KvCache,
        all_logits: bool,
    ) -> Result<Vec<f32>, ModelError> {
        let mut batch = [BatchEntry {
            tokens,
            cache,
            all_logits,
        }];
        let mut out = self.forward_batch(pool, &mut batch)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Run several sequences in one pass: every weight matrix is read once for all their tokens.
    /// Each entry's tokens follow its own cache; the result has one logits vector per entry (for
    /// all its tokens or its last, as the entry asks). An empty entry gets empty logits.
    pub fn forward_batch(
        &self,
        pool: &ThreadPool,
        batch: &mut [BatchEntry<'_>],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        // Enter the pool once: the parallel loops inside then run on its workers directly instead
        // of handing each of the ~250 operations of a step over from this thread and back.
        pool.install(|| self.forward_in_pool(pool, batch))
    }

    fn forward_in_pool(
        &self,
        pool: &ThreadPool,
        batch: &mut [BatchEntry<'_>],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let c = &self.config;
        // Where each entry's tokens sit in the flattened batch, and its first position.
        let mut segments = Vec::with_capacity(batch.len());
        let mut n = 0;
        for e in batch.iter() {
            let start = e.cache.len;
            if start + e.tokens.len() > c.context_length {
                return Err(ModelError::ContextFull {
                    limit: c.context_length,
                    needed: start + e.tokens.len(),
                });
            }
            if let Some(&bad) = e.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(ModelError::BadToken(bad));
            }
            segments.push((n, e.tokens.len(), start));
            n += e.tokens.len();
        }
        if n == 0 {
            return Ok(vec![Vec::new(); batch.len()]);
        }
        let d = c.n_embd;
        let kv_dim = c.kv_dim();
        let q_dim = c.n_head * c.head_dim;

        let mut x = vec![0f32; n * d];
        for (e, &(off, len, _)) in batch.iter().zip(&segments) {
            for (t, &tok) in e.tokens.iter().enumerate() {
                let row = off + t;
                debug_assert!(t < len);
                self.tok_embd
                    .dequantize_row(tok as usize, &mut x[row * d..(row + 1) * d]);
            }
        }
        // For each flattened token: its entry and position.
        let token_pos: Vec<(usize, usize)> = segments
            .iter()
            .enumerate()
            .flat_map(|(i, &(_, len, start))| (0..len).map(move |t| (i, start + t)))
            .collect();

        // Each token's rotary angles, the same in every layer.
        let pairs = self.inv_freq.len();
        let mut angles = Vec::with_capacity(n * pairs);
        for &(_, pos) in &token_pos {
            kernels::rope_angles(pos, &self.inv_freq, &mut angles);
        }

        let mut h = vec![0f32; n * d];
        let mut q = vec![0f32; n * q_dim];
        let mut k = vec![0f32; n * kv_dim];
        let mut v = vec![0f32; n * kv_dim];
        let mut att = vec![0f32; n * q_dim];
        let mut o = vec![0f32; n * d];
        let mut gate = vec![0f32; n * c.n_ff];
        let mut up = vec![0f32; n * c.n_ff];
        // The integer kernels where the CPU has them (see `set_integer_kernels`); a token's
        // arithmetic in them does not depend on the other tokens of the pass.
        let integer = self.integer.load(std::sync::atomic::Ordering::Relaxed);
        let matmul = |w: &QMatrix, x: &[f32], n: usize, out: &mut [f32]| {
            if integer {
                kernels::matmul_int(pool, w, x, n, out);
            } else {
                kernels::matmul(pool, w, x, n, out);
            }
        };

        for (li, layer) in self.layers.iter().enumerate() {
            h.copy_from_slice(&x);
            kernels::rms_norm(&mut h, &layer.attn_norm, c.rms_eps);
            // Independent products run as one parallel region (one wait instead of three).
            rayon::join(
                || matmul(&layer.wq, &h, n, &mut q),
                || {
                    rayon::join(
                        || matmul(&layer.wk, &h, n, &mut k),
                        || matmul(&layer.wv, &h, n, &mut v),
                    )
                },
            );
            for (t, ang) in angles.chunks_exact(pairs.max(1)).enumerate() {
                kernels::rope_rotate(&mut q[t * q_dim..(t + 1) * q_dim], c.head_dim, ang);
                kernels::rope_rotate(&mut k[t * kv_dim..(t + 1) * kv_dim], c.head_dim, ang);
            }
            let kern = Kernels::get();
            for (e, &(off, len, _)) in batch.iter_mut().zip(&segments) {
                kern.to_half(&k[off * kv_dim..(off + len) * kv_dim], &mut e.cache.k[li]);
                kern.to_half(&v[off * kv_dim..(off + len) * kv_dim], &mut e.cache.v[li]);
            }
            let views: Vec<(&[u16], &[u16])> = batch
                .iter()
                .map(|e| (e.cache.k[li].as_slice(), e.cache.v[li].as_slice()))
                .collect();
            self.attention(pool, &q, &views, &token_pos, &mut att);
            matmul(&layer.wo, &att, n, &mut o);
            for (xi, oi) in x.iter_mut().zip(&o) {
                *xi += oi;
            }

            h.copy_from_slice(&x);
            kernels::rms_norm(&mut h, &layer.ffn_norm, c.rms_eps);
            rayon::join(
                || matmul(&layer.w_gate, &h, n, &mut gate),
                || matmul(&layer.w_up, &h, n, &mut up),
            );
            kernels::swiglu(&mut gate, &up);
            matmul(&layer.w_down, &gate, n, &mut o);
            for (xi, oi) in x.iter_mut().zip(&o) {
                *xi += oi;
            }
        }
        for (e, &(_, len, start)) in batch.iter_mut().zip(&segments) {
            e.cache.len = start + len;
        }

        // The rows whose logits are wanted, per entry.
        let mut rows = Vec::new();
        let mut counts = Vec::with_capacity(batch.len());
        for (e, &(off, len, _)) in batch.iter().zip(&segments) {
            let before = rows.len();
            if e.all_logits {
                rows.extend(off..off + len);
            } else if len > 0 {
                rows.push(off + len - 1);
            }
            counts.push(rows.len() - before);
        }
        let mut normed = Vec::with_capacity(rows.len() * d);
        for &t in &rows {
            normed.extend_from_slice(&x[t * d..(t + 1) * d]);
        }
        kernels::rms_norm(&mut normed, &self.output_norm, c.rms_eps);
        let out = self.output.as_ref().unwrap_or(&self.tok_embd);
        let vocab = c.vocab_size;
        let mut logits = vec![0f32; rows.len() * vocab];
        matmul(out, &normed, rows.len(), &mut logits);
        let mut result = Vec::with_capacity(batch.len());
        let mut at = 0;
        for count in counts {
            result.push(logits[at * vocab..(at + count) * vocab].to_vec());
            at += count;
        }
        Ok(result)
    }

    /// Causal attention of each new query over its own sequence's cached keys and values (which
    /// already include the new ones). `token_pos[t]` is query `t`'s entry in `views` and its
    /// position. Heads share kv heads in groups (GQA).
    fn attention(
        &self,
        pool: &ThreadPool,
        q: &[f32],
        views: &[(&[u16], &[u16])],
        token_pos: &[(usize, usize)],
        out: &mut [f32],
    ) {
        let c = &self.config;
        let hd = c.head_dim;
        let kv_dim = c.kv_dim();
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (hd as f32).sqrt();
        let k = Kernels::get();
        // Work items are (token, kv head, part of the cache): the query heads sharing a kv head
        // are computed together, reading its cached keys and values once; a long cache is split
        // into parts of at least `ATTENTION_PART` positions, computed in parallel and merged, so
        // decoding one sequence over a long context keeps every worker busy. The split depends
        // only on the token's own position, so a sequence's results do not depend on the batch.
        let item = group * hd;
        let parts_of = |span: usize| (span / ATTENTION_PART).clamp(1, 8);
        let mut work = Vec::new();
        for (t, &(_, pos)) in token_pos.iter().enumerate() {
            let parts = parts_of(pos + 1);
            for kvh in 0..c.n_head_kv {
                for part in 0..parts {
                    work.push((t, kvh, part, parts));
                }
            }
        }
        // Run the items in order of kv head and cache region, so consecutive items (the tokens
        // of a prompt) reuse the same keys and values from cache; `slot[i]` is where item `i`
        // (in token order) lands.
        let mut order: Vec<usize> = (0..work.len()).collect();
        order.sort_by_key(|&i| {
            let (t, kvh, part, parts) = work[i];
            let p0 = (token_pos[t].1 + 1) * part / parts;
            (kvh, p0 / ATTENTION_PART, t)
        });
        let mut slot = vec![0; work.len()];
        for (at, &i) in order.iter().enumerate() {
            slot[i] = at;
        }
        let mut partial = vec![0f32; work.len() * item];
        let mut stats = vec![(0f32, 0f32); work.len() * group];
        // A few chunks of items per worker, not one task each: an item over a short context is
        // a microsecond of work, less than handing it to another thread.
        let per = work.len().div_ceil(pool.threads() * 8).max(1);
        pool.install(|| {
            partial
                .par_chunks_mut(item * per)
                .zip(stats.par_chunks_mut(group * per))
                .enumerate()
                .for_each(|(ci, (chunk, st))| {
                    let mut scores = Vec::new();
                    for (j, (o, s)) in chunk
                        .chunks_exact_mut(item)
                        .zip(st.chunks_exact_mut(group))
                        .enumerate()
                    {
                        let (t, kvh, part, parts) = work[order[ci * per + j]];
                        let (entry, pos) = token_pos[t];
                        let (keys, values) = views[entry];
                        let span = pos + 1;
                        let (p0, p1) = (span * part / parts, span * (part + 1) / parts);
                        let qg = &q[(t * c.n_head + kvh * group) * hd..][..item];
                        scores.resize(group * (p1 - p0), 0.0);
                        k.attend_heads(
                            qg,
                            hd,
                            KvView {
                                keys: &keys[p0 * kv_dim + kvh * hd..],
                                values: &values[p0 * kv_dim + kvh * hd..],
                                stride: kv_dim,
                            },
                            p1 - p0,
                            scale,
                            &mut scores,
                            o,
                            s,
                        );
                    }
                });
        });
        let (mut at, mut part_out, mut part_stats) = (0, Vec::new(), Vec::new());
        for o in out.chunks_exact_mut(item) {
            let parts = work[at].3;
            part_out.clear();
            part_stats.clear();
            for &k in &slot[at..at + parts] {
                part_out.extend_from_slice(&partial[k * item..(k + 1) * item]);
                part_stats.extend_from_slice(&stats[k * group..(k + 1) * group]);
            }
            kernels::merge_attention(&part_out, &part_stats, hd, o);
            at += parts;
        }
    }
}
