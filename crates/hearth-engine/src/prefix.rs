//! Reuse of computed prompt prefixes: a shared system prompt or character card is computed once.
//!
//! Finished sequences leave their KV cache here with the tokens it holds; a new request starts
//! from a copy of the longest cached prefix of its prompt and computes only the rest.

use std::collections::VecDeque;

use hearth_models::KvCache;

/// The most recently finished sequences' caches, newest first.
#[derive(Debug, Default)]
pub struct PrefixCache {
    entries: VecDeque<(Vec<u32>, KvCache)>,
    capacity: usize,
}

/// Shorter shared prefixes are not worth a copy.
pub(crate) const MIN_REUSE: usize = 8;

impl PrefixCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity,
        }
    }

    /// Keep `cache`, which holds the keys and values of `tokens[..cache.len()]`.
    pub fn insert(&mut self, mut tokens: Vec<u32>, cache: KvCache) {
        if self.capacity == 0 || cache.len() < MIN_REUSE {
            return;
        }
        tokens.truncate(cache.len());
        // An entry that is a prefix of the new one adds nothing.
        self.entries
            .retain(|(t, _)| !(t.len() <= tokens.len() && tokens.starts_with(t)));
        self.entries.push_front((tokens, cache));
        self.entries.truncate(self.capacity);
    }

    /// A cache holding the longest cached prefix of `prompt`, leaving at least its last token to
    /// compute (its logits are needed), or `None` when nothing useful is cached.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<KvCache> {
        let limit = prompt.len().saturating_sub(1);
        let (best, len) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (t, _))| {
                let common = t.iter().zip(prompt).take_while(|(a, b)| a == b).count();
                (i, common.min(limit))
            })
            .max_by_key(|&(_, len)| len)?;
        if len < MIN_REUSE {
            return None;
        }
        // Most recently used first.
        let entry = self.entries.remove(best)?;
        let copy = entry.1.prefix(len);
        self.entries.push_front(entry);
        Some(copy)
    }
}
