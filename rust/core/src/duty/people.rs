//! People and their skills.
//!
//! A skill is a capability of the vocabulary ([`crate::caps`]) held from `valid_from_ms`
//! (inclusive) to `expiry_ms` (exclusive), either side [`NO_TIME`] for "unbounded": the
//! same half-open rule as shifts, so an expiry at 12:00 means the skill is gone at 12:00
//! exactly, at the tick that runs then, in live service and in replay alike.

use crate::caps::CapSet;
use crate::units::NO_TIME;

/// One skill: a capability bit and its validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skill {
    /// The capability's bit in the vocabulary.
    pub bit: u32,
    pub valid_from_ms: i64,
    pub expiry_ms: i64,
}

impl Skill {
    /// Valid at `t`: valid_from ≤ t < expiry, an unset side unbounded.
    #[inline]
    pub fn valid_at(&self, t: i64) -> bool {
        (self.valid_from_ms == NO_TIME || t >= self.valid_from_ms) && (self.expiry_ms == NO_TIME || t < self.expiry_ms)
    }

    /// The first instant after `t` at which this skill's validity changes, if any.
    pub fn next_change_after(&self, t: i64) -> Option<i64> {
        [self.valid_from_ms, self.expiry_ms].into_iter().filter(|&x| x != NO_TIME && x > t).min()
    }
}

/// An officer or member of staff, with the records that refer to them (kept here so a
/// conflict check reads one person's few shifts and crews, never the whole roster).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Person {
    pub name: String,
    /// At most one skill per capability (validated on the way in).
    pub skills: Vec<Skill>,
    /// Ids of this person's shifts (any order).
    pub shifts: Vec<String>,
    /// Ids of the crews this person is booked in (any order).
    pub crews: Vec<String>,
}

impl Person {
    /// The capabilities this person holds validly at `t`.
    pub fn caps_at(&self, t: i64) -> CapSet {
        self.skills.iter().filter(|s| s.valid_at(t)).fold(0, |acc, s| acc | (1 << s.bit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skill_is_valid_from_its_start_and_gone_at_its_expiry() {
        let s = Skill { bit: 1, valid_from_ms: 100, expiry_ms: 200 };
        assert!(!s.valid_at(99) && s.valid_at(100) && s.valid_at(199) && !s.valid_at(200));
        assert_eq!(s.next_change_after(50), Some(100));
        assert_eq!(s.next_change_after(100), Some(200));
        assert_eq!(s.next_change_after(200), None);
        let open = Skill { bit: 1, valid_from_ms: NO_TIME, expiry_ms: NO_TIME };
        assert!(open.valid_at(i64::MAX - 1) && open.next_change_after(0).is_none());
    }
}
