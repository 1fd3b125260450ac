//! Tool calling for models run here: how the tools reach the prompt, what the answer may be, and
//! how the answer's text becomes [`ToolCall`]s.
//!
//! Calls are written the way Hermes-style templates (Qwen 2.5, SmolLM3, …) write them, one
//! block per call:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Oslo"}}
//! </tool_call>
//! ```
//!
//! A template that knows tools gets them as its `tools` variable and the conversation's calls as
//! `tool_calls`; for one that does not, the tools are described in the system message and calls
//! and results are written into the messages' text. Either way the answer is constrained by a
//! grammar (`hearth-grammar`), so a call always parses and its arguments always validate.

use serde_json::{Value, json};

use crate::{ChatRequest, LlmError, Message, Tool, ToolCall, ToolChoice};

/// What opens a call in the model's answer; in `auto` mode, an answer that starts with it is a
/// set of calls.
pub(crate) const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// Most calls in one answer when parallel calls are allowed.
pub(crate) const MAX_CALLS: usize = 8;

/// What the answer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Text, or calls when the answer starts with [`OPEN`].
    Auto,
    /// Calls only.
    Required,
}

/// How a chat request with tools is put to the model.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Messages as the chat template sees them.
    pub messages: Vec<Value>,
    /// The template's `tools` variable (only for templates that use it).
    pub template_tools: Option<Value>,
    /// `None`: no tools in play, the answer is text.
    pub mode: Option<Mode>,
    /// The tools the answer may call: `(name, parameters schema)`.
    pub callable: Vec<(String, Value)>,
    /// Most calls in one answer.
    pub max_calls: usize,
}

fn bad(msg: impl Into<String>) -> LlmError {
    LlmError::BadRequest(msg.into())
}

/// OpenAI's rule for function names: 1 to 64 of `a-z A-Z 0-9 _ -`.
fn check_name(name: &str) -> Result<(), LlmError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "tools: `{name}` is not a valid function name; use 1 to 64 letters, digits, `_` or `-`"
        )))
    }
}

/// Checks the request's tools and choice and decides how to prompt and constrain the model.
pub(crate) fn plan(req: &ChatRequest, template_knows_tools: bool) -> Result<Plan, LlmError> {
    let mut seen = std::collections::HashSet::new();
    for t in &req.tools {
        check_name(&t.name)?;
        if !seen.insert(t.name.as_str()) {
            return Err(bad(format!(
                "tools: `{}` is defined twice; give each function one definition",
                t.name
            )));
        }
        if !t.parameters.is_object() {
            return Err(bad(format!(
                "tools: the parameters of `{}` must be a JSON Schema object",
                t.name
            )));
        }
    }
    let offered: Vec<&Tool> = match &req.tool_choice {
        ToolChoice::None => Vec::new(),
        ToolChoice::Auto => req.tools.iter().collect(),
        ToolChoice::Required if req.tools.is_empty() => {
            return Err(bad(
                "tool_choice: `required` needs at least one tool in `tools`",
            ));
        }
        ToolChoice::Required => req.tools.iter().collect(),
        ToolChoice::Function(name) => match req.tools.iter().find(|t| &t.name == name) {
            Some(t) => vec![t],
            None => {
                return Err(bad(format!(
                    "tool_choice: names `{name}`, which is not among the request's tools"
                )));
            }
        },
    };
    let mode = match (&req.tool_choice, offered.is_empty()) {
        (_, true) => None,
        (ToolChoice::Auto, false) => Some(Mode::Auto),
        (_, false) => Some(Mode::Required),
    };
    let max_calls = if req.single_tool_call || matches!(req.tool_choice, ToolChoice::Function(_)) {
        1
    } else {
        MAX_CALLS
    };
    let (messages, template_tools) = if template_knows_tools {
        let tools = (!offered.is_empty())
            .then(|| Value::Array(offered.iter().map(|t| tool_json(t)).collect()));
        (req.messages.iter().map(native_message).collect(), tools)
    } else {
        (inline_messages(&req.messages, &offered), None)
    };
    Ok(Plan {
        messages,
        template_tools,
        mode,
        callable: offered
            .iter()
            .map(|t| (t.name.clone(), t.parameters.clone()))
            .collect(),
        max_calls,
    })
}

/// A tool as OpenAI and Hugging Face templates write it.
fn tool_json(t: &Tool) -> Value {
    let mut function = json!({"name": t.name, "parameters": t.parameters});
    if let (Some(d), Some(obj)) = (&t.description, function.as_object_mut()) {
        obj.insert("description".to_owned(), Value::String(d.clone()));
    }
    json!({"type": "function", "function": function})
}

/// A call as the model writes it.
fn call_text(c: &ToolCall) -> String {
    let body = json!({"name": c.name, "arguments": c.arguments});
    format!("{OPEN}\n{body}\n{CLOSE}")
}

/// A message for a template that knows tools (Hugging Face's message shape).
fn native_message(m: &Message) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if let Some(obj) = v.as_object_mut() {
        if !m.tool_calls.is_empty() {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| {
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
            obj.insert("tool_calls".to_owned(), Value::Array(calls));
        }
        if let Some(id) = &m.tool_call_id {
            obj.insert("tool_call_id".to_owned(), Value::String(id.clone()));
        }
        if let Some(name) = &m.name {
            obj.insert("name".to_owned(), Value::String(name.clone()));
        }
    }
    v
}

/// The system text that teaches a model without tool support in its template to call tools.
fn tools_prompt(tools: &[&Tool]) -> String {
    let mut s = String::from(
        "You may call functions to help answer. These are the functions, as JSON Schema:\n<tools>\n",
    );
    for t in tools {
        s.push_str(&tool_json(t).to_string());
        s.push('\n');
    }
    s.push_str(
        "</tools>\nTo call functions, answer only with one block per call, each holding a JSON \
         object with the function's name and arguments:\n<tool_call>\n\
         {\"name\": <function-name>, \"arguments\": <arguments-object>}\n</tool_call>",
    );
    s
}

/// Messages for a template that knows nothing of tools: the tools go into the system message,
/// calls into the assistant's text, results into user messages wrapped in `<tool_response>`
/// (consecutive results share one message, so user and assistant turns still alternate).
fn inline_messages(messages: &[Message], tools: &[&Tool]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(messages.len() + 1);
    let mut last_was_result = false;
    for m in messages {
        let is_result = m.role == "tool";
        if is_result {
            let block = format!("<tool_response>\n{}\n</tool_response>", m.content);
            if last_was_result
                && let Some(Value::String(prev)) = out.last_mut().and_then(|v| v.get_mut("content"))
            {
                prev.push('\n');
                prev.push_str(&block);
            } else {
                out.push(json!({"role": "user", "content": block}));
            }
        } else {
            let mut content = m.content.clone();
            for c in &m.tool_calls {
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(&call_text(c));
            }
            out.push(json!({"role": m.role, "content": content}));
        }
        last_was_result = is_result;
    }
    if !tools.is_empty() {
        let prompt = tools_prompt(tools);
        match out.first_mut() {
            Some(first) if first.get("role").and_then(Value::as_str) == Some("system") => {
                if let Some(Value::String(c)) = first.get_mut("content") {
                    c.push_str("\n\n");
                    c.push_str(&prompt);
                }
            }
            _ => out.insert(0, json!({"role": "system", "content": prompt})),
        }
    }
    out
}

/// Holds back an answer's text while it may still turn out to be tool calls.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    /// `Some(true)`: the answer is calls; `Some(false)`: text; `None`: not known yet.
    calls: Option<bool>,
    held: String,
}

/// What an answer came to.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Text still held back (the answer was text after all).
    Text(String),
    Calls(Vec<ToolCall>),
}

impl ToolOutput {
    pub(crate) fn new(mode: Mode) -> Self {
        ToolOutput {
            calls: (mode == Mode::Required).then_some(true),
            held: String::new(),
        }
    }

    /// New text of the answer; returns what can be passed on now.
    pub(crate) fn text(&mut self, delta: &str) -> String {
        match self.calls {
            Some(false) => return delta.to_owned(),
            Some(true) => {
                self.held.push_str(delta);
                return String::new();
            }
            None => self.held.push_str(delta),
        }
        let t = self.held.trim_start();
        if t.starts_with(OPEN) {
            self.calls = Some(true);
            String::new()
        } else if OPEN.starts_with(t) {
            String::new()
        } else {
            self.calls = Some(false);
            std::mem::take(&mut self.held)
        }
    }

    /// The end of the answer: the calls it made, or the text still held back.
    pub(crate) fn finish(self, callable: &[(String, Value)]) -> Result<Outcome, LlmError> {
        if self.calls != Some(true) {
            return Ok(Outcome::Text(self.held));
        }
        parse_calls(&self.held, callable).map(Outcome::Calls)
    }
}

/// Reads the `<tool_call>` blocks of an answer.
pub(crate) fn parse_calls(
    text: &str,
    callable: &[(String, Value)],
) -> Result<Vec<ToolCall>, LlmError> {
    let cut_off = || {
        LlmError::BadRequest(
            "the answer ran out of tokens before its tool call was complete; raise max_tokens"
                .to_owned(),
        )
    };
    let mut calls = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let body = rest.strip_prefix(OPEN).ok_or_else(cut_off)?;
        let end = body.find(CLOSE).ok_or_else(cut_off)?;
        let call: Value = serde_json::from_str(body[..end].trim()).map_err(|_| cut_off())?;
        let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
        if !callable.iter().any(|(n, _)| n == name) {
            return Err(LlmError::Internal(format!(
                "the model called `{name}`, which it was not offered"
            )));
        }
        let arguments = call.get("arguments").cloned().unwrap_or(json!({}));
        calls.push(ToolCall {
            id: new_call_id(),
            name: name.to_owned(),
            arguments,
        });
        rest = body[end + CLOSE.len()..].trim_start();
    }
    if calls.is_empty() {
        return Err(cut_off());
    }
    Ok(calls)
}

/// `call_` and 24 random letters and digits, as OpenAI's ids look.
fn new_call_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = hearth_engine::sampling::Rng::new(hearth_engine::sampling::Rng::fresh_seed());
    let mut id = String::from("call_");
    for _ in 0..24 {
        id.push(ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests;
