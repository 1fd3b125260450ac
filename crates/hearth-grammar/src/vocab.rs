//! A model's vocabulary as bytes, with a trie of the tokens a grammar may ever allow.

/// A trie node in preorder; its subtree is `index + 1 .. end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrieNode {
    pub byte: u8,
    /// Bytes from the root (1 for a first byte).
    pub depth: u32,
    /// Index just past this node's subtree.
    pub end: u32,
    /// The tokens whose bytes end here: `ids[ids_start..ids_end]`.
    pub ids_start: u32,
    pub ids_end: u32,
}

/// A model's tokens as bytes, built once per model and shared by its requests.
#[derive(Debug)]
pub struct Vocab {
    pub(crate) bytes: Vec<Vec<u8>>,
    pub(crate) special: Vec<bool>,
    pub(crate) eog: Vec<u32>,
    pub(crate) trie: Vec<TrieNode>,
    pub(crate) trie_ids: Vec<u32>,
    /// Tokens that are plain string content (no `"`, `\`, control characters; whole UTF-8
    /// characters), a bit per id: inside a string they leave the matcher's state as it is.
    pub(crate) string_safe: Vec<u64>,
    /// The trie of the other tokens.
    pub(crate) unsafe_trie: Vec<TrieNode>,
    pub(crate) unsafe_trie_ids: Vec<u32>,
}

impl Vocab {
    /// `token_bytes[id]`: the bytes token `id` stands for in text. Tokens in `special` (control
    /// tokens like `<|im_start|>`) and tokens without bytes are never allowed by a grammar;
    /// `eog` ids (end of generation) are allowed exactly where the output is complete.
    pub fn new(token_bytes: Vec<Vec<u8>>, special: &[u32], eog: &[u32]) -> Vocab {
        let n = token_bytes.len();
        let mut is_special = vec![false; n];
        for &s in special {
            if let Some(x) = is_special.get_mut(s as usize) {
                *x = true;
            }
        }
        let mut eog: Vec<u32> = eog.iter().copied().filter(|&e| (e as usize) < n).collect();
        eog.sort_unstable();
        eog.dedup();
        let mut order: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                let i = id as usize;
                !is_special[i] && !token_bytes[i].is_empty() && eog.binary_search(&id).is_err()
            })
            .collect();
        order.sort_by(|&a, &b| token_bytes[a as usize].cmp(&token_bytes[b as usize]));
        let (trie, trie_ids) = build_trie(&token_bytes, &order);
        let safe = |b: &[u8]| {
            std::str::from_utf8(b).is_ok()
                && !b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\')
        };
        let mut string_safe = vec![0u64; n.div_ceil(64)];
        let mut others = Vec::new();
        for &id in &order {
            if safe(&token_bytes[id as usize]) {
                string_safe[id as usize / 64] |= 1 << (id % 64);
            } else {
                others.push(id);
            }
        }
        let (unsafe_trie, unsafe_trie_ids) = build_trie(&token_bytes, &others);
        Vocab {
            bytes: token_bytes,
            special: is_special,
            eog,
            trie,
            trie_ids,
            string_safe,
            unsafe_trie,
            unsafe_trie_ids,
        }
    }

    /// A model's vocabulary: control tokens (`<|im_start|>`) and tokens without text are never
    /// allowed; its end-of-generation ids end a complete output.
    pub fn from_tokenizer(t: &hearth_tokenizer::Tokenizer) -> Vocab {
        let n = t.vocab_size() as u32;
        let bytes: Vec<Vec<u8>> = (0..n).map(|id| t.token_bytes(id, false).to_vec()).collect();
        let special: Vec<u32> = (0..n).filter(|&id| bytes[id as usize].is_empty()).collect();
        Vocab::new(bytes, &special, t.eog_ids())
    }

    /// Number of token ids.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes of token `id` (empty for unknown ids).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    pub(crate) fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(true)
    }
}

/// The preorder trie of `order` (token ids sorted by their bytes).
fn build_trie(bytes: &[Vec<u8>], order: &[u32]) -> (Vec<TrieNode>, Vec<u32>) {
    let mut trie: Vec<TrieNode> = Vec::new();
    let mut ids: Vec<u32> = Vec::with_capacity(order.len());
    // Indices of the nodes on the path to the previous token.
    let mut path: Vec<usize> = Vec::new();
    let mut prev: &[u8] = &[];
    for &id in order {
        let b = bytes[id as usize].as_slice();
        let lcp = prev.iter().zip(b).take_while(|(x, y)| x == y).count();
        while path.len() > lcp {
            if let Some(i) = path.pop() {
                trie[i].end = trie.len() as u32;
            }
        }
        for (k, &byte) in b.iter().enumerate().skip(lcp) {
            path.push(trie.len());
            trie.push(TrieNode {
                byte,
                depth: k as u32 + 1,
                end: 0,
                ids_start: 0,
                ids_end: 0,
            });
        }
        if let Some(&last) = path.last() {
            let node = &mut trie[last];
            if node.ids_start == node.ids_end {
                node.ids_start = ids.len() as u32;
            }
            ids.push(id);
            node.ids_end = ids.len() as u32;
        }
        prev = b;
    }
    while let Some(i) = path.pop() {
        trie[i].end = trie.len() as u32;
    }
    (trie, ids)
}
