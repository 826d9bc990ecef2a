//! A memory-bounded cache of decoded chunks shared by every reader thread.
//!
//! Sharded so that threads reading different tiles rarely meet on one lock; each shard is an
//! exact LRU (hash map + recency order) holding at most its share of the byte budget. Locks are
//! held for a lookup or an insert only: decoding happens outside, so two threads may decode the
//! same chunk at once, and the second insert simply replaces the first.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A decoded chunk: interleaved RGB, `width` × `height` pixels.
#[derive(Debug)]
pub(crate) struct DecodedChunk {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl DecodedChunk {
    fn cost(&self) -> usize {
        self.pixels.len() + 64
    }
}

/// What a cached chunk is: which open file, which level, which tile or strip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ChunkKey {
    pub file: u64,
    pub level: u32,
    pub index: u32,
}

/// Counters since the cache was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub bytes: usize,
}

impl CacheStats {
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 { 0.0 } else { self.hits as f64 / total as f64 }
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<ChunkKey, (Arc<DecodedChunk>, u64)>,
    /// Recency stamp → key; the smallest stamp is the least recently used.
    order: BTreeMap<u64, ChunkKey>,
    bytes: usize,
    clock: u64,
}

impl Shard {
    fn touch(&mut self, key: ChunkKey) -> Option<Arc<DecodedChunk>> {
        self.clock += 1;
        let clock = self.clock;
        let (chunk, stamp) = self.map.get_mut(&key)?;
        self.order.remove(stamp);
        *stamp = clock;
        let chunk = Arc::clone(chunk);
        self.order.insert(clock, key);
        Some(chunk)
    }

    fn insert(&mut self, key: ChunkKey, chunk: Arc<DecodedChunk>, capacity: usize) {
        let cost = chunk.cost();
        if cost > capacity {
            return;
        }
        self.remove(key);
        while self.bytes + cost > capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some((old, _)) = self.map.remove(&oldest) {
                self.bytes -= old.cost();
            }
        }
        self.clock += 1;
        self.order.insert(self.clock, key);
        self.map.insert(key, (chunk, self.clock));
        self.bytes += cost;
    }

    fn remove(&mut self, key: ChunkKey) {
        if let Some((old, stamp)) = self.map.remove(&key) {
            self.order.remove(&stamp);
            self.bytes -= old.cost();
        }
    }
}

/// Decoded-chunk cache with a byte budget, shared (`Arc`) by all images and threads.
pub struct TileCache {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    capacity: usize,
    hasher: RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for TileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileCache").field("capacity", &self.capacity).field("stats", &self.stats()).finish()
    }
}

/// Shards are at least this big so that a typical 256² or 512² RGB tile fits many times.
const MIN_SHARD_BYTES: usize = 8 << 20;
const MAX_SHARDS: usize = 16;

impl TileCache {
    /// A cache holding at most `capacity_bytes` of decoded pixels; 0 disables caching.
    pub fn new(capacity_bytes: usize) -> TileCache {
        let shards = (capacity_bytes / MIN_SHARD_BYTES).clamp(1, MAX_SHARDS).next_power_of_two().min(MAX_SHARDS);
        TileCache {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity: capacity_bytes / shards,
            capacity: capacity_bytes,
            hasher: RandomState::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            ..CacheStats::default()
        };
        for shard in self.shards.iter() {
            let shard = lock(shard);
            stats.entries += shard.map.len();
            stats.bytes += shard.bytes;
        }
        stats
    }

    /// Drops every entry (counters stay).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            *lock(shard) = Shard::default();
        }
    }

    fn shard(&self, key: &ChunkKey) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h & (self.shards.len() - 1)]
    }

    pub(crate) fn get(&self, key: ChunkKey) -> Option<Arc<DecodedChunk>> {
        if self.shard_capacity == 0 {
            return None;
        }
        let found = lock(self.shard(&key)).touch(key);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn insert(&self, key: ChunkKey, chunk: Arc<DecodedChunk>) {
        if self.shard_capacity == 0 {
            return;
        }
        lock(self.shard(&key)).insert(key, chunk, self.shard_capacity);
    }
}

/// A poisoned shard (a panic elsewhere while it was held) still holds a consistent map: every
/// mutation above completes before anything can panic, so the guard is taken over.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(bytes: usize) -> Arc<DecodedChunk> {
        Arc::new(DecodedChunk { width: 1, height: 1, pixels: vec![0; bytes] })
    }

    fn key(index: u32) -> ChunkKey {
        ChunkKey { file: 1, level: 0, index }
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let cache = TileCache::new(1000);
        assert_eq!(cache.shards.len(), 1);
        for i in 0..3 {
            cache.insert(key(i), chunk(236)); // cost 300 each
        }
        assert!(cache.get(key(0)).is_some()); // 0 is now the most recent
        cache.insert(key(3), chunk(236)); // evicts 1
        assert!(cache.get(key(1)).is_none());
        assert!(cache.get(key(0)).is_some() && cache.get(key(2)).is_some() && cache.get(key(3)).is_some());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.bytes), (3, 900));
        assert_eq!((stats.hits, stats.misses), (4, 1));
    }

    #[test]
    fn zero_capacity_and_oversized_entries_are_not_kept() {
        let cache = TileCache::new(0);
        cache.insert(key(0), chunk(10));
        assert!(cache.get(key(0)).is_none());
        let cache = TileCache::new(100);
        cache.insert(key(0), chunk(1000));
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn shards_split_the_budget() {
        let cache = TileCache::new(256 << 20);
        assert_eq!(cache.shards.len(), 16);
        assert_eq!(cache.shard_capacity, 16 << 20);
    }
}
