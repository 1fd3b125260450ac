//! Building a [`Tokenizer`] from GGUF metadata, as llama.cpp's `llama_vocab::impl::load`.

use std::collections::HashMap;

use hearth_gguf::{Gguf, Value};

use crate::bpe::{Bpe, decode_into};
use crate::pretok::Pass;
use crate::spm::Spm;
use crate::unicode::char_to_byte;
use crate::{Model, Tokenizer, TokenizerError, attr};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

/// Pre-tokenizer settings for one `tokenizer.ggml.pre` value.
pub(crate) struct Pre {
    pub(crate) passes: Vec<Pass>,
    clean_spaces: bool,
    ignore_merges: bool,
    add_bos: bool,
}

const SUPPORTED_PRE: &str = "default, gpt-2, phi-2, mpt, olmo, jais, exaone4, llama3, llama-v3, llama-bpe, \
falcon3, pixtral, dbrx, smaug-bpe, qwen2, deepseek-r1-qwen, stablelm2, megrez, smollm, starcoder, \
refact, command-r, codeshell, exaone, minerva-7b";

pub(crate) fn pre_for(name: &str) -> Result<Pre, TokenizerError> {
    let default = || {
        vec![
            Pass::DefaultPunct,
            Pass::Gpt2,
            Pass::Numbers { run: true },
            Pass::DigitTriples,
        ]
    };
    let pre = |passes, clean_spaces, ignore_merges, add_bos| Pre {
        passes,
        clean_spaces,
        ignore_merges,
        add_bos,
    };
    let llama3 = || vec![Pass::Llama3 { digits: 3 }];
    let qwen2 = || vec![Pass::Llama3 { digits: 1 }];
    let smollm = || vec![Pass::Numbers { run: false }, Pass::Gpt2];
    Ok(match name {
        // llama.cpp uses "default" (and warns) when the key is missing.
        "" | "default" => pre(default(), true, false, false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => pre(llama3(), true, true, true),
        "dbrx" | "smaug-bpe" => pre(llama3(), true, false, false),
        "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "exaone4" | "gigachat" | "a.x-4.0"
        | "mellum" => pre(vec![Pass::Gpt2], true, false, false),
        "trillion" | "granite-docling" => pre(vec![Pass::Gpt2], false, false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "hunyuan" | "solar-open" => {
            pre(qwen2(), false, false, false)
        }
        "stablelm2" | "megrez" => pre(qwen2(), true, false, false),
        "smollm" | "command-r" => pre(smollm(), false, false, false),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            pre(smollm(), true, false, false)
        }
        other => {
            return Err(TokenizerError::UnsupportedPre {
                name: other.to_owned(),
                supported: SUPPORTED_PRE.to_owned(),
            });
        }
    })
}

fn opt_bool(g: &Gguf, key: &str) -> Result<Option<bool>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(TokenizerError::bad(
            key,
            format!("expected a bool, found {}", v.value_type().name()),
        )),
    }
}

/// A token id from metadata: `Ok(None)` when absent, ignored (as llama.cpp does) when out of range.
fn opt_id(g: &Gguf, key: &str, n: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let Some(id) = v.as_u64() else {
        return Err(TokenizerError::bad(
            key,
            format!("expected a token id, found {}", v.value_type().name()),
        ));
    };
    Ok(u32::try_from(id).ok().filter(|&id| (id as usize) < n))
}

fn check_len(key: &str, len: usize, n: usize) -> Result<(), TokenizerError> {
    if len < n {
        return Err(TokenizerError::bad(
            key,
            format!("has {len} entries but the vocabulary has {n} tokens"),
        ));
    }
    Ok(())
}

struct Ids {
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    fim_pre: Option<u32>,
    fim_suf: Option<u32>,
    fim_mid: Option<u32>,
    fim_pad: Option<u32>,
    fim_rep: Option<u32>,
    fim_sep: Option<u32>,
}

pub(crate) fn load(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
    let model_name = match g.get(KEY_MODEL) {
        None => return Err(TokenizerError::Missing(KEY_MODEL)),
        Some(v) => v
            .as_str()
            .ok_or_else(|| TokenizerError::bad(KEY_MODEL, "expected a string"))?,
    };
    let is_spm = match model_name {
        "llama" => true,
        "gpt2" => false,
        other => return Err(TokenizerError::UnsupportedModel(other.to_owned())),
    };
    let pre_name = match g.get(KEY_PRE) {
        None => "",
        Some(v) => v
            .as_str()
            .ok_or_else(|| TokenizerError::bad(KEY_PRE, "expected a string"))?,
    };

    let tokens = match g.get(KEY_TOKENS) {
        None => return Err(TokenizerError::Missing(KEY_TOKENS)),
        Some(v) => v
            .as_array()
            .and_then(|a| a.as_strings())
            .ok_or_else(|| TokenizerError::bad(KEY_TOKENS, "expected an array of strings"))?,
    };
    let n = tokens.len();
    if n == 0 {
        return Err(TokenizerError::bad(KEY_TOKENS, "the vocabulary is empty"));
    }
    if u32::try_from(n).is_err() {
        return Err(TokenizerError::bad(KEY_TOKENS, "too many tokens"));
    }

    let scores: Vec<f32> = match g.get(KEY_SCORES) {
        None => vec![0.0; n],
        Some(v) => {
            let a = v
                .as_array()
                .ok_or_else(|| TokenizerError::bad(KEY_SCORES, "expected an array"))?;
            let s = match a.to_f32s() {
                Some(s) => s,
                None => a
                    .to_i64s()
                    .ok_or_else(|| TokenizerError::bad(KEY_SCORES, "expected an array of numbers"))?
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
            };
            check_len(KEY_SCORES, s.len(), n)?;
            s
        }
    };

    let mut attrs: Vec<u16> = match g.get(KEY_TYPES) {
        None => vec![attr::NORMAL; n],
        Some(v) => {
            let t = v
                .as_array()
                .and_then(|a| a.to_i64s())
                .ok_or_else(|| TokenizerError::bad(KEY_TYPES, "expected an array of integers"))?;
            check_len(KEY_TYPES, t.len(), n)?;
            t.iter()
                .take(n)
                .map(|&ty| match ty {
                    1 => attr::NORMAL,
                    2 => attr::UNKNOWN,
                    3 => attr::CONTROL,
                    4 => attr::USER_DEFINED,
                    5 => attr::UNUSED,
                    6 => attr::BYTE,
                    _ => 0,
                })
                .collect()
        }
    };

    let mut texts: Vec<String> = Vec::with_capacity(n);
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
    let mut empty_ids = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            texts.push(format!("[EMPTY_{i}]"));
            empty_ids.push(i);
            continue;
        }
        if let Some(prev) = seen.insert(t.as_str(), i) {
            return Err(TokenizerError::bad(
                KEY_TOKENS,
                format!("duplicate token {t:?} at ids {prev} and {i}"),
            ));
        }
        texts.push(t.clone());
    }
    // "[EMPTY_i]" stand-ins may collide with real tokens too.
    for &i in &empty_ids {
        if let Some(t) = texts.get(i)
            && let Some(prev) = seen.insert(t.as_str(), i)
        {
            return Err(TokenizerError::bad(
                KEY_TOKENS,
                format!("duplicate token {t:?} at ids {prev} and {i}"),
            ));
        }
    }

    // Defaults per model type, then metadata.
    let (mut pre, default_ids) = if is_spm {
        let pre = Pre {
            passes: Vec::new(),
            clean_spaces: false,
            ignore_merges: false,
            add_bos: true,
        };
        (pre, (Some(1), Some(2), Some(0)))
    } else {
        (pre_for(pre_name)?, (Some(11), Some(11), None))
    };
    let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
    let mut add_space_prefix = is_spm;
    if let Some(b) = opt_bool(g, "tokenizer.ggml.add_space_prefix")? {
        add_space_prefix = b;
    }
    let pick = |key: &str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
        Ok(opt_id(g, key, n)?.or(in_range(default)))
    };
    let fim = |new: &str, old: &str| -> Result<Option<u32>, TokenizerError> {
        Ok(opt_id(g, old, n)?.or(opt_id(g, new, n)?))
    };
    let mut ids = Ids {
        bos: pick("tokenizer.ggml.bos_token_id", default_ids.0)?,
        eos: pick("tokenizer.ggml.eos_token_id", default_ids.1)?,
        eot: pick("tokenizer.ggml.eot_token_id", None)?,
        eom: pick("tokenizer.ggml.eom_token_id", None)?,
        unk: pick("tokenizer.ggml.unknown_token_id", default_ids.2)?,
        fim_pre: fim(
            "tokenizer.ggml.fim_pre_token_id",
            "tokenizer.ggml.prefix_token_id",
        )?,
        fim_suf: fim(
            "tokenizer.ggml.fim_suf_token_id",
            "tokenizer.ggml.suffix_token_id",
        )?,
        fim_mid: fim(
            "tokenizer.ggml.fim_mid_token_id",
            "tokenizer.ggml.middle_token_id",
        )?,
        fim_pad: pick("tokenizer.ggml.fim_pad_token_id", None)?,
        fim_rep: pick("tokenizer.ggml.fim_rep_token_id", None)?,
        fim_sep: pick("tokenizer.ggml.fim_sep_token_id", None)?,
    };
    let mut add_eos = false;
    if let Some(b) = opt_bool(g, "tokenizer.ggml.add_bos_token")? {
        pre.add_bos = b;
    }
    if let Some(b) = opt_bool(g, "tokenizer.ggml.add_eos_token")? {
        add_eos = b;
    }
    if pre.add_bos && ids.bos.is_none() {
        return Err(TokenizerError::bad(
            "tokenizer.ggml.add_bos_token",
            "is true, but the model has no valid BOS token (tokenizer.ggml.bos_token_id)",
        ));
    }
    if add_eos && ids.eos.is_none() {
        return Err(TokenizerError::bad(
            "tokenizer.ggml.add_eos_token",
            "is true, but the model has no valid EOS token (tokenizer.ggml.eos_token_id)",
        ));
    }

    let eog = special_tokens(&texts, &seen, &mut attrs, &mut ids);
    drop(seen);

    let mut specials: Vec<u32> = (0..n)
        .filter(|&i| {
            attrs.get(i).copied().unwrap_or(0)
                & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN)
                != 0
        })
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    specials.sort_by_key(|&i| std::cmp::Reverse(texts.get(i as usize).map_or(0, String::len)));

    let mut pieces = Vec::new();
    let mut piece_ends = Vec::with_capacity(n);
    for (t, &a) in texts.iter().zip(&attrs) {
        piece(t, a, is_spm, &mut pieces);
        piece_ends.push(pieces.len());
    }

    let model = if is_spm {
        let by_text: HashMap<Box<[u8]>, u32> = texts
            .iter()
            .zip(0u32..)
            .map(|(t, id)| (t.as_bytes().into(), id))
            .collect();
        Model::Spm(Spm::new(by_text, scores, ids.unk))
    } else {
        let merges = match g.get(KEY_MERGES) {
            None => return Err(TokenizerError::Missing(KEY_MERGES)),
            Some(v) => v
                .as_array()
                .and_then(|a| a.as_strings())
                .ok_or_else(|| TokenizerError::bad(KEY_MERGES, "expected an array of strings"))?,
        };
        Model::Bpe {
            bpe: Bpe::new(&texts, merges, pre.ignore_merges),
            passes: pre.passes,
        }
    };

    Ok(Tokenizer {
        model,
        texts,
        attrs,
        pieces,
        piece_ends,
        specials,
        bos: ids.bos,
        eos: ids.eos,
        add_bos: pre.add_bos,
        add_eos,
        add_space_prefix,
        clean_spaces: pre.clean_spaces,
        eog,
    })
}

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "<end_of_utterance>",
];
const FIM_PRE: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<\u{ff5c}fim\u{2581}begin\u{ff5c}>",
    "<PRE>",
    "\u{2581}<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<\u{ff5c}fim\u{2581}hole\u{ff5c}>",
    "<SUF>",
    "\u{2581}<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<\u{ff5c}fim\u{2581}end\u{ff5c}>",
    "<MID>",
    "\u{2581}<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

/// llama.cpp's text-based detection of EOT/EOM/FIM tokens and the end-of-generation set; forces
/// the control attribute on tokens it recognises. Returns the sorted EOG ids.
fn special_tokens(
    texts: &[String],
    by_text: &HashMap<&str, usize>,
    attrs: &mut [u16],
    ids: &mut Ids,
) -> Vec<u32> {
    let id_of = |t: &str| by_text.get(t).and_then(|&i| u32::try_from(i).ok());
    let find = |list: &[&str]| -> Option<u32> {
        // llama.cpp takes the first match in hash-map order; we take the lowest id.
        list.iter().filter_map(|t| id_of(t)).min()
    };
    let mut force_control = |id: u32| {
        if let Some(a) = attrs.get_mut(id as usize) {
            *a |= attr::CONTROL;
        }
    };
    let slots: [(&mut Option<u32>, &[&str]); 8] = [
        (&mut ids.eot, EOT_TEXTS),
        (&mut ids.eom, &["<|eom_id|>"]),
        (&mut ids.fim_pre, FIM_PRE),
        (&mut ids.fim_suf, FIM_SUF),
        (&mut ids.fim_mid, FIM_MID),
        (&mut ids.fim_pad, FIM_PAD),
        (&mut ids.fim_rep, FIM_REP),
        (&mut ids.fim_sep, FIM_SEP),
    ];
    for (slot, list) in slots {
        if slot.is_none()
            && let Some(id) = find(list)
        {
            *slot = Some(id);
            force_control(id);
        }
    }
    // Control tokens whose text says "unused" are unused.
    for (t, a) in texts.iter().zip(attrs.iter_mut()) {
        if *a & attr::CONTROL != 0 && t.contains("unused") {
            *a |= attr::UNUSED;
        }
    }
    let mut eog: Vec<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep]
        .into_iter()
        .flatten()
        .collect();
    for t in EOG_TEXTS {
        if let Some(id) = id_of(t) {
            eog.push(id);
            if let Some(a) = attrs.get_mut(id as usize) {
                *a |= attr::CONTROL;
            }
        }
    }
    // gpt-oss: these are always rendered.
    for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(a) = id_of(t).and_then(|id| attrs.get_mut(id as usize)) {
            *a = attr::USER_DEFINED;
        }
    }
    eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
    eog.sort_unstable();
    eog.dedup();
    let text_of = |id: u32| texts.get(id as usize).map_or("", String::as_str);
    let has = |eog: &[u32], s: &str| eog.iter().any(|&id| text_of(id) == s);
    // o200k_harmony / solar-open: "<|end|>" is not end of generation there.
    let (ret, call, flush) = (
        has(&eog, "<|return|>"),
        has(&eog, "<|call|>") || has(&eog, "<|calls|>"),
        has(&eog, "<|flush|>"),
    );
    if call
        && (ret || flush)
        && let Some(pos) = eog.iter().position(|&id| text_of(id) == "<|end|>")
    {
        let id = eog.remove(pos);
        if let Some(a) = attrs.get_mut(id as usize) {
            *a = attr::USER_DEFINED;
        }
    }
    // gemma4 / paddleocr: "</s>" is not end of generation when "<|tool_response>" is.
    if has(&eog, "<|tool_response>")
        && let Some(pos) = eog.iter().position(|&id| text_of(id) == "</s>")
    {
        let id = eog.remove(pos);
        if let Some(a) = attrs.get_mut(id as usize) {
            *a = attr::NORMAL;
        }
    }
    eog
}

/// llama.cpp `token_to_piece(special = true)` for one token.
fn piece(text: &str, a: u16, is_spm: bool, out: &mut Vec<u8>) {
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        out.extend_from_slice(text.as_bytes());
    } else if a & attr::NORMAL != 0 {
        if is_spm {
            for c in text.chars() {
                let c = if c == '\u{2581}' { ' ' } else { c };
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        } else {
            let start = out.len();
            if !decode_into(text, out) {
                out.truncate(start);
                // llama.cpp's `llama_decode_text` marks characters outside GPT-2's byte map.
                for c in text.chars() {
                    match char_to_byte(c) {
                        Some(b) => out.push(b),
                        None => {
                            out.extend_from_slice(b"[UNK_BYTE_0x");
                            let mut buf = [0u8; 4];
                            for b in c.encode_utf8(&mut buf).as_bytes() {
                                out.extend_from_slice(format!("{b:02x}").as_bytes());
                            }
                            out.extend_from_slice(text.as_bytes());
                            out.push(b']');
                        }
                    }
                }
            }
        }
    } else if a & attr::BYTE != 0 {
        // strtol(text.substr(3, 2), 16)
        let hex = text.get(3..).unwrap_or_default();
        let mut v: u8 = 0;
        for c in hex.chars().take(2) {
            match c.to_digit(16).and_then(|d| u8::try_from(d).ok()) {
                Some(d) => v = v.wrapping_mul(16).wrapping_add(d),
                None => break,
            }
        }
        out.push(v);
    }
}
