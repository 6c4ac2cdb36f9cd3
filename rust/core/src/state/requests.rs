//! The idempotency table: what each request_id that changed state was answered.
//!
//! A retry with the same (method, request_id) and the same request gets the first answer;
//! with a different request, INVALID_ARGUMENT. Only applied commands are remembered: a
//! refused one changed nothing and is evaluated afresh when retried.
//!
//! Answers are kept for [`RETENTION_MS`] (24 hours) of command time, up to `capacity`
//! answers in memory. An answer pushed out by the capacity while still inside the window
//! leaves a 64-bit fingerprint of its key behind, so a retry of it is recognised and
//! answered from the journal's request_id index instead: never forgotten inside the window,
//! never a journal lookup for a request that is simply new. Expiry happens only when the
//! clock command applies ([`crate::command::Command::Tick`]), so replay forgets exactly what
//! the live server forgot, at the same instant.

use std::sync::Arc;

use imbl::shared_ptr::DefaultSharedPtr;
use imbl::{GenericHashMap, Vector};
use rustc_hash::{FxBuildHasher, FxHashSet};

/// A persistent hash map with the fast non-random hasher the rest of the core uses.
type HashMap<K, V> = GenericHashMap<K, V, FxBuildHasher, DefaultSharedPtr>;

use crate::command::Method;

/// How long answers are remembered, ms of command time.
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;
/// Answers kept in memory by default: about a day of a large force's commands.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// One remembered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    /// The request as journaled (canonical encoding): a retry must match it exactly. Shared
    /// bytes: a snapshot's copy of the table costs reference counts, not copies.
    pub request: Arc<[u8]>,
    pub response: Arc<[u8]>,
    /// The journal sequence of the command.
    pub sequence: u64,
    pub time_ms: i64,
}

/// What the table knows of a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    Remembered(&'a Remembered),
    /// Pushed out of memory inside the window (or a fingerprint collision): ask the journal.
    InJournal,
    New,
}

type Key = (Method, Arc<str>);

/// Persistent collections: cloning the table (for a snapshot) is O(1), sharing structure
/// until either copy changes.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestTable {
    capacity: usize,
    answers: HashMap<Key, Remembered>,
    /// Keys in the order they were remembered, which is command-time order.
    order: Vector<Key>,
    /// Fingerprints of keys pushed out by the capacity, and their times, in time order.
    evicted: HashMap<u64, u32>,
    evicted_order: Vector<(i64, u64)>,
}

/// A stable 64-bit fingerprint (FNV-1a): stored in snapshots, so it must not change across
/// builds the way std's hasher may.
pub fn fingerprint(method: Method, request_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in method.code().to_le_bytes().iter().chain(request_id.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl RequestTable {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            answers: HashMap::default(),
            order: Vector::new(),
            evicted: HashMap::default(),
            evicted_order: Vector::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Answers in memory.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// Fingerprints of answers kept only in the journal.
    pub fn evicted_len(&self) -> usize {
        self.evicted_order.len()
    }

    pub fn lookup(&self, method: Method, request_id: &str) -> Lookup<'_> {
        // Borrowed lookup without allocating the key would need a custom Borrow; the id
        // is short and this runs once per command.
        if let Some(r) = self.answers.get(&(method, Arc::from(request_id))) {
            return Lookup::Remembered(r);
        }
        if self.evicted.contains_key(&fingerprint(method, request_id)) {
            return Lookup::InJournal;
        }
        Lookup::New
    }

    /// Remembers an answer; the oldest in memory beyond the capacity leaves a fingerprint.
    pub fn remember(&mut self, method: Method, request_id: &str, answer: Remembered) {
        let key = (method, Arc::from(request_id));
        if self.answers.insert(key.clone(), answer).is_none() {
            self.order.push_back(key);
        }
        while self.answers.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(gone) = self.answers.remove(&oldest) {
                let f = fingerprint(oldest.0, &oldest.1);
                *self.evicted.entry(f).or_insert(0) += 1;
                self.evicted_order.push_back((gone.time_ms, f));
            }
        }
    }

    /// Replaces a remembered answer (replay keeps the journaled one: see
    /// [`crate::state::Machine::replay`]).
    pub fn set_response(&mut self, method: Method, request_id: &str, response: Arc<[u8]>) {
        if let Some(r) = self.answers.get_mut(&(method, Arc::from(request_id))) {
            r.response = response;
        }
    }

    /// The earliest command time at which something expires, if anything is remembered.
    pub fn next_expiry_ms(&self) -> Option<i64> {
        let answer = self.order.front().and_then(|k| self.answers.get(k)).map(|r| r.time_ms);
        let evicted = self.evicted_order.front().map(|(t, _)| *t);
        match (answer, evicted) {
            (Some(a), Some(e)) => Some(a.min(e)),
            (a, e) => a.or(e),
        }
        .map(|t| t.saturating_add(RETENTION_MS))
    }

    /// Forgets everything remembered at or before `now_ms - RETENTION_MS`; returns how many.
    pub fn expire(&mut self, now_ms: i64) -> u64 {
        let horizon = now_ms.saturating_sub(RETENTION_MS);
        let mut expired = 0;
        while let Some(key) = self.order.front() {
            match self.answers.get(key) {
                Some(r) if r.time_ms > horizon => break,
                _ => {}
            }
            let key = self.order.pop_front().expect("front exists");
            if self.answers.remove(&key).is_some() {
                expired += 1;
            }
        }
        while let Some(&(time, f)) = self.evicted_order.front() {
            if time > horizon {
                break;
            }
            self.evicted_order.pop_front();
            if let Some(n) = self.evicted.get_mut(&f) {
                *n -= 1;
                if *n == 0 {
                    self.evicted.remove(&f);
                }
            }
            expired += 1;
        }
        expired
    }

    /// Remembered answers in the order they were remembered (for snapshots).
    pub fn answers_in_order(&self) -> impl Iterator<Item = (&Key, &Remembered)> {
        self.order.iter().filter_map(|k| self.answers.get(k).map(|r| (k, r)))
    }

    /// Fingerprints kept only in the journal, with their times, oldest first.
    pub fn evicted_in_order(&self) -> impl Iterator<Item = &(i64, u64)> {
        self.evicted_order.iter()
    }

    /// Restores a fingerprint (snapshots).
    pub fn restore_evicted(&mut self, time_ms: i64, f: u64) {
        *self.evicted.entry(f).or_insert(0) += 1;
        self.evicted_order.push_back((time_ms, f));
    }

    /// Keys in time order and the key set must agree; for tests.
    pub fn check(&self) -> Result<(), String> {
        let set: FxHashSet<&Key> = self.order.iter().collect();
        if set.len() != self.order.len() || self.order.len() != self.answers.len() {
            return Err(format!("{} ordered keys for {} answers", self.order.len(), self.answers.len()));
        }
        if self.answers.len() > self.capacity {
            return Err("more answers than the capacity".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(t: i64) -> Remembered {
        Remembered { request: Arc::from(&[1u8][..]), response: Arc::from(&[2u8][..]), sequence: 1, time_ms: t }
    }

    #[test]
    fn capacity_leaves_a_fingerprint_and_expiry_forgets_it() {
        let mut t = RequestTable::new(2);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            t.remember(Method::AssignUnits, id, answer(i as i64));
        }
        assert_eq!(t.lookup(Method::AssignUnits, "a"), Lookup::InJournal);
        assert!(matches!(t.lookup(Method::AssignUnits, "c"), Lookup::Remembered(_)));
        assert_eq!(t.lookup(Method::CloseIncident, "c"), Lookup::New);
        assert_eq!(t.next_expiry_ms(), Some(RETENTION_MS));
        assert_eq!(t.expire(RETENTION_MS + 1), 2);
        assert_eq!(t.lookup(Method::AssignUnits, "a"), Lookup::New);
        assert_eq!(t.lookup(Method::AssignUnits, "b"), Lookup::New);
        assert!(matches!(t.lookup(Method::AssignUnits, "c"), Lookup::Remembered(_)));
        t.check().unwrap();
    }
}
