//! The unit status lifecycle of docs/domain.md, in one table.

use crate::types::Status;
use Status::*;

/// What a status change does to the unit's link with its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Allowed; the incident link is kept.
    Keep,
    /// Allowed; the unit is released from its incident.
    Release,
    /// Not allowed.
    Refused,
}

/// The lifecycle table. AVAILABLE → DISPATCHED is refused here because only an assignment
/// to an incident may make it ([`crate::store::UnitStore::assign`]).
pub fn transition(from: Status, to: Status) -> Transition {
    match (from, to) {
        (Available, Unavailable | OffDuty) => Transition::Keep,
        (Dispatched, EnRoute | OnScene) => Transition::Keep,
        (EnRoute, OnScene) => Transition::Keep,
        (Dispatched | EnRoute, Available) => Transition::Release,
        (OnScene, Committed | Available) => Transition::Release,
        (Committed, Available) => Transition::Keep,
        (Unavailable, Available | OffDuty) => Transition::Keep,
        (OffDuty, Available | Unavailable) => Transition::Keep,
        _ => Transition::Refused,
    }
}

/// Statuses in which a unit is attached to an incident.
pub fn is_attached(status: Status) -> bool {
    matches!(status, Dispatched | EnRoute | OnScene)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_of_domain_md() {
        assert_eq!(transition(Dispatched, EnRoute), Transition::Keep);
        assert_eq!(transition(EnRoute, OnScene), Transition::Keep);
        assert_eq!(transition(OnScene, Committed), Transition::Release);
        assert_eq!(transition(Committed, Available), Transition::Keep);
    }

    #[test]
    fn dispatch_only_by_assignment_and_no_booking_off_while_attached() {
        assert_eq!(transition(Available, Dispatched), Transition::Refused);
        for s in [Dispatched, EnRoute, OnScene] {
            assert_eq!(transition(s, OffDuty), Transition::Refused);
            assert_eq!(transition(s, Unavailable), Transition::Refused);
        }
    }

    #[test]
    fn every_release_leaves_an_attached_status_for_a_free_one() {
        for &from in Status::ALL {
            for &to in Status::ALL {
                if transition(from, to) == Transition::Release {
                    assert!(is_attached(from) && !is_attached(to), "{from:?}->{to:?}");
                }
                if transition(from, to) == Transition::Keep {
                    assert_eq!(is_attached(from), is_attached(to), "{from:?}->{to:?}");
                }
            }
        }
    }
}
