#![forbid(unsafe_code)]
//! Chat templates (`tokenizer.chat_template`) rendered the way Hugging Face transformers renders them.
//!
//! # What this matches
//!
//! transformers renders a model's Jinja chat template with jinja2's `ImmutableSandboxedEnvironment`
//! configured with `trim_blocks=True`, `lstrip_blocks=True` (and `keep_trailing_newline=False`), the
//! `loopcontrols` extension (`{% break %}`, `{% continue %}`), and these additions, all of which
//! [`ChatTemplate`] provides on top of [`minijinja`]:
//!
//! - variables `messages`, `tools` (always defined; `none` when no tools are given), `documents`
//!   (`none`), `add_generation_prompt`, `bos_token`, `eos_token`, plus any extra variables passed to
//!   [`ChatTemplate::render_with_vars`] (e.g. `enable_thinking`);
//! - `raise_exception(msg)` → [`TemplateError::Raised`] carrying `msg` unchanged;
//! - `strftime_now(fmt)` → the current UTC time through C `strftime` (common directives and glibc's
//!   `%-d` no-padding flag; see [`ChatTemplate::with_fixed_time`] for reproducible renders);
//! - `tojson(indent=None, ensure_ascii=False, separators=None, sort_keys=False)` with Python
//!   `json.dumps` output: `", "`/`": "` separators, no HTML escaping, non-ASCII kept, keys in the
//!   order the caller's JSON had them;
//! - Python string/dict/list methods templates call (`.strip()`, `.split()`, `.startswith()`,
//!   `.items()`, `.get()`, ...) through `minijinja-contrib`'s `pycompat`;
//! - `{% generation %}...{% endgeneration %}` (transformers' `AssistantTracker`), rendered as its
//!   body;
//! - Python's printing: `{{ none }}` prints `None`, booleans `True`/`False`, containers print as
//!   Python's `str()` (`{'a': 1}`), also through the `string` filter.
//!
//! Messages are [`serde_json::Value`] objects as the OpenAI API sends them; unknown keys pass through
//! to the template, so `tool_calls`, `tool_call_id`, `name` and friends reach the templates that use
//! them.
//!
//! # Fallback: ChatML
//!
//! When a GGUF has no `tokenizer.chat_template`, [`ChatTemplate::chatml`] renders ChatML:
//!
//! ```text
//! <|im_start|>system
//! You are helpful.<|im_end|>
//! <|im_start|>user
//! Hi<|im_end|>
//! <|im_start|>assistant
//! ```
//!
//! (each message as `<|im_start|>{role}\n{content}<|im_end|>\n`, then `<|im_start|>assistant\n` when
//! a generation prompt is asked for; no BOS/EOS text is added).
//!
//! # Hostile templates
//!
//! A template comes from a downloaded file, so it is untrusted: rendering runs with a fuel budget
//! ([`FUEL`] instructions), minijinja's recursion limit, and an output cap ([`MAX_OUTPUT_BYTES`]);
//! exceeding any of them is [`TemplateError::Budget`] instead of a hang or an unbounded allocation.
//! Not bounded: a template that doubles a string with `~` in a short loop can still allocate
//! `2^n` bytes before the output cap sees it (minijinja has no hook on string concatenation).

mod python;
mod strftime;

use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};

/// Instructions one render may execute before it is stopped.
pub const FUEL: u64 = 20_000_000;
/// Largest rendered prompt, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 32 * 1024 * 1024;
/// Largest template source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;

const TEMPLATE_NAME: &str = "chat_template";

const CHATML: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// Errors from compiling or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template text does not compile (bad input: the model's template is broken).
    #[error("the model's chat template is invalid: {0}; fix or override the model's chat template")]
    Syntax(String),
    /// The template called `raise_exception(msg)`: it rejects this conversation (bad input: the
    /// messages). The message is the template's own, e.g. "Conversation roles must alternate ...".
    #[error("the model's chat template rejected the conversation: {0}")]
    Raised(String),
    /// The messages or variables handed to the template are unusable (bad input).
    #[error("invalid chat template input: {0}")]
    BadInput(String),
    /// Rendering failed inside the template (e.g. it used a value the conversation lacks).
    #[error(
        "rendering the model's chat template failed: {0}; check the messages' shape or override the chat template"
    )]
    Render(String),
    /// The template ran out of its instruction, recursion or output budget.
    #[error(
        "the model's chat template exceeded its rendering budget ({0}); the template loops or produces too much text"
    )]
    Budget(String),
}

/// Marker carried as the source of errors created by `raise_exception`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Raised(String);

/// A compiled chat template with its BOS/EOS token texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: Arc<str>,
    bos_token: String,
    eos_token: String,
    fixed_time: Option<i64>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_bytes", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("fixed_time", &self.fixed_time)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source` (the Jinja text); `bos_token`/`eos_token` are the token texts exposed to the
    /// template as `bos_token`/`eos_token`.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(TemplateError::Syntax(format!(
                "the template is {} bytes, more than the {MAX_SOURCE_BYTES} accepted",
                source.len()
            )));
        }
        let source: Arc<str> = Arc::from(source);
        let env = build_env(&source, None)?;
        Ok(ChatTemplate {
            env,
            source,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            fixed_time: None,
        })
    }

    /// The ChatML fallback for models without a template (see the crate docs).
    pub fn chatml() -> Self {
        let source: Arc<str> = Arc::from(CHATML);
        let env = build_env(&source, None).unwrap_or_else(|_| Environment::new());
        ChatTemplate {
            env,
            source,
            bos_token: String::new(),
            eos_token: String::new(),
            fixed_time: None,
        }
    }

    /// Pins `strftime_now` to `unix_secs` (UTC) instead of the clock, for reproducible renders.
    pub fn with_fixed_time(mut self, unix_secs: i64) -> Self {
        if let Ok(env) = build_env(&self.source, Some(unix_secs)) {
            self.env = env;
            self.fixed_time = Some(unix_secs);
        }
        self
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the conversation. `messages` are JSON objects (`role`, `content`, and whatever else
    /// the client sent, such as `tool_calls`); `tools` is the JSON array of tool definitions.
    pub fn render(
        &self,
        messages: &[serde_json::Value],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, TemplateError> {
        self.render_with_vars(
            messages,
            add_generation_prompt,
            tools,
            &serde_json::Map::new(),
        )
    }

    /// [`render`](Self::render) with extra template variables (HF's `apply_chat_template(**kwargs)`,
    /// e.g. `{"enable_thinking": false}`). Extra variables cannot replace the standard ones.
    pub fn render_with_vars(
        &self,
        messages: &[serde_json::Value],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        const RESERVED: [&str; 6] = [
            "messages",
            "tools",
            "documents",
            "add_generation_prompt",
            "bos_token",
            "eos_token",
        ];
        if let Some(key) = vars.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(TemplateError::BadInput(format!(
                "the extra template variable `{key}` would replace a standard one; remove it"
            )));
        }
        if let Some((i, _)) = messages.iter().enumerate().find(|(_, m)| !m.is_object()) {
            return Err(TemplateError::BadInput(format!(
                "message {i} is not a JSON object; send messages as objects with `role` and `content`"
            )));
        }
        let mut ctx: Vec<(String, Value)> = Vec::with_capacity(vars.len() + RESERVED.len());
        for (k, v) in vars {
            ctx.push((k.clone(), Value::from(Serde(v))));
        }
        ctx.push(("messages".into(), Value::from(Serde(messages))));
        ctx.push((
            "tools".into(),
            tools.map_or(Value::from(()), |t| Value::from(Serde(t))),
        ));
        ctx.push(("documents".into(), Value::from(())));
        ctx.push((
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        ));
        ctx.push(("bos_token".into(), Value::from(self.bos_token.as_str())));
        ctx.push(("eos_token".into(), Value::from(self.eos_token.as_str())));
        let ctx = Value::from_pairs(ctx);

        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        let mut sink = CappedSink::default();
        match template.render_captured_to(ctx, &mut sink) {
            Ok(_) => String::from_utf8(sink.buf)
                .map_err(|_| TemplateError::Render("the template produced invalid UTF-8".into())),
            Err(_) if sink.overflowed => Err(TemplateError::Budget(format!(
                "output larger than {MAX_OUTPUT_BYTES} bytes"
            ))),
            Err(e) => Err(classify(&e)),
        }
    }

    /// Convenience for plain text conversations: `(role, content)` pairs, generation prompt added.
    pub fn render_simple(&self, messages: &[(&str, &str)]) -> Result<String, TemplateError> {
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|(role, content)| serde_json::json!({ "role": role, "content": content }))
            .collect();
        self.render(&messages, true, None)
    }
}

/// Collects output up to [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct CappedSink {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("chat template output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The error's message with its template location, without minijinja's debug dump.
fn describe(e: &minijinja::Error) -> String {
    let mut msg = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (template line {line})"));
    }
    msg
}

fn raised_message(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Raised>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

fn classify(e: &minijinja::Error) -> TemplateError {
    if let Some(msg) = raised_message(e) {
        return TemplateError::Raised(msg);
    }
    match e.kind() {
        ErrorKind::SyntaxError => TemplateError::Syntax(describe(e)),
        ErrorKind::OutOfFuel => {
            TemplateError::Budget(format!("more than {FUEL} template instructions"))
        }
        _ if e.detail().is_some_and(|d| d.contains("recursion")) => {
            TemplateError::Budget(describe(e))
        }
        _ => TemplateError::Render(describe(e)),
    }
}

fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn build_env(
    source: &Arc<str>,
    fixed_time: Option<i64>,
) -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .map_err(|e| TemplateError::Syntax(describe(&e)))?;
    env.set_syntax(syntax);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        let text = python::py_str(value)?;
        out.write_str(&text).map_err(minijinja::Error::from)
    });
    env.add_function(
        "raise_exception",
        |msg: Value| -> Result<Value, minijinja::Error> {
            let msg = python::py_str(&msg)?;
            Err(
                minijinja::Error::new(ErrorKind::InvalidOperation, msg.clone())
                    .with_source(Raised(msg)),
            )
        },
    );
    env.add_function("strftime_now", move |fmt: &str| -> String {
        let t = strftime::Civil::from_unix(fixed_time.unwrap_or_else(now_unix));
        strftime::strftime(fmt, &t)
    });
    env.add_filter("tojson", tojson);
    env.add_filter("string", |v: Value| -> Result<String, minijinja::Error> {
        python::py_str(&v)
    });
    env.add_template_owned(TEMPLATE_NAME, rewrite_generation_tags(source))
        .map_err(|e| TemplateError::Syntax(describe(&e)))?;
    Ok(env)
}

/// transformers' `AssistantTracker` extension adds `{% generation %}...{% endgeneration %}`, which
/// renders its body unchanged (it only records where assistant text lies). minijinja has no custom
/// tags, so each tag becomes `if true` / `endif`, keeping its whitespace-control marks.
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        // The closing `%}` starts after the opening `{%` (`{%}` is not a tag).
        let Some(end) = tag.get(2..).and_then(|t| t.find("%}")).map(|i| i + 2) else {
            out.push_str(tag);
            return out;
        };
        let inner = tag.get(2..end).unwrap_or_default();
        let (open_mark, body) = match inner.chars().next() {
            Some(c @ ('-' | '+')) => (Some(c), &inner[1..]),
            _ => (None, inner),
        };
        let (body, close_mark) = match body.chars().last() {
            Some(c @ ('-' | '+')) => (&body[..body.len() - 1], Some(c)),
            _ => (body, None),
        };
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(word) => {
                out.push_str("{%");
                out.extend(open_mark);
                out.push(' ');
                out.push_str(word);
                out.push(' ');
                out.extend(close_mark);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// HF's `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(_state: &State, value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => {
            if let Some(s) = v.as_str() {
                Some(s.to_owned())
            } else if let Some(n) = v.as_i64() {
                // Python: a negative or zero indent still inserts newlines.
                Some(" ".repeat(usize::try_from(n.clamp(0, 64)).unwrap_or(0)))
            } else {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ));
            }
        }
    };
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let separators: Option<Value> = kwargs.get("separators")?;
    let separators = match separators {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => Some((python::py_str(a)?, python::py_str(b)?)),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair (item_separator, key_separator)",
                    ));
                }
            }
        }
        _ => None,
    };
    kwargs.assert_all_used()?;
    let opts = python::JsonOptions::new(ensure_ascii, indent, separators, sort_keys);
    let mut out = String::new();
    python::json_dumps(&mut out, value, &opts, 0)?;
    Ok(Value::from_safe_string(out))
}

#[cfg(test)]
mod tests;
