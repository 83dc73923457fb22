//! A map of at most `capacity` entries that, once full, makes room by evicting one entry not
//! read since the clock hand last passed it (CLOCK, an approximation of least recently used).
//! A read marks its entry with an atomic flag, so reads share a read lock: least recently used
//! proper would reorder a list on every read, under a write lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) struct Clock<K, V, S> {
    capacity: usize,
    /// Where each key's slot is.
    index: HashMap<K, usize, S>,
    /// Grows to `capacity`, then slots are reused in place.
    slots: Vec<Slot<K, V>>,
    /// The next slot to consider for eviction.
    hand: usize,
}

struct Slot<K, V> {
    key: K,
    value: V,
    /// Read since the hand last passed: spared once.
    referenced: AtomicBool,
}

impl<K: Copy + Eq + Hash, V, S: BuildHasher + Default> Clock<K, V, S> {
    /// An empty map for at most `capacity` entries (at least one); memory is taken as it fills.
    pub(super) fn new(capacity: usize) -> Self {
        Clock {
            capacity: capacity.max(1),
            index: HashMap::default(),
            slots: Vec::new(),
            hand: 0,
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn get(&self, key: &K) -> Option<&V> {
        let slot = &self.slots[*self.index.get(key)?];
        // Only a hint for eviction: no ordering with other memory is needed.
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        Some(&slot.value)
    }

    /// Keeps only the entries whose value `keep` accepts (a pass over every entry).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let mut i = 0;
        while i < self.slots.len() {
            if keep(&self.slots[i].value) {
                i += 1;
                continue;
            }
            let gone = self.slots.swap_remove(i);
            self.index.remove(&gone.key);
            if let Some(moved) = self.slots.get(i) {
                self.index.insert(moved.key, i);
            }
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    /// Adds or replaces the entry. A new entry starts unreferenced, so entries read once (such
    /// as a flood of wrong tokens) are the first to go.
    pub(super) fn insert(&mut self, key: K, value: V) {
        if let Some(&i) = self.index.get(&key) {
            let slot = &mut self.slots[i];
            slot.value = value;
            *slot.referenced.get_mut() = true;
            return;
        }
        let slot = Slot {
            key,
            value,
            referenced: AtomicBool::new(false),
        };
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(slot);
            return;
        }
        // Each referenced slot passed is spared once, so this ends within two turns.
        while std::mem::take(self.slots[self.hand].referenced.get_mut()) {
            self.hand = (self.hand + 1) % self.capacity;
        }
        let victim = self.hand;
        self.hand = (self.hand + 1) % self.capacity;
        self.index.remove(&self.slots[victim].key);
        self.index.insert(key, victim);
        self.slots[victim] = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = Clock<u32, u32, std::collections::hash_map::RandomState>;

    #[test]
    fn a_full_map_evicts_an_entry_not_read_lately_instead_of_clearing() {
        let mut map = Map::new(3);
        for k in 0..3 {
            map.insert(k, k * 10);
        }
        // 0 and 2 are read; 1 is not, so it gives way to 3.
        assert_eq!(map.get(&0), Some(&0));
        assert_eq!(map.get(&2), Some(&20));
        map.insert(3, 30);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&1), None);
        assert_eq!(map.get(&0), Some(&0));
        assert_eq!(map.get(&2), Some(&20));
        assert_eq!(map.get(&3), Some(&30));
        // Every entry read: one still goes, and the map stays at its capacity.
        map.insert(4, 40);
        assert_eq!(map.len(), 3);
        assert_eq!((0..5).filter(|k| map.get(k).is_some()).count(), 3);
        assert_eq!(map.get(&4), Some(&40));
    }

    #[test]
    fn retain_removes_the_refused_and_keeps_the_map_whole() {
        let mut map = Map::new(4);
        for k in 0..4 {
            map.insert(k, k);
        }
        map.retain(|v| v % 2 == 1);
        assert_eq!(map.len(), 2);
        assert_eq!(
            (0..4).filter(|k| map.get(k).is_some()).collect::<Vec<_>>(),
            [1, 3]
        );
        // Room again for new entries, then eviction as before once full.
        for k in 10..13 {
            map.insert(k, k);
        }
        assert_eq!(map.len(), 4);
        assert_eq!(map.get(&3), Some(&3));
        map.retain(|_| false);
        assert_eq!(map.len(), 0);
        map.insert(7, 7);
        assert_eq!(map.get(&7), Some(&7));
    }

    #[test]
    fn replacing_a_key_keeps_one_entry() {
        let mut map = Map::new(2);
        map.insert(1, 1);
        map.insert(1, 2);
        assert_eq!(map.len(), 1);
        assert_eq!(map.get(&1), Some(&2));
    }

    #[test]
    fn entries_read_again_survive_a_stream_of_new_ones() {
        let mut map = Map::new(1_000);
        for k in 0..100 {
            map.insert(k, k);
        }
        // A hot set read between every insert of 10 000 keys read only once.
        for k in 1_000..11_000 {
            for hot in 0..100 {
                assert!(map.get(&hot).is_some(), "hot key {hot} evicted at {k}");
            }
            map.insert(k, k);
        }
        assert_eq!(map.len(), 1_000);
    }
}
