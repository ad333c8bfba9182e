//! The executor's queue: items wait here between the producer and the workers. Items that carry
//! a spread key (a room, say) are handed out so that the keys share the work in flight: the
//! next item is the oldest of the key with the fewest items in flight. A server that serialises
//! work per key (Synapse, membership changes per room) then works on every key at once, even
//! when the input comes sorted by key.
//!
//! Items are looked at only `LOOKAHEAD` ahead of the oldest, so memory stays bounded whatever
//! the input's size; items without a key (or a job that gives none) run in arrival order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// How many items may wait here when they carry spread keys: enough to see past a few hundred
/// rows of one room, at a few hundred bytes an item.
pub const LOOKAHEAD: usize = 4096;

/// Items in flight per spread key, shared with the workers (each holds a [`InFlight`]).
type Counts = Arc<Mutex<HashMap<String, usize>>>;

pub struct Queue<I> {
    /// The waiting items of each key, oldest first, with their arrival number.
    waiting: HashMap<Option<String>, VecDeque<(u64, I)>>,
    len: usize,
    next: u64,
    /// Whether some item carried a key: only then does the queue read ahead.
    spreading: bool,
    counts: Counts,
}

/// One item's place among the items in flight of its key; given back when dropped.
pub struct InFlight {
    key: Option<String>,
    counts: Counts,
}

impl<I> Queue<I> {
    pub fn new() -> Self {
        Queue {
            waiting: HashMap::new(),
            len: 0,
            next: 0,
            spreading: false,
            counts: Counts::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the executor should read ahead of the workers (up to `LOOKAHEAD`).
    pub fn wants_more(&self) -> bool {
        self.spreading && self.len < LOOKAHEAD
    }

    pub fn push(&mut self, key: Option<String>, item: I) {
        self.spreading |= key.is_some();
        let n = self.next;
        self.next += 1;
        self.waiting.entry(key).or_default().push_back((n, item));
        self.len += 1;
    }

    /// The next item to run: the oldest of the key with the fewest in flight (no key counts as
    /// none in flight), the oldest overall on a tie.
    pub fn pop(&mut self) -> Option<(I, InFlight)> {
        let key = {
            let counts = self.counts.lock().unwrap();
            let load = |key: &Option<String>| {
                key.as_ref()
                    .map_or(0, |k| counts.get(k).copied().unwrap_or(0))
            };
            self.waiting
                .iter()
                .filter_map(|(key, items)| Some((load(key), items.front()?.0, key)))
                .min()
                .map(|(_, _, key)| key.clone())?
        };
        let items = self.waiting.get_mut(&key)?;
        let (_, item) = items.pop_front()?;
        if items.is_empty() {
            self.waiting.remove(&key);
        }
        self.len -= 1;
        if let Some(k) = &key {
            *self.counts.lock().unwrap().entry(k.clone()).or_default() += 1;
        }
        let counts = self.counts.clone();
        Some((item, InFlight { key, counts }))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(key) = &self.key else { return };
        let mut counts = self.counts.lock().unwrap();
        if let Some(n) = counts.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Option<String> {
        Some(k.to_string())
    }

    #[test]
    fn without_keys_items_come_in_order() {
        let mut q = Queue::new();
        for i in 0..5 {
            q.push(None, i);
        }
        assert!(!q.wants_more(), "no key, no reading ahead");
        let order: Vec<i32> = std::iter::from_fn(|| q.pop().map(|(i, _)| i)).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_sorted_input_is_interleaved_and_each_key_keeps_its_order() {
        let mut q = Queue::new();
        for (i, room) in ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
            .iter()
            .enumerate()
        {
            q.push(key(room), (room.to_string(), i));
        }
        assert!(q.wants_more());
        // Six in flight at once: two per room, each room's oldest first.
        let held: Vec<_> = (0..6).map(|_| q.pop().unwrap()).collect();
        let started: Vec<usize> = held.iter().map(|((_, i), _)| *i).collect();
        assert_eq!(started, [0, 3, 6, 1, 4, 7]);
        // Room b's two finish: b is the least loaded, so its last item goes next.
        let mut held = held;
        held.retain(|((room, _), _)| room != "b");
        assert_eq!(q.pop().unwrap().0, ("b".to_string(), 5));
        drop(held);
        // Nothing of a or c in flight any more: the oldest of them.
        assert_eq!(q.pop().unwrap().0, ("a".to_string(), 2));
        assert_eq!(q.pop().unwrap().0, ("c".to_string(), 8));
        assert!(q.pop().is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn counts_are_given_back_and_forgotten() {
        let mut q = Queue::new();
        q.push(key("a"), 1);
        q.push(key("a"), 2);
        let (_, first) = q.pop().unwrap();
        let (_, second) = q.pop().unwrap();
        assert_eq!(q.counts.lock().unwrap().get("a"), Some(&2));
        drop((first, second));
        assert!(q.counts.lock().unwrap().is_empty(), "no key left behind");
    }
}
