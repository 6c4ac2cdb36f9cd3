//! Acknowledgement deadlines: a unit DISPATCHED must go EN_ROUTE (or arrive) within a time
//! set per grade; one that does not is flagged, once per dispatch, at the first clock
//! command at or after its deadline.
//!
//! Deadlines are state (a snapshot keeps them) and are set from the command's time when the
//! unit is dispatched, so replay flags the same units at the same ticks. Deadlines are
//! kept in an ordered index, so `Machine::tick_due` reads the earliest in O(log n) and a
//! tick takes only the deadlines that have passed.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{CoreError, CoreResult};
use crate::types::{Grade, N_GRADES};

/// How long a DISPATCHED unit has to acknowledge (go EN_ROUTE), per grade (index:
/// [`Grade::index`]); `None`: no deadline for that grade. Configuration, like the retention
/// of closed incidents: a replica or a replay must use the same values to flag the same
/// units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckTimeouts(pub [Option<i64>; N_GRADES]);

impl Default for AckTimeouts {
    /// None: deadlines are a policy of the force, switched on by configuration
    /// (`dispatch-core serve --ack-timeout`).
    fn default() -> Self {
        Self([None; N_GRADES])
    }
}

impl AckTimeouts {
    pub fn of(&self, grade: Grade) -> Option<i64> {
        self.0[grade.index()]
    }

    /// Refuses a timeout that is not positive or is longer than a day.
    pub fn validate(&self) -> CoreResult<()> {
        for (g, t) in Grade::ALL.iter().zip(self.0) {
            if let Some(ms) = t {
                if !(1..=24 * 3600 * 1000).contains(&ms) {
                    return Err(CoreError::invalid(
                        format!("ack_timeout_ms.{}", g.name()),
                        format!("{ms} ms is outside 1 ms to a day"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The deadlines of units waiting to acknowledge, and the units flagged as overdue that
/// still have not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckDeadlines {
    /// (deadline_ms, unit slot), earliest first.
    by_due: BTreeSet<(i64, u32)>,
    /// unit slot → deadline_ms.
    by_slot: BTreeMap<u32, i64>,
    /// Units flagged overdue and still DISPATCHED (the picture counts them per area).
    overdue: BTreeSet<u32>,
}

impl AckDeadlines {
    /// Starts a deadline for a unit just dispatched (replacing any earlier one: a diverted
    /// unit is dispatched afresh), and clears an earlier overdue flag.
    pub fn start(&mut self, slot: u32, due_ms: i64) {
        self.clear(slot);
        self.by_due.insert((due_ms, slot));
        self.by_slot.insert(slot, due_ms);
    }

    /// Forgets the unit's deadline and flag: it acknowledged, was released or diverted.
    pub fn clear(&mut self, slot: u32) {
        if let Some(due) = self.by_slot.remove(&slot) {
            self.by_due.remove(&(due, slot));
        }
        self.overdue.remove(&slot);
    }

    /// The earliest deadline not yet flagged.
    pub fn earliest(&self) -> Option<i64> {
        self.by_due.first().map(|&(due, _)| due)
    }

    /// Takes every deadline at or before `now` and flags those units as overdue: (slot,
    /// deadline), earliest first. Each dispatch is flagged once: its deadline leaves the
    /// index here.
    pub fn take_due(&mut self, now: i64) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        while let Some(&(due, slot)) = self.by_due.first() {
            if due > now {
                break;
            }
            self.by_due.pop_first();
            self.by_slot.remove(&slot);
            self.overdue.insert(slot);
            out.push((slot, due));
        }
        out
    }

    /// Units flagged overdue that still have not acknowledged.
    pub fn overdue(&self) -> impl Iterator<Item = u32> + '_ {
        self.overdue.iter().copied()
    }

    /// Whether the unit has a running deadline or an overdue flag.
    pub fn tracks(&self, slot: u32) -> bool {
        self.by_slot.contains_key(&slot) || self.overdue.contains(&slot)
    }

    /// (slot, deadline) of the running deadlines, in slot order (snapshots).
    pub fn deadlines(&self) -> impl Iterator<Item = (u32, i64)> + '_ {
        self.by_slot.iter().map(|(&s, &d)| (s, d))
    }

    /// Restores a flagged unit (snapshots).
    pub fn restore_overdue(&mut self, slot: u32) {
        self.overdue.insert(slot);
    }

    /// Checks the two indexes agree; for the invariants.
    pub fn check(&self) -> Result<(), String> {
        if self.by_due.len() != self.by_slot.len() || self.by_due.iter().any(|(d, s)| self.by_slot.get(s) != Some(d)) {
            return Err("acknowledgement deadline indexes disagree".into());
        }
        if let Some(s) = self.overdue.iter().find(|s| self.by_slot.contains_key(s)) {
            return Err(format!("unit slot {s} is both overdue and waiting for its deadline"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_taken_in_order_once() {
        let mut a = AckDeadlines::default();
        a.start(3, 100);
        a.start(1, 50);
        a.start(2, 100);
        assert_eq!(a.earliest(), Some(50));
        assert_eq!(a.take_due(99), [(1, 50)]);
        assert_eq!(a.take_due(99), []);
        assert_eq!(a.take_due(100), [(2, 100), (3, 100)]);
        assert_eq!(a.overdue().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(a.earliest(), None);
        a.clear(2);
        assert_eq!(a.overdue().collect::<Vec<_>>(), [1, 3]);
        a.start(1, 500);
        assert_eq!(a.overdue().collect::<Vec<_>>(), [3]);
        a.check().unwrap();
    }

    #[test]
    fn timeouts_outside_a_day_are_refused_naming_the_grade() {
        let bad = AckTimeouts([Some(60_000), Some(0), None, None]);
        assert!(bad.validate().unwrap_err().to_string().contains("SIGNIFICANT"));
        AckTimeouts([Some(60_000), None, None, None]).validate().unwrap();
    }
}
