//! The byte-level pushdown matcher: grammar nodes, stacks of frames in an arena, and the
//! shortest completion of every state.
//!
//! A state is a small set of stacks (alternatives still alive, e.g. the branches of an `anyOf`
//! that agree so far). Stacks live in an arena as linked frames (`parent` indices), so a new
//! state shares every frame below the one it changed, and a depth-first walk over the
//! vocabulary's trie restores a state by truncating the arena.

/// Index of a node in [`Nodes`].
pub(crate) type NodeId = u32;

/// "Unreachable"/"no finite completion" in byte lengths.
pub(crate) const INF: u32 = u32::MAX;

/// No frame: the bottom of every stack.
pub(crate) const NONE: u32 = u32::MAX;

/// Most frames on one stack (nesting of JSON values and grammar rules).
pub(crate) const MAX_DEPTH: u32 = 64;

/// Most stacks alive at once; more alternatives are dropped (the first ones are kept).
pub(crate) const MAX_STACKS: usize = 64;

/// Most alternatives expanded inside one another when a value starts.
const MAX_ALT_NESTING: u32 = 16;

/// Most digits before the decimal point of a number.
pub(crate) const MAX_INT_DIGITS: u32 = 15;

/// Most digits after the decimal point of a number.
pub(crate) const MAX_FRAC_DIGITS: u32 = 9;

fn add(a: u32, b: u32) -> u32 {
    a.saturating_add(b)
}

fn mul(a: u32, n: u32) -> u32 {
    u32::try_from(u64::from(a) * u64::from(n)).unwrap_or(INF)
}

/// A JSON object's declared property.
#[derive(Debug, Clone)]
pub(crate) struct Prop {
    /// The key as JSON text, quotes included.
    pub key: Vec<u8>,
    pub value: NodeId,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Exactly these bytes (never empty).
    Lit(Vec<u8>),
    /// Any one of these.
    Alt(Vec<NodeId>),
    /// These in order.
    Seq(Vec<NodeId>),
    /// `item (sep item)*`, `min..=max` items.
    Repeat {
        item: NodeId,
        sep: Option<NodeId>,
        min: u32,
        max: u32,
    },
    /// `{...}`: the declared properties in order (optional ones may be left out), or, when
    /// `props` is empty, any keys with values of `any_value` (`None`: only `{}`).
    Object {
        props: Vec<Prop>,
        any_value: Option<NodeId>,
    },
    /// `[...]`: item `k` is `prefix[k]`, later ones `items` (`None`: no more).
    Array {
        prefix: Vec<NodeId>,
        items: Option<NodeId>,
        min: u32,
        max: u32,
    },
    /// A JSON string of `min..=max` characters (`max == INF`: no limit).
    String { min: u32, max: u32 },
    /// A JSON number without exponent; `integer`: no fraction either.
    Number { integer: bool },
}

/// Tables derived from the nodes' shortest lengths, for [`Nodes::rem`].
#[derive(Debug, Clone, Default)]
struct Derived {
    /// Object: shortest rest (to `}`) from property `i` when nothing was written yet.
    rest_first: Vec<u32>,
    /// Object: shortest rest from property `i` after a written property.
    rest_after: Vec<u32>,
    /// Object: shortest rest after a `,` when the next property is from `i` on.
    after_comma: Vec<u32>,
    /// Array: shortest bytes of items `k..min`, each with its leading comma, then `]`.
    tail: Vec<u32>,
}

/// The compiled grammar: nodes and their shortest serializations.
#[derive(Debug, Clone)]
pub(crate) struct Nodes {
    pub nodes: Vec<Node>,
    /// Shortest byte length of each node's text.
    pub minlen: Vec<u32>,
    derived: Vec<Derived>,
    /// The string node used for keys of free-form objects.
    pub key_string: NodeId,
}

impl Nodes {
    /// Compute shortest lengths (a fixpoint, so recursive rules work) and derived tables.
    pub fn new(nodes: Vec<Node>, key_string: NodeId) -> Nodes {
        let n = nodes.len();
        let mut minlen = vec![INF; n];
        for _ in 0..=n {
            let mut changed = false;
            for i in 0..n {
                let m = node_minlen(&nodes[i], &minlen);
                if m < minlen[i] {
                    minlen[i] = m;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let derived = nodes.iter().map(|node| derive(node, &minlen)).collect();
        Nodes {
            nodes,
            minlen,
            derived,
            key_string,
        }
    }

    fn ml(&self, id: NodeId) -> u32 {
        self.minlen.get(id as usize).copied().unwrap_or(INF)
    }

    fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize)
    }

    /// Shortest number of bytes that completes `f` (not counting frames above or below it).
    fn rem(&self, f: &Frame) -> u32 {
        let Some(node) = self.node(f.node) else {
            return INF;
        };
        let d = &self.derived[f.node as usize];
        let at = |v: &Vec<u32>, i: u32| v.get(i as usize).copied().unwrap_or(INF);
        match node {
            Node::Lit(b) => (b.len() as u32).saturating_sub(f.a),
            Node::Alt(_) => INF,
            Node::Seq(items) => items
                .iter()
                .skip(f.a as usize)
                .fold(0, |s, &c| add(s, self.ml(c))),
            Node::Repeat { item, sep, min, .. } => {
                let per = add(sep.map_or(0, |s| self.ml(s)), self.ml(*item));
                if f.b == 0 {
                    if f.a == 0 && *min == 0 {
                        0
                    } else {
                        add(self.ml(*item), mul(per, min.saturating_sub(f.a + 1)))
                    }
                } else {
                    mul(per, min.saturating_sub(f.a))
                }
            }
            Node::String { min, .. } => {
                let chars = min.saturating_sub(f.a);
                match f.b {
                    0 => add(2, *min),
                    1 => add(add(f.c >> 16, chars), 1),
                    2 => add(chars, 2),
                    k => add(add(7u32.saturating_sub(k), chars), 1),
                }
            }
            Node::Number { .. } => match f.b {
                0 | 1 | 4 => 1,
                _ => 0,
            },
            Node::Object { props, any_value } => {
                if props.is_empty() {
                    let v = any_value.map_or(INF, |v| self.ml(v));
                    return match f.b {
                        0 => self.ml(f.node),
                        1 | 2 => 1,
                        3 | 4 => add(add(3, v), 1),
                        6 => add(add(1, v), 1),
                        _ => add(v, 1),
                    };
                }
                let j = f.a;
                let value_rest = |j: u32| {
                    props
                        .get(j as usize)
                        .map_or(INF, |p| add(self.ml(p.value), at(&d.rest_after, j + 1)))
                };
                match f.b {
                    0 => self.ml(f.node),
                    1 => at(&d.rest_first, j),
                    2 => at(&d.rest_after, j),
                    3 | 4 => at(&d.after_comma, j),
                    5 => props.get(j as usize).map_or(INF, |p| {
                        add(
                            add((p.key.len() as u32).saturating_sub(f.c), 1),
                            value_rest(j),
                        )
                    }),
                    6 => add(1, value_rest(j)),
                    _ => value_rest(j),
                }
            }
            Node::Array { .. } => {
                let item = |k: u32| self.item_minlen(node, k);
                // Past the minimum only `]` is needed.
                let tail = |k: u32| d.tail.get(k as usize).copied().unwrap_or(1);
                match f.b {
                    0 => self.ml(f.node),
                    1 => {
                        if at(&d.tail, 0) == 1 {
                            1
                        } else {
                            // The first item has no comma before it.
                            at(&d.tail, 0).saturating_sub(1)
                        }
                    }
                    2 => tail(f.a),
                    _ => add(item(f.a), tail(f.a + 1)),
                }
            }
        }
    }

    fn item_minlen(&self, node: &Node, k: u32) -> u32 {
        array_item(node, k).map_or(INF, |c| self.ml(c))
    }

    /// Whether `top` is inside a string without a maximum length, past its minimum, and not in
    /// an escape or a character: plain content then leaves the frame as it is.
    pub fn in_free_string(&self, arena: &[Entry], top: u32) -> bool {
        arena.get(top as usize).is_some_and(|e| {
            let f = e.frame;
            matches!(self.node(f.node), Some(Node::String { min, max }) if *max == INF && f.a >= *min)
                && f.b == 1
                && f.c == 0
        })
    }

    /// Shortest completion of the stack whose top is `top`.
    pub fn stack_rem(&self, arena: &[Entry], mut top: u32) -> u32 {
        let mut s = 0u32;
        while let Some(e) = arena.get(top as usize) {
            s = add(s, self.rem(&e.frame));
            top = e.parent;
        }
        s
    }

    /// Shortest completion of a state (the best of its stacks); `INF` for no stacks.
    pub fn state_rem(&self, arena: &[Entry], tops: &[u32]) -> u32 {
        tops.iter()
            .map(|&t| self.stack_rem(arena, t))
            .min()
            .unwrap_or(INF)
    }

    /// Start `node` on top of `parent`: push the resulting stacks' tops onto `out`.
    pub fn push(&self, arena: &mut Vec<Entry>, parent: u32, node: NodeId, out: &mut Vec<u32>) {
        self.push_inner(arena, parent, node, None, out, MAX_ALT_NESTING);
    }

    /// Start `node` on top of `parent` and feed it `byte` (when given).
    fn push_inner(
        &self,
        arena: &mut Vec<Entry>,
        parent: u32,
        node: NodeId,
        byte: Option<u8>,
        out: &mut Vec<u32>,
        guard: u32,
    ) {
        match self.node(node) {
            None => {}
            Some(Node::Alt(alts)) => {
                if guard == 0 {
                    return;
                }
                for &c in alts {
                    self.push_inner(arena, parent, c, byte, out, guard - 1);
                }
            }
            Some(_) => {
                let depth = match arena.get(parent as usize) {
                    Some(e) => e.depth + 1,
                    None => 1,
                };
                if depth > MAX_DEPTH {
                    return;
                }
                let top = arena.len() as u32;
                arena.push(Entry {
                    frame: Frame {
                        node,
                        a: 0,
                        b: 0,
                        c: 0,
                    },
                    parent,
                    depth,
                });
                match byte {
                    Some(b) => self.feed(arena, top, b, out),
                    None => out.push(top),
                }
            }
        }
    }

    /// Feed `byte` to the stack whose top is `top`: push the tops of the stacks that result.
    #[expect(
        clippy::collapsible_match,
        reason = "a match guard would let a refused byte fall through to later arms"
    )]
    pub fn feed(&self, arena: &mut Vec<Entry>, top: u32, byte: u8, out: &mut Vec<u32>) {
        let Some(&Entry {
            frame: f, parent, ..
        }) = arena.get(top as usize)
        else {
            return;
        };
        let Some(node) = self.node(f.node) else {
            return;
        };
        // A changed copy of this frame on the same parent.
        let set = |arena: &mut Vec<Entry>, a: u32, b: u32, c: u32| -> u32 {
            let depth = arena.get(top as usize).map_or(1, |e| e.depth);
            arena.push(Entry {
                frame: Frame {
                    node: f.node,
                    a,
                    b,
                    c,
                },
                parent,
                depth,
            });
            arena.len() as u32 - 1
        };
        match node {
            Node::Lit(bytes) => {
                if bytes.get(f.a as usize) == Some(&byte) {
                    if f.a as usize + 1 == bytes.len() {
                        out.push(parent);
                    } else {
                        out.push(set(arena, f.a + 1, 0, 0));
                    }
                }
            }
            Node::Alt(_) => {}
            Node::Seq(items) => match items.get(f.a as usize) {
                Some(&child) => {
                    let me = set(arena, f.a + 1, 0, 0);
                    self.push_inner(arena, me, child, Some(byte), out, MAX_ALT_NESTING);
                }
                None => self.feed(arena, parent, byte, out),
            },
            Node::Repeat {
                item,
                sep,
                min,
                max,
            } => {
                let (count, after_item) = (f.a, f.b == 1);
                if !after_item {
                    let me = set(arena, count + 1, 1, 0);
                    self.push_inner(arena, me, *item, Some(byte), out, MAX_ALT_NESTING);
                    if count == 0 && *min == 0 {
                        self.feed(arena, parent, byte, out);
                    }
                } else {
                    if count < *max {
                        match sep {
                            Some(s) => {
                                let me = set(arena, count, 0, 0);
                                self.push_inner(arena, me, *s, Some(byte), out, MAX_ALT_NESTING);
                            }
                            None => {
                                let me = set(arena, count + 1, 1, 0);
                                self.push_inner(arena, me, *item, Some(byte), out, MAX_ALT_NESTING);
                            }
                        }
                    }
                    if count >= *min {
                        self.feed(arena, parent, byte, out);
                    }
                }
            }
            Node::String { min, max } => {
                self.feed_string(arena, f, parent, top, *min, *max, byte, out)
            }
            Node::Number { integer } => {
                let digit = byte.is_ascii_digit();
                match f.b {
                    0 => match byte {
                        b'-' => out.push(set(arena, 0, 1, 0)),
                        b'0' => out.push(set(arena, 1, 2, 0)),
                        b'1'..=b'9' => out.push(set(arena, 1, 3, 0)),
                        _ => {}
                    },
                    1 => match byte {
                        // `-0` reads back as a float (-0.0) in serde_json: not for integers.
                        b'0' if !integer => out.push(set(arena, 1, 2, 0)),
                        b'1'..=b'9' => out.push(set(arena, 1, 3, 0)),
                        _ => {}
                    },
                    4 => {
                        if digit {
                            out.push(set(arena, 1, 5, 0));
                        }
                    }
                    phase => {
                        if digit && phase == 3 && f.a < MAX_INT_DIGITS {
                            out.push(set(arena, f.a + 1, 3, 0));
                        } else if digit && phase == 5 && f.a < MAX_FRAC_DIGITS {
                            out.push(set(arena, f.a + 1, 5, 0));
                        } else if byte == b'.' && !integer && phase != 5 {
                            out.push(set(arena, 0, 4, 0));
                        } else {
                            // The number is complete: the byte belongs to what follows.
                            self.feed(arena, parent, byte, out);
                        }
                    }
                }
            }
            Node::Object { props, any_value } => {
                let free = props.is_empty();
                // No required property left from `i` on.
                let may_close = |i: u32| free || !props.iter().skip(i as usize).any(|p| p.required);
                let start_key = |arena: &mut Vec<Entry>, out: &mut Vec<u32>| {
                    if free {
                        if any_value.is_some() {
                            let me = set(arena, 0, 6, 0);
                            self.push_inner(
                                arena,
                                me,
                                self.key_string,
                                Some(byte),
                                out,
                                MAX_ALT_NESTING,
                            );
                        }
                        return;
                    }
                    for (j, p) in props.iter().enumerate().skip(f.a as usize) {
                        if p.key.first() == Some(&byte) {
                            out.push(set(arena, j as u32, 5, 1));
                        }
                        if p.required {
                            break;
                        }
                    }
                };
                match (f.b, byte) {
                    (0, b'{') => out.push(set(arena, 0, 1, 0)),
                    (1 | 2, b'}') => {
                        if may_close(f.a) {
                            out.push(parent);
                        }
                    }
                    (1 | 3 | 4, b'"') => start_key(arena, out),
                    (2, b',') => {
                        let more = if free {
                            any_value.is_some()
                        } else {
                            (f.a as usize) < props.len()
                        };
                        if more {
                            out.push(set(arena, f.a, 3, 0));
                        }
                    }
                    (3, b' ') => out.push(set(arena, f.a, 4, 0)),
                    (5, _) => {
                        if let Some(p) = props.get(f.a as usize)
                            && p.key.get(f.c as usize) == Some(&byte)
                        {
                            if f.c as usize + 1 == p.key.len() {
                                out.push(set(arena, f.a, 6, 0));
                            } else {
                                out.push(set(arena, f.a, 5, f.c + 1));
                            }
                        }
                    }
                    (6, b':') => out.push(set(arena, f.a, 7, 0)),
                    (7, b' ') => out.push(set(arena, f.a, 8, 0)),
                    (7 | 8, _) => {
                        let value = if free {
                            *any_value
                        } else {
                            props.get(f.a as usize).map(|p| p.value)
                        };
                        if let Some(v) = value {
                            let next = if free { 0 } else { f.a + 1 };
                            let me = set(arena, next, 2, 0);
                            self.push_inner(arena, me, v, Some(byte), out, MAX_ALT_NESTING);
                        }
                    }
                    _ => {}
                }
            }
            Node::Array { min, max, .. } => {
                let count = f.a;
                let start_item = |arena: &mut Vec<Entry>, out: &mut Vec<u32>| {
                    if count < *max
                        && let Some(item) = array_item(node, count)
                    {
                        let me = set(arena, count + 1, 2, 0);
                        self.push_inner(arena, me, item, Some(byte), out, MAX_ALT_NESTING);
                    }
                };
                match (f.b, byte) {
                    (0, b'[') => out.push(set(arena, 0, 1, 0)),
                    (1, b']') => {
                        if *min == 0 {
                            out.push(parent);
                        }
                    }
                    (2, b']') => {
                        if count >= *min {
                            out.push(parent);
                        }
                    }
                    (2, b',') => {
                        if count < *max && array_item(node, count).is_some() {
                            out.push(set(arena, count, 3, 0));
                        }
                    }
                    (3, b' ') => out.push(set(arena, count, 4, 0)),
                    (1 | 3 | 4, _) => start_item(arena, out),
                    _ => {}
                }
            }
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one frame's parts, passed apart")]
    #[expect(
        clippy::collapsible_match,
        reason = "a match guard would let a refused byte fall through to later arms"
    )]
    fn feed_string(
        &self,
        arena: &mut Vec<Entry>,
        f: Frame,
        parent: u32,
        top: u32,
        min: u32,
        max: u32,
        byte: u8,
        out: &mut Vec<u32>,
    ) {
        let depth = arena.get(top as usize).map_or(1, |e| e.depth);
        let mut set = |a: u32, b: u32, c: u32| {
            arena.push(Entry {
                frame: Frame {
                    node: f.node,
                    a,
                    b,
                    c,
                },
                parent,
                depth,
            });
            out.push(arena.len() as u32 - 1);
        };
        // One more character; without a maximum the count only matters up to the minimum, so
        // the state repeats (and its token mask is cached) inside long strings.
        let counted = if max == INF {
            (f.a + 1).min(min)
        } else {
            f.a + 1
        };
        let room = f.a < max;
        match f.b {
            0 => {
                if byte == b'"' {
                    set(0, 1, 0);
                }
            }
            1 if f.c != 0 => {
                let (pending, lo, hi) = (f.c >> 16, (f.c >> 8) & 0xff, f.c & 0xff);
                if (lo..=hi).contains(&u32::from(byte)) {
                    let c = if pending > 1 {
                        ((pending - 1) << 16) | (0x80 << 8) | 0xbf
                    } else {
                        0
                    };
                    set(f.a, 1, c);
                }
            }
            1 => match byte {
                b'"' => {
                    if f.a >= min {
                        // Closed: the string is done.
                        out.push(parent);
                    }
                }
                b'\\' if room => set(counted, 2, 0),
                0x20..=0x7f if byte != b'\\' && room => set(counted, 1, 0),
                _ if room => {
                    let (pending, lo, hi): (u32, u32, u32) = match byte {
                        0xc2..=0xdf => (1, 0x80, 0xbf),
                        0xe0 => (2, 0xa0, 0xbf),
                        0xed => (2, 0x80, 0x9f),
                        0xe1..=0xef => (2, 0x80, 0xbf),
                        0xf0 => (3, 0x90, 0xbf),
                        0xf1..=0xf3 => (3, 0x80, 0xbf),
                        0xf4 => (3, 0x80, 0x8f),
                        _ => (0, 0, 0),
                    };
                    if pending > 0 {
                        set(counted, 1, (pending << 16) | (lo << 8) | hi);
                    }
                }
                _ => {}
            },
            2 => match byte {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => set(f.a, 1, 0),
                b'u' => set(f.a, 3, 0),
                _ => {}
            },
            k => {
                // `\u` hex digit `k - 3`; no lone surrogates (serde_json refuses them), so a
                // `d` first digit must be followed by 0-7.
                let hex = byte.is_ascii_hexdigit();
                let surrogate_guard = f.c == 1 && k == 4 && !matches!(byte, b'0'..=b'7');
                if hex && !surrogate_guard {
                    let c = u32::from(k == 3 && matches!(byte, b'd' | b'D'));
                    if k == 6 {
                        set(f.a, 1, 0);
                    } else {
                        set(f.a, k + 1, c);
                    }
                }
            }
        }
    }
}

/// Node of an array's item `k`.
fn array_item(node: &Node, k: u32) -> Option<NodeId> {
    match node {
        Node::Array { prefix, items, .. } => prefix.get(k as usize).copied().or(*items),
        _ => None,
    }
}

fn node_minlen(node: &Node, ml: &[u32]) -> u32 {
    let m = |id: NodeId| ml.get(id as usize).copied().unwrap_or(INF);
    match node {
        Node::Lit(b) => b.len() as u32,
        Node::Alt(alts) => alts.iter().map(|&c| m(c)).min().unwrap_or(INF),
        Node::Seq(items) => items.iter().fold(0, |s, &c| add(s, m(c))),
        Node::Repeat { item, sep, min, .. } => {
            if *min == 0 {
                0
            } else {
                add(mul(m(*item), *min), mul(sep.map_or(0, m), min - 1))
            }
        }
        Node::String { min, .. } => add(2, *min),
        Node::Number { .. } => 1,
        Node::Object { props, .. } => {
            if props.is_empty() {
                return 2;
            }
            let mut s = 1u32; // `{`
            let mut first = true;
            for p in props.iter().filter(|p| p.required) {
                if !first {
                    s = add(s, 1);
                }
                first = false;
                s = add(s, add(add(p.key.len() as u32, 1), m(p.value)));
            }
            add(s, 1)
        }
        Node::Array { min, .. } => {
            let mut s = 2u32;
            for k in 0..*min {
                s = add(s, array_item(node, k).map_or(INF, m));
                if k > 0 {
                    s = add(s, 1);
                }
            }
            s
        }
    }
}

fn derive(node: &Node, ml: &[u32]) -> Derived {
    let m = |id: NodeId| ml.get(id as usize).copied().unwrap_or(INF);
    match node {
        Node::Object { props, .. } if !props.is_empty() => {
            let n = props.len();
            let cost = |p: &Prop| add(add(p.key.len() as u32, 1), m(p.value));
            let mut rest_after = vec![1u32; n + 1];
            let mut rest_first = vec![1u32; n + 1];
            for i in (0..n).rev() {
                let p = &props[i];
                if p.required {
                    rest_after[i] = add(add(1, cost(p)), rest_after[i + 1]);
                    rest_first[i] = add(cost(p), rest_after[i + 1]);
                } else {
                    rest_after[i] = rest_after[i + 1];
                    rest_first[i] = rest_first[i + 1];
                }
            }
            let after_comma = (0..=n)
                .map(|i| {
                    let mut best = INF;
                    for (j, p) in props.iter().enumerate().skip(i) {
                        best = best.min(add(cost(p), rest_after[j + 1]));
                        if p.required {
                            break;
                        }
                    }
                    best
                })
                .collect();
            Derived {
                rest_first,
                rest_after,
                after_comma,
                tail: Vec::new(),
            }
        }
        Node::Array { min, .. } => {
            let min = *min as usize;
            let mut tail = vec![1u32; min + 1];
            for k in (0..min).rev() {
                let item = array_item(node, k as u32).map_or(INF, m);
                tail[k] = add(add(1, item), tail[k + 1]);
            }
            Derived {
                tail,
                ..Derived::default()
            }
        }
        _ => Derived::default(),
    }
}

/// One frame: a node and its position in it (`a`, `b`, `c` mean what the node's kind says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Frame {
    pub node: NodeId,
    pub a: u32,
    pub b: u32,
    pub c: u32,
}

/// A frame in the arena with the index of the frame below it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub frame: Frame,
    pub parent: u32,
    pub depth: u32,
}

/// Whether two stacks hold the same frames.
pub(crate) fn stack_eq(arena: &[Entry], mut x: u32, mut y: u32) -> bool {
    loop {
        if x == y {
            return true;
        }
        match (arena.get(x as usize), arena.get(y as usize)) {
            (Some(a), Some(b)) if a.frame == b.frame && a.depth == b.depth => {
                x = a.parent;
                y = b.parent;
            }
            _ => return false,
        }
    }
}

/// Drop repeated stacks among `tops[start..]` and keep at most [`MAX_STACKS`].
pub(crate) fn dedupe(arena: &[Entry], tops: &mut Vec<u32>, start: usize) {
    if tops.len() - start > 1 {
        let mut i = start + 1;
        while i < tops.len() {
            if (start..i).any(|k| stack_eq(arena, tops[k], tops[i])) {
                tops.remove(i);
            } else {
                i += 1;
            }
        }
    }
    tops.truncate(start + MAX_STACKS);
}

/// Copy the stacks `tops` into a fresh arena (dropping frames no state refers to any more).
pub(crate) fn compact(arena: &[Entry], tops: &[u32]) -> (Vec<Entry>, Vec<u32>) {
    let mut out: Vec<Entry> = Vec::new();
    let mut map: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let mut new_tops = Vec::with_capacity(tops.len());
    for &t in tops {
        let mut chain = Vec::new();
        let mut x = t;
        while x != NONE && !map.contains_key(&x) {
            chain.push(x);
            x = arena.get(x as usize).map_or(NONE, |e| e.parent);
        }
        for &old in chain.iter().rev() {
            if let Some(e) = arena.get(old as usize) {
                let parent = if e.parent == NONE {
                    NONE
                } else {
                    map.get(&e.parent).copied().unwrap_or(NONE)
                };
                out.push(Entry { parent, ..*e });
                map.insert(old, out.len() as u32 - 1);
            }
        }
        new_tops.push(if t == NONE {
            NONE
        } else {
            map.get(&t).copied().unwrap_or(NONE)
        });
    }
    (out, new_tops)
}
