//! BERT encoders for sentence embeddings (all-MiniLM-L6-v2 and its family), as Hugging Face
//! `BertModel` computes them, followed by sentence-transformers' pooling and L2 normalisation.
//!
//! `config.json` + `model.safetensors` (+ `1_Pooling/config.json`) → [`Bert`];
//! [`Bert::embed`] takes a batch of token-id sequences (from `hearth_tokenizer::WordPiece`,
//! `[CLS] … [SEP]`) and returns one unit vector per sequence. A batch is run ragged: all
//! sequences' tokens go through the matrix products together, and each token attends only to
//! the tokens of its own sequence, which is exactly what an attention mask over right padding
//! gives, without computing the padding.

use std::path::Path;

use hearth_gguf::GgmlType;
use rayon::prelude::*;
use serde_json::Value;

use crate::ModelError;
use crate::kernels::{self, QMatrix, ThreadPool};
use crate::safetensors::SafeTensors;

/// Tokens run through the layers at once; larger batches are split between sequences (bounds
/// the activations at about 4096 × intermediate size floats).
const MAX_CHUNK_TOKENS: usize = 4096;
/// Largest configuration accepted from a (hostile) `config.json`.
const MAX_WIDTH: usize = 1 << 16;
const MAX_LAYERS: usize = 512;
const MAX_VOCAB: usize = 1 << 22;
const MAX_POSITIONS: usize = 1 << 16;
/// Largest `config.json` / pooling config read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// How token vectors become one sentence vector (sentence-transformers' `Pooling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the sequence's tokens.
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
    /// Element-wise maximum over the tokens.
    Max,
    /// Sum over the tokens divided by √length.
    MeanSqrtLen,
}

/// The feed-forward activation (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: x·Φ(x) with the exact (erf) normal CDF.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
}

/// Hyper-parameters from `config.json` and the pooling from `1_Pooling/config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    pub intermediate_size: usize,
    pub max_positions: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    pub activation: Activation,
    pub pooling: Pooling,
    /// Tokens a text is truncated to before embedding (sentence-transformers'
    /// `max_seq_length`; without it, `max_positions`).
    pub max_seq_length: usize,
}

fn bad_config(what: impl std::fmt::Display) -> ModelError {
    ModelError::Invalid(format!("config.json: {what}"))
}

fn read_small(path: &Path) -> Result<String, ModelError> {
    use std::io::Read as _;
    let io = |source| ModelError::Io {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut s = String::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut s)
        .map_err(io)?;
    if s.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ModelError::Invalid(format!(
            "{} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )));
    }
    Ok(s)
}

impl BertConfig {
    /// Parses `config.json` and, when given, sentence-transformers' `1_Pooling/config.json`
    /// (without it: mean pooling).
    pub fn from_json(config: &str, pooling: Option<&str>) -> Result<Self, ModelError> {
        let c: Value =
            serde_json::from_str(config).map_err(|e| bad_config(format!("not valid JSON: {e}")))?;
        let count = |key: &str, max: usize| -> Result<usize, ModelError> {
            c.get(key)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 1 && n <= max)
                .ok_or_else(|| bad_config(format!("`{key}` must be an integer from 1 to {max}")))
        };
        if let Some(t) = c.get("model_type").and_then(Value::as_str)
            && t != "bert"
        {
            return Err(ModelError::UnsupportedArchitecture(format!(
                "{t} (embedding models: bert)"
            )));
        }
        if let Some(p) = c.get("position_embedding_type").and_then(Value::as_str)
            && p != "absolute"
        {
            return Err(bad_config(format!(
                "position_embedding_type `{p}` is not supported (only `absolute`)"
            )));
        }
        let activation = match c.get("hidden_act").and_then(Value::as_str) {
            None | Some("gelu") => Activation::Gelu,
            Some("gelu_new" | "gelu_pytorch_tanh") => Activation::GeluTanh,
            Some(other) => {
                return Err(bad_config(format!(
                    "hidden_act `{other}` is not supported (gelu, gelu_new)"
                )));
            }
        };
        let layer_norm_eps = match c.get("layer_norm_eps") {
            None => 1e-12,
            Some(v) => v
                .as_f64()
                .filter(|e| e.is_finite() && *e >= 0.0 && *e < 1.0)
                .ok_or_else(|| bad_config("`layer_norm_eps` must be a small non-negative number"))?
                as f32,
        };
        let hidden_size = count("hidden_size", MAX_WIDTH)?;
        let num_heads = count("num_attention_heads", MAX_WIDTH)?;
        if hidden_size % num_heads != 0 {
            return Err(bad_config(format!(
                "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}"
            )));
        }
        let type_vocab_size = match c.get("type_vocab_size") {
            None => 2,
            Some(_) => count("type_vocab_size", MAX_VOCAB)?,
        };
        let pooling = match pooling {
            None => Pooling::Mean,
            Some(p) => parse_pooling(p)?,
        };
        let max_positions = count("max_position_embeddings", MAX_POSITIONS)?;
        Ok(Self {
            vocab_size: count("vocab_size", MAX_VOCAB)?,
            hidden_size,
            num_heads,
            num_layers: count("num_hidden_layers", MAX_LAYERS)?,
            intermediate_size: count("intermediate_size", MAX_WIDTH * 4)?,
            max_positions,
            type_vocab_size,
            layer_norm_eps,
            activation,
            pooling,
            max_seq_length: max_positions,
        })
    }

    /// Applies sentence-transformers' `sentence_bert_config.json` (its `max_seq_length`,
    /// capped at `max_positions`).
    pub fn with_sentence_config(mut self, text: &str) -> Result<Self, ModelError> {
        let bad = |what: String| ModelError::Invalid(format!("sentence_bert_config.json: {what}"));
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if let Some(n) = v.get("max_seq_length").filter(|n| !n.is_null()) {
            let n = n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 2)
                .ok_or_else(|| {
                    bad("`max_seq_length` must be an integer of at least 2".to_owned())
                })?;
            self.max_seq_length = n.min(self.max_positions);
        }
        Ok(self)
    }
}

fn parse_pooling(text: &str) -> Result<Pooling, ModelError> {
    let bad = |what: String| ModelError::Invalid(format!("1_Pooling/config.json: {what}"));
    let p: Value = serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let on = |key: &str| p.get(key).and_then(Value::as_bool).unwrap_or(false);
    let modes = [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
        ("pooling_mode_mean_sqrt_len_tokens", Pooling::MeanSqrtLen),
    ];
    let chosen: Vec<Pooling> = modes
        .iter()
        .filter(|(k, _)| on(k))
        .map(|&(_, m)| m)
        .collect();
    match chosen.as_slice() {
        [m] => Ok(*m),
        [] => Err(bad("no pooling mode is enabled".to_owned())),
        _ => Err(bad(
            "several pooling modes are enabled; only one at a time is supported".to_owned(),
        )),
    }
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    /// Query, key and value stacked: `3·hidden × hidden`.
    qkv: QMatrix,
    qkv_bias: Vec<f32>,
    out: QMatrix,
    out_bias: Vec<f32>,
    attn_norm: Norm,
    up: QMatrix,
    up_bias: Vec<f32>,
    down: QMatrix,
    down_bias: Vec<f32>,
    ffn_norm: Norm,
}

/// A loaded BERT encoder. `Send + Sync`: share it in an `Arc` and call [`Bert::embed`] from a
/// worker thread with that thread's [`ThreadPool`].
pub struct Bert {
    pub config: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    /// Row 0 of the token-type table (every token is segment 0).
    token_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert")
            .field("config", &self.config)
            .finish()
    }
}

struct Loader<'a> {
    st: &'a SafeTensors,
    prefix: &'static str,
}

impl Loader<'_> {
    fn vec(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let full = format!("{}{name}", self.prefix);
        let (v, s) = self.st.f32(&full)?;
        if s != shape {
            return Err(ModelError::Invalid(format!(
                "tensor `{full}` has shape {s:?}, the config implies {shape:?}"
            )));
        }
        Ok(v)
    }

    fn norm(&self, name: &str, h: usize) -> Result<Norm, ModelError> {
        Ok(Norm {
            weight: self.vec(&format!("{name}.weight"), &[h])?,
            bias: self.vec(&format!("{name}.bias"), &[h])?,
        })
    }
}

fn matrix(rows: usize, cols: usize, v: &[f32]) -> Result<QMatrix, ModelError> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    QMatrix::new(GgmlType::F32, rows, cols, &bytes)
}

impl Bert {
    /// Loads a sentence-transformers model folder: `config.json`, `model.safetensors` and,
    /// if present, `1_Pooling/config.json` and `sentence_bert_config.json`.
    pub fn load_dir(dir: &Path) -> Result<Self, ModelError> {
        let optional = |path: std::path::PathBuf| -> Result<Option<String>, ModelError> {
            if path.is_file() {
                read_small(&path).map(Some)
            } else {
                Ok(None)
            }
        };
        let config = read_small(&dir.join("config.json"))?;
        let pooling = optional(dir.join("1_Pooling").join("config.json"))?;
        let mut config = BertConfig::from_json(&config, pooling.as_deref())?;
        if let Some(st) = optional(dir.join("sentence_bert_config.json"))? {
            config = config.with_sentence_config(&st)?;
        }
        let st = SafeTensors::read(&dir.join("model.safetensors"))?;
        Self::load(&st, config)
    }

    /// Builds the model from its tensors (names as `BertModel` saves them, optionally under
    /// `bert.`), checking every shape against `config`.
    pub fn load(st: &SafeTensors, config: BertConfig) -> Result<Self, ModelError> {
        let prefix = if st.get("embeddings.word_embeddings.weight").is_none()
            && st.get("bert.embeddings.word_embeddings.weight").is_some()
        {
            "bert."
        } else {
            ""
        };
        let l = Loader { st, prefix };
        let h = config.hidden_size;
        let inter = config.intermediate_size;
        let word = l.vec("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = l.vec(
            "embeddings.position_embeddings.weight",
            &[config.max_positions, h],
        )?;
        let mut token_type = l.vec(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        token_type.truncate(h);
        let emb_norm = l.norm("embeddings.LayerNorm", h)?;
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("encoder.layer.{i}.");
            let mut qkv = Vec::with_capacity(3 * h * h);
            let mut qkv_bias = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                qkv.extend(l.vec(&format!("{p}attention.self.{part}.weight"), &[h, h])?);
                qkv_bias.extend(l.vec(&format!("{p}attention.self.{part}.bias"), &[h])?);
            }
            layers.push(Layer {
                qkv: matrix(3 * h, h, &qkv)?,
                qkv_bias,
                out: matrix(
                    h,
                    h,
                    &l.vec(&format!("{p}attention.output.dense.weight"), &[h, h])?,
                )?,
                out_bias: l.vec(&format!("{p}attention.output.dense.bias"), &[h])?,
                attn_norm: l.norm(&format!("{p}attention.output.LayerNorm"), h)?,
                up: matrix(
                    inter,
                    h,
                    &l.vec(&format!("{p}intermediate.dense.weight"), &[inter, h])?,
                )?,
                up_bias: l.vec(&format!("{p}intermediate.dense.bias"), &[inter])?,
                down: matrix(
                    h,
                    inter,
                    &l.vec(&format!("{p}output.dense.weight"), &[h, inter])?,
                )?,
                down_bias: l.vec(&format!("{p}output.dense.bias"), &[h])?,
                ffn_norm: l.norm(&format!("{p}output.LayerNorm"), h)?,
            });
        }
        Ok(Self {
            config,
            word,
            position,
            token_type,
            emb_norm,
            layers,
        })
    }

    /// Length of the embeddings.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// The length (including `[CLS]` and `[SEP]`) texts should be truncated to before
    /// [`Bert::embed`] (sentence-transformers' `max_seq_length`, e.g. 256 for MiniLM).
    /// `embed` itself accepts sequences up to the position table's `max_positions`.
    pub fn max_tokens(&self) -> usize {
        self.config.max_seq_length
    }

    /// One L2-normalised embedding per sequence of `batch`. Each sequence is complete token
    /// ids (`[CLS] … [SEP]`), 1 to [`Bert::max_tokens`] long, every id inside the vocabulary;
    /// otherwise nothing is computed and the first offending sequence's problem is returned.
    pub fn embed(
        &self,
        pool: &ThreadPool,
        batch: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        for seq in batch {
            if seq.is_empty() {
                return Err(ModelError::EmptyInput);
            }
            if seq.len() > self.config.max_positions {
                return Err(ModelError::ContextFull {
                    limit: self.config.max_positions,
                    needed: seq.len(),
                });
            }
            if let Some(&bad) = seq.iter().find(|&&t| t as usize >= self.config.vocab_size) {
                return Err(ModelError::BadToken(bad));
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut i = 0;
        while i < batch.len() {
            let mut j = i;
            let mut tokens = 0;
            while let Some(seq) = batch.get(j) {
                if j > i && tokens + seq.len() > MAX_CHUNK_TOKENS {
                    break;
                }
                tokens += seq.len();
                j += 1;
            }
            out.extend(self.forward(pool, batch.get(i..j).unwrap_or_default(), tokens));
            i = j;
        }
        Ok(out)
    }

    /// The encoder over validated sequences holding `n` tokens in all.
    fn forward(&self, pool: &ThreadPool, seqs: &[Vec<u32>], n: usize) -> Vec<Vec<f32>> {
        let c = &self.config;
        let h = c.hidden_size;
        let eps = c.layer_norm_eps;
        // Per token: the start and length of its sequence.
        let mut spans = Vec::with_capacity(n);
        let mut x = vec![0f32; n * h];
        let mut rows = x.chunks_exact_mut(h);
        for seq in seqs {
            let start = spans.len();
            for (pos, &id) in seq.iter().enumerate() {
                spans.push((start, seq.len()));
                let id = id as usize;
                if let Some(row) = rows.next() {
                    let w = &self.word[id * h..(id + 1) * h];
                    let p = &self.position[pos * h..(pos + 1) * h];
                    for (((r, &a), &b), &t) in row.iter_mut().zip(w).zip(p).zip(&self.token_type) {
                        *r = a + b + t;
                    }
                }
            }
        }
        layer_norm(&mut x, &self.emb_norm, eps);

        let heads = c.num_heads;
        let d = h / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut qkv = vec![0f32; n * 3 * h];
        let mut ctx = vec![0f32; n * h];
        let mut tmp = vec![0f32; n * h];
        let mut inner = vec![0f32; n * c.intermediate_size];
        for layer in &self.layers {
            kernels::matmul(pool, &layer.qkv, &x, n, &mut qkv);
            add_bias(&mut qkv, &layer.qkv_bias);
            let qkv = &qkv;
            let spans = &spans;
            pool.install(|| {
                ctx.par_chunks_mut(h).enumerate().for_each(|(t, out)| {
                    let (s, len) = spans[t];
                    let mut scores = vec![0f32; len];
                    let q_row = &qkv[t * 3 * h..t * 3 * h + h];
                    for head in 0..heads {
                        let q = &q_row[head * d..(head + 1) * d];
                        for (j, sc) in scores.iter_mut().enumerate() {
                            let k0 = (s + j) * 3 * h + h + head * d;
                            *sc = kernels::dot(q, &qkv[k0..k0 + d]) * scale;
                        }
                        kernels::softmax(&mut scores);
                        let o = &mut out[head * d..(head + 1) * d];
                        o.fill(0.0);
                        for (j, &w) in scores.iter().enumerate() {
                            let v0 = (s + j) * 3 * h + 2 * h + head * d;
                            for (y, &v) in o.iter_mut().zip(&qkv[v0..v0 + d]) {
                                *y += w * v;
                            }
                        }
                    }
                });
            });
            kernels::matmul(pool, &layer.out, &ctx, n, &mut tmp);
            add_bias(&mut tmp, &layer.out_bias);
            add(&mut x, &tmp);
            layer_norm(&mut x, &layer.attn_norm, eps);

            kernels::matmul(pool, &layer.up, &x, n, &mut inner);
            add_bias(&mut inner, &layer.up_bias);
            let act = c.activation;
            pool.install(|| {
                inner
                    .par_chunks_mut(c.intermediate_size)
                    .for_each(|row| row.iter_mut().for_each(|v| *v = activate(act, *v)));
            });
            kernels::matmul(pool, &layer.down, &inner, n, &mut tmp);
            add_bias(&mut tmp, &layer.down_bias);
            add(&mut x, &tmp);
            layer_norm(&mut x, &layer.ffn_norm, eps);
        }

        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        for seq in seqs {
            let tokens = x
                .get(start * h..(start + seq.len()) * h)
                .unwrap_or_default();
            start += seq.len();
            out.push(pool_tokens(c.pooling, tokens, h));
        }
        out
    }
}

fn pool_tokens(pooling: Pooling, tokens: &[f32], h: usize) -> Vec<f32> {
    let len = tokens.len() / h;
    let mut v = vec![0f64; h];
    match pooling {
        Pooling::Cls => {
            for (a, &b) in v.iter_mut().zip(tokens) {
                *a = f64::from(b);
            }
        }
        Pooling::Max => {
            v.fill(f64::NEG_INFINITY);
            for row in tokens.chunks_exact(h) {
                for (a, &b) in v.iter_mut().zip(row) {
                    *a = a.max(f64::from(b));
                }
            }
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            for row in tokens.chunks_exact(h) {
                for (a, &b) in v.iter_mut().zip(row) {
                    *a += f64::from(b);
                }
            }
            let div = if pooling == Pooling::Mean {
                len as f64
            } else {
                (len as f64).sqrt()
            };
            v.iter_mut().for_each(|a| *a /= div.max(1.0));
        }
    }
    let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().map(|a| (a * inv) as f32).collect()
}

fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (a, &b) in row.iter_mut().zip(bias) {
            *a += b;
        }
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `x ← (x − mean) / √(var + eps) · weight + bias`, per row.
fn layer_norm(x: &mut [f32], n: &Norm, eps: f32) {
    let h = n.weight.len() as f64;
    for row in x.chunks_exact_mut(n.weight.len()) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / h;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / h;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for ((v, &w), &b) in row.iter_mut().zip(&n.weight).zip(&n.bias) {
            *v = ((f64::from(*v) - mean) * inv) as f32 * w + b;
        }
    }
}

fn activate(act: Activation, x: f32) -> f32 {
    let xd = f64::from(x);
    let y = match act {
        Activation::Gelu => 0.5 * xd * (1.0 + erf(xd / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * xd * (1.0 + (k * (xd + 0.044_715 * xd * xd * xd)).tanh())
        }
    };
    y as f32
}

/// The error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7; `f64::erf` is unstable).
pub(crate) fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 { -y } else { y }
}
