//! Grammar-constrained decoding: the output of a request must parse as JSON (any object, or an
//! instance of a JSON schema) or as tool calls, even from a small model.
//!
//! A [`Grammar`] is compiled once per request format (JSON schema → grammar nodes; shortest
//! completion lengths by fixpoint). A [`Vocab`] is built once per model (token bytes and a trie
//! of them). A [`Matcher`] is one request's state: a byte-level pushdown matcher that masks the
//! next token by walking the trie depth first, cutting a whole subtree at its first bad byte.
//! It implements the engine's [`TokenConstraint`]: every allowed token keeps the output
//! completable within the tokens left, so the output is complete even when `max_tokens` is
//! small (as long as it is at least [`Grammar::min_len_bytes`]).
//!
//! Output JSON is compact, with at most one space after `:` and `,`; properties come in their
//! declared order; numbers have at most 15 integer and 9 fraction digits and no exponent.
#![forbid(unsafe_code)]

mod machine;
mod schema;
mod vocab;

use std::collections::HashMap;
use std::sync::Arc;

use hearth_engine::TokenConstraint;
use machine::{Entry, INF, NONE, Node, NodeId, Nodes, compact, dedupe};
pub use vocab::Vocab;

/// Why a schema or tool list cannot be compiled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrammarError {
    /// A keyword whose constraint the output could not be guaranteed to meet.
    #[error(
        "the JSON schema keyword `{keyword}` at `{path}` is not supported for structured output; remove it (describe the constraint in the prompt instead)"
    )]
    Unsupported { keyword: String, path: String },
    /// A schema that is malformed or allows no value.
    #[error("the JSON schema at `{path}` is invalid: {reason}")]
    Invalid { path: String, reason: String },
    /// A schema past the size limits.
    #[error("the JSON schema is too large: {reason}")]
    TooLarge { reason: String },
}

/// A compiled output format: immutable, shared between requests through an `Arc`.
#[derive(Debug, Clone)]
pub struct Grammar {
    nodes: Nodes,
    root: NodeId,
}

impl Grammar {
    /// Any JSON object (OpenAI's `json_object`, Ollama's `"json"`).
    pub fn json_object() -> Grammar {
        let doc = serde_json::Value::Null;
        let mut c = schema::Compiler::new(&doc);
        let root = c.any_object();
        let key = c.key_string;
        Grammar {
            nodes: Nodes::new(c.nodes, key),
            root,
        }
    }

    /// An instance of `schema` (JSON Schema, the subset OpenAI's structured outputs use).
    pub fn json_schema(schema: &serde_json::Value) -> Result<Grammar, GrammarError> {
        let mut c = schema::Compiler::new(schema);
        let root = c.compile_root()?;
        let key = c.key_string;
        Grammar::finish(c.nodes, key, root, "")
    }

    /// `<tool_call>\n{"name": "<one of names>", "arguments": <that tool's parameters>}\n</tool_call>`
    /// repeated `min..=max` times, separated by `"\n"`. `tools`: (name, parameters JSON schema).
    pub fn tool_calls(
        tools: &[(String, serde_json::Value)],
        min: usize,
        max: usize,
    ) -> Result<Grammar, GrammarError> {
        if tools.is_empty() {
            return Err(GrammarError::Invalid {
                path: "/tools".into(),
                reason: "no tools to call".into(),
            });
        }
        if max == 0 || min > max {
            return Err(GrammarError::Invalid {
                path: "/tools".into(),
                reason: format!("cannot make between {min} and {max} tool calls"),
            });
        }
        let first = &tools[0].1;
        let mut c = schema::Compiler::new(first);
        // `{"name": "` once, then the names as a trie, each followed by its own arguments:
        // the matcher follows one branch per distinct name prefix, not one per tool.
        let mut names = Vec::with_capacity(tools.len());
        for (i, (name, params)) in tools.iter().enumerate() {
            let path = format!("/tools/{i}/parameters");
            if name.is_empty() || tools[..i].iter().any(|(n, _)| n == name) {
                return Err(GrammarError::Invalid {
                    path: format!("/tools/{i}/name"),
                    reason: format!("tool names must be unique and non-empty (`{name}`)"),
                });
            }
            c.set_root(params, path);
            let args = c.compile_root()?;
            let name_text =
                serde_json::to_vec(&serde_json::Value::String(name.clone())).map_err(|e| {
                    GrammarError::Invalid {
                        path: format!("/tools/{i}/name"),
                        reason: e.to_string(),
                    }
                })?;
            let between = c.lit(b", \"arguments\": ");
            let end = c.lit(b"}");
            let rest = c.add(Node::Seq(vec![between, args, end]));
            // The name without its opening quote (the trie's texts never prefix one another).
            names.push((name_text[1..].to_vec(), Some(rest)));
        }
        let start = c.lit(b"{\"name\": \"");
        let names = c.lit_trie(names);
        let call = c.add(Node::Seq(vec![start, names]));
        let open = c.lit(b"<tool_call>\n");
        let close = c.lit(b"\n</tool_call>");
        let item = c.add(Node::Seq(vec![open, call, close]));
        let sep = c.lit(b"\n");
        let clamp = |n: usize| u32::try_from(n).unwrap_or(INF - 1).min(INF - 1);
        let root = c.add(Node::Repeat {
            item,
            sep: Some(sep),
            min: clamp(min),
            max: clamp(max),
        });
        let key = c.key_string;
        Grammar::finish(c.nodes, key, root, "/tools")
    }

    fn finish(
        nodes: Vec<Node>,
        key: NodeId,
        root: NodeId,
        path: &str,
    ) -> Result<Grammar, GrammarError> {
        let g = Grammar {
            nodes: Nodes::new(nodes, key),
            root,
        };
        if g.nodes.minlen.get(root as usize).is_none_or(|&m| m == INF) {
            return Err(GrammarError::Invalid {
                path: path.into(),
                reason:
                    "no finite JSON value satisfies the schema (a reference loop with no way out?)"
                        .into(),
            });
        }
        Ok(g)
    }

    /// Bytes of the shortest complete output. A request needs at least this many tokens to be
    /// sure of a complete output (each byte is a token in byte-level vocabularies).
    pub fn min_len_bytes(&self) -> usize {
        self.nodes
            .minlen
            .get(self.root as usize)
            .map_or(usize::MAX, |&m| m as usize)
    }

    /// Whether `text` is a complete output of this grammar.
    pub fn matches(&self, text: &[u8]) -> bool {
        let mut s = State::initial(self);
        text.iter().all(|&b| s.feed(&self.nodes, b)) && s.rem(&self.nodes) == 0
    }
}

/// A matcher state: the tops of the stacks still alive, in an arena.
#[derive(Debug, Clone)]
struct State {
    arena: Vec<Entry>,
    tops: Vec<u32>,
}

impl State {
    fn initial(g: &Grammar) -> State {
        let mut arena = Vec::new();
        let mut tops = Vec::new();
        g.nodes.push(&mut arena, NONE, g.root, &mut tops);
        dedupe(&arena, &mut tops, 0);
        State { arena, tops }
    }

    /// Consume one byte; `false` (and the state unchanged) when no stack takes it.
    fn feed(&mut self, g: &Nodes, b: u8) -> bool {
        let mut next = Vec::with_capacity(self.tops.len());
        for &t in &self.tops {
            g.feed(&mut self.arena, t, b, &mut next);
        }
        dedupe(&self.arena, &mut next, 0);
        if next.is_empty() {
            return false;
        }
        self.tops = next;
        true
    }

    fn rem(&self, g: &Nodes) -> u32 {
        g.state_rem(&self.arena, &self.tops)
    }

    /// Whether some byte may follow.
    fn can_continue(&mut self, g: &Nodes) -> bool {
        let base = self.arena.len();
        let mut out = Vec::new();
        (0..=255u8).any(|b| {
            out.clear();
            for &t in &self.tops {
                g.feed(&mut self.arena, t, b, &mut out);
            }
            self.arena.truncate(base);
            !out.is_empty()
        })
    }

    fn compact(&mut self) {
        let (arena, tops) = compact(&self.arena, &self.tops);
        self.arena = arena;
        self.tops = tops;
    }

    /// The state as numbers, to look its mask up in the cache.
    fn key(&self) -> Vec<u32> {
        let mut k = Vec::new();
        for &t in &self.tops {
            let mut x = t;
            while let Some(e) = self.arena.get(x as usize) {
                let f = e.frame;
                k.extend([f.node, f.a, f.b, f.c]);
                x = e.parent;
            }
            k.push(NONE);
        }
        k
    }
}

/// A token mask: a bit per token id; and the longest shortest-completion after any of them.
#[derive(Debug)]
struct Mask {
    bits: Vec<u64>,
    max_after: u32,
}

/// Most masks one request keeps (a string's content repeats one state, so few are needed).
const MASK_CACHE: usize = 64;

#[derive(Debug)]
enum Phase {
    /// Lazy and undecided: the output so far (leading whitespace ignored) begins the trigger.
    Undecided,
    /// Lazy and the output is free text: nothing is constrained.
    Free,
    /// The output must match the grammar.
    Grammar,
}

/// One request's matcher: implements [`TokenConstraint`].
#[derive(Debug)]
pub struct Matcher {
    grammar: Arc<Grammar>,
    vocab: Arc<Vocab>,
    state: State,
    phase: Phase,
    trigger: Vec<u8>,
    output: Vec<u8>,
    cache: HashMap<Vec<u32>, Arc<Mask>>,
    /// Levels of the trie walk: (start, end) in `walk_tops`, arena length.
    walk_levels: Vec<(usize, usize, usize)>,
    walk_tops: Vec<u32>,
}

impl Matcher {
    /// The output must match `grammar` from its first byte.
    pub fn new(grammar: Arc<Grammar>, vocab: Arc<Vocab>) -> Matcher {
        let state = State::initial(&grammar);
        Matcher {
            grammar,
            vocab,
            state,
            phase: Phase::Grammar,
            trigger: Vec::new(),
            output: Vec::new(),
            cache: HashMap::new(),
            walk_levels: Vec::new(),
            walk_tops: Vec::new(),
        }
    }

    /// Lazy ("tool_choice: auto"): unconstrained free text, unless the output (leading
    /// whitespace ignored) begins with `trigger` (e.g. `"<tool_call>"`); from then on it must
    /// match `grammar` (whose text begins with the trigger).
    pub fn lazy(grammar: Arc<Grammar>, vocab: Arc<Vocab>, trigger: &str) -> Matcher {
        let mut m = Matcher::new(grammar, vocab);
        m.trigger = trigger.as_bytes().to_vec();
        m.phase = if m.trigger.is_empty() {
            Phase::Grammar
        } else {
            Phase::Undecided
        };
        m
    }

    /// Bytes accepted so far.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Whether the output so far is a complete output of the grammar (or, lazily, free text).
    pub fn is_complete(&self) -> bool {
        match self.phase {
            Phase::Grammar => self.state.rem(&self.grammar.nodes) == 0,
            Phase::Undecided | Phase::Free => true,
        }
    }

    /// The mask for the current state: from the cache when it holds for `limit`, else by a
    /// walk over the trie.
    fn mask(&mut self, limit: u32) -> Arc<Mask> {
        let key = self.state.key();
        if let Some(m) = self.cache.get(&key)
            && m.max_after <= limit
        {
            return m.clone();
        }
        let mask = Arc::new(self.walk(limit));
        if mask.max_after <= limit {
            if self.cache.len() >= MASK_CACHE {
                self.cache.clear();
            }
            self.cache.insert(key, mask.clone());
        }
        mask
    }

    /// Walk the vocabulary's trie depth first from the current state: a token is allowed when
    /// all its bytes fit and the shortest completion after it is at most `limit`.
    fn walk(&mut self, limit: u32) -> Mask {
        let g = &self.grammar.nodes;
        let vocab = &self.vocab;
        let arena = &mut self.state.arena;
        // Inside a string, plain content tokens keep the state: they are allowed exactly when
        // the state is completable in time, and only the other tokens need the walk.
        let in_string = !self.state.tops.is_empty()
            && self.state.tops.iter().all(|&t| g.in_free_string(arena, t));
        let (trie, trie_ids) = if in_string {
            (&vocab.unsafe_trie, &vocab.unsafe_trie_ids)
        } else {
            (&vocab.trie, &vocab.trie_ids)
        };
        let base = arena.len();
        let tops = &mut self.walk_tops;
        let levels = &mut self.walk_levels;
        tops.clear();
        tops.extend_from_slice(&self.state.tops);
        levels.clear();
        levels.push((0, tops.len(), base));
        let mut bits = vec![0u64; vocab.len().div_ceil(64)];
        let mut max_after = 0u32;
        if in_string {
            let now = g.state_rem(arena, &self.state.tops);
            max_after = now;
            if now <= limit {
                bits.copy_from_slice(&vocab.string_safe);
            }
        }
        let mut i = 0usize;
        while let Some(node) = trie.get(i) {
            let d = node.depth as usize;
            levels.truncate(d);
            let Some(&(ps, pe, al)) = levels.last() else {
                break;
            };
            arena.truncate(al);
            tops.truncate(pe);
            let start = tops.len();
            for k in ps..pe {
                let t = tops[k];
                g.feed(arena, t, node.byte, tops);
            }
            dedupe(arena, tops, start);
            if tops.len() == start {
                i = node.end as usize;
                continue;
            }
            levels.push((start, tops.len(), arena.len()));
            if node.ids_start < node.ids_end {
                let s = g.state_rem(arena, &tops[start..]);
                if s != INF {
                    max_after = max_after.max(s);
                    if s <= limit {
                        for &id in &trie_ids[node.ids_start as usize..node.ids_end as usize] {
                            if let Some(w) = bits.get_mut(id as usize / 64) {
                                *w |= 1 << (id % 64);
                            }
                        }
                    }
                }
            }
            i += 1;
        }
        arena.truncate(base);
        Mask { bits, max_after }
    }

    fn restrict_grammar(&mut self, allowed: &mut [bool], remaining: usize) {
        if remaining == 0 {
            allowed.fill(false);
            return;
        }
        let limit = u32::try_from(remaining - 1).unwrap_or(INF - 1).min(INF - 1);
        let mask = self.mask(limit);
        let complete = self.state.rem(&self.grammar.nodes) == 0;
        for (id, a) in allowed.iter_mut().enumerate() {
            if !*a {
                continue;
            }
            let id = id as u32;
            *a = if self.vocab.is_eog(id) {
                complete
            } else {
                mask.bits
                    .get(id as usize / 64)
                    .is_some_and(|w| w & (1 << (id % 64)) != 0)
            };
        }
    }

    /// Lazy and undecided: a token may keep the output a beginning of the trigger, turn it into
    /// free text, or complete the trigger — then what follows must fit the grammar.
    fn restrict_undecided(&mut self, allowed: &mut [bool], remaining: usize) {
        let limit = u32::try_from(remaining.saturating_sub(1)).unwrap_or(INF - 1);
        let so_far = trim_start(&self.output);
        let trigger = &self.trigger;
        // `so_far` is a beginning of the trigger (else the phase would be free).
        let need = trigger.get(so_far.len()..).unwrap_or_default();
        for (id, a) in allowed.iter_mut().enumerate() {
            if !*a {
                continue;
            }
            let id = id as u32;
            if self.vocab.is_eog(id) {
                continue;
            }
            let mut bytes = self.vocab.token_bytes(id);
            if so_far.is_empty() {
                bytes = trim_start(bytes);
            }
            if bytes.len() <= need.len() || !bytes.starts_with(need) {
                // Still a beginning of the trigger (or all of it), or free text.
                continue;
            }
            let text = [so_far, bytes].concat();
            let mut s = State::initial(&self.grammar);
            let fits = text.iter().all(|&b| s.feed(&self.grammar.nodes, b));
            *a = fits && s.rem(&self.grammar.nodes) <= limit;
        }
    }

    /// After output changed while undecided: decide when the trigger is complete or missed.
    fn classify(&mut self) -> Result<(), String> {
        let text = trim_start(&self.output);
        if text.len() >= self.trigger.len() && text.starts_with(&self.trigger) {
            let mut s = State::initial(&self.grammar);
            if !text.iter().all(|&b| s.feed(&self.grammar.nodes, b)) {
                return Err("the tool call does not fit the tool definitions".into());
            }
            s.compact();
            self.state = s;
            self.phase = Phase::Grammar;
        } else if !self.trigger.starts_with(text) {
            self.phase = Phase::Free;
        }
        Ok(())
    }
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

impl TokenConstraint for Matcher {
    fn restrict(&mut self, allowed: &mut [bool], remaining: usize) {
        match self.phase {
            Phase::Grammar => self.restrict_grammar(allowed, remaining),
            Phase::Undecided => self.restrict_undecided(allowed, remaining),
            Phase::Free => {}
        }
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        let eog = self.vocab.is_eog(token);
        match self.phase {
            Phase::Free => {
                self.output.extend_from_slice(self.vocab.token_bytes(token));
                Ok(())
            }
            Phase::Undecided => {
                if !eog {
                    self.output.extend_from_slice(self.vocab.token_bytes(token));
                    self.classify()?;
                }
                Ok(())
            }
            Phase::Grammar => {
                let g = &self.grammar.nodes;
                if eog {
                    return if self.state.rem(g) == 0 {
                        Ok(())
                    } else {
                        Err("the output ended before it was complete".into())
                    };
                }
                let bytes = self.vocab.token_bytes(token);
                if self.vocab.is_special(token) || bytes.is_empty() {
                    return Err(format!("token {token} has no place in structured output"));
                }
                let mut next = self.state.clone();
                if !bytes.iter().all(|&b| next.feed(g, b)) {
                    return Err(format!(
                        "token {token} ({:?}) does not fit the output format",
                        String::from_utf8_lossy(bytes)
                    ));
                }
                next.compact();
                self.state = next;
                self.output.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn is_finished(&self) -> bool {
        match self.phase {
            Phase::Grammar => {
                let g = &self.grammar.nodes;
                self.state.rem(g) == 0 && !self.state.clone().can_continue(g)
            }
            Phase::Undecided | Phase::Free => false,
        }
    }
}

#[cfg(test)]
mod tests;
