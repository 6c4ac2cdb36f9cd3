//! Shifts and crews, and what a crew makes of its unit.
//!
//! A crew books people onto a unit for `[start_ms, end_ms)`. While it is on, the unit's
//! capabilities are the capabilities its members hold validly at that moment, each held by
//! at least the crew's minimum for it (1 unless the crew says more: an armed response
//! vehicle needs two authorised firearms officers for `firearms`), and its shift window is
//! the crew's. [`derive`] computes both and the next instant they can change.

use crate::caps::{CapSet, MAX_CAPABILITIES};
use crate::duty::people::Person;
use crate::units::NO_TIME;

/// A person's shift.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    pub person_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub role: String,
    pub area: String,
}

/// People booked onto a unit for a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Crew {
    pub slot: u32,
    pub members: Vec<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// (capability bit, holders needed), each bit at most once; other bits need one.
    pub minimums: Vec<(u32, u32)>,
}

impl Crew {
    /// On at `t`: start ≤ t < end.
    #[inline]
    pub fn on_at(&self, t: i64) -> bool {
        self.start_ms <= t && t < self.end_ms
    }

    /// Whether the two windows share an instant.
    #[inline]
    pub fn overlaps(&self, start_ms: i64, end_ms: i64) -> bool {
        self.start_ms < end_ms && start_ms < self.end_ms
    }

    fn minimum(&self, bit: u32) -> u32 {
        self.minimums.iter().find(|(b, _)| *b == bit).map_or(1, |(_, n)| *n)
    }
}

/// A crew's capabilities at `t`, and the first instant after `t` (before the crew's end)
/// at which one of its members' skills becomes valid or lapses.
pub fn derive(crew: &Crew, people: &imbl::OrdMap<String, Person>, t: i64) -> (CapSet, Option<i64>) {
    let mut counts = [0u32; MAX_CAPABILITIES];
    let mut next: Option<i64> = None;
    for member in &crew.members {
        let Some(p) = people.get(member) else { continue };
        for s in &p.skills {
            if s.valid_at(t) {
                counts[s.bit as usize] += 1;
            }
            if let Some(c) = s.next_change_after(t).filter(|&c| c < crew.end_ms) {
                next = Some(next.map_or(c, |n| n.min(c)));
            }
        }
    }
    let caps = (0..MAX_CAPABILITIES as u32)
        .filter(|&bit| counts[bit as usize] > 0 && counts[bit as usize] >= crew.minimum(bit))
        .fold(0, |acc, bit| acc | (1 << bit));
    (caps, next)
}

/// What a rostered unit looks like at a moment: the crew on it, its capabilities and
/// window, and when that can next change.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub active: Option<String>,
    pub caps: CapSet,
    pub start_ms: i64,
    pub end_ms: i64,
    /// [`NO_TIME`] when nothing more will change (every crew has ended).
    pub due_ms: i64,
}

/// The derived state of a unit with these crews at `t`. With a crew on: its members'
/// capabilities and its window. With none on but one to come: no capabilities and the next
/// crew's window (so the ranking's on-shift test turns true exactly at its start). With
/// every crew over: no capabilities and the empty window at the last crew's end.
pub fn unit_at<'a>(
    crew_ids: impl Iterator<Item = &'a String>,
    crews: &imbl::OrdMap<String, Crew>,
    people: &imbl::OrdMap<String, Person>,
    t: i64,
) -> Derived {
    let mut active = None;
    let mut upcoming: Option<(&String, &Crew)> = None;
    let mut last_end = NO_TIME;
    for id in crew_ids {
        let c = &crews[id];
        if c.on_at(t) {
            active = Some((id, c));
        } else if c.start_ms > t {
            if upcoming.is_none_or(|(_, u)| c.start_ms < u.start_ms) {
                upcoming = Some((id, c));
            }
        } else {
            last_end = last_end.max(c.end_ms);
        }
    }
    match (active, upcoming) {
        (Some((id, c)), up) => {
            let (caps, skill_change) = derive(c, people, t);
            let due = [Some(c.end_ms), skill_change, up.map(|(_, u)| u.start_ms)].into_iter().flatten().min();
            Derived {
                active: Some(id.clone()),
                caps,
                start_ms: c.start_ms,
                end_ms: c.end_ms,
                due_ms: due.unwrap_or(NO_TIME),
            }
        }
        (None, Some((_, u))) => {
            Derived { active: None, caps: 0, start_ms: u.start_ms, end_ms: u.end_ms, due_ms: u.start_ms }
        }
        (None, None) => Derived { active: None, caps: 0, start_ms: last_end, end_ms: last_end, due_ms: NO_TIME },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duty::people::Skill;

    fn person(skills: &[(u32, i64, i64)]) -> Person {
        Person {
            skills: skills.iter().map(|&(bit, f, e)| Skill { bit, valid_from_ms: f, expiry_ms: e }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_capability_with_a_minimum_needs_that_many_valid_holders() {
        let mut people = imbl::OrdMap::new();
        people.insert("a".to_owned(), person(&[(0, NO_TIME, 500), (1, NO_TIME, NO_TIME)]));
        people.insert("b".to_owned(), person(&[(0, NO_TIME, NO_TIME)]));
        let crew =
            Crew { slot: 0, members: vec!["a".into(), "b".into()], start_ms: 0, end_ms: 1000, minimums: vec![(0, 2)] };
        assert_eq!(derive(&crew, &people, 100), (0b11, Some(500)));
        // a's bit 0 lapses at 500: one holder left, under the minimum of two.
        assert_eq!(derive(&crew, &people, 500), (0b10, None));
    }
}
