//! The duty state in a snapshot: people, shifts, crews and the rostered units' declared and
//! derived attributes, each in id order (canonical). The lists that only index these
//! (a person's shifts and crews, a unit's crews, the deadline index) are rebuilt on restore.

use prost::Message;

use crate::caps::{CapSet, Vocabulary};
use crate::duty::{Crew, Derived, Duty, Person, Rostered, Shift, Skill};
use crate::error::{CoreError, CoreResult};
use crate::units::NO_TIME;

#[derive(Clone, PartialEq, Message)]
pub struct DutyMsg {
    #[prost(message, repeated, tag = "1")]
    people: Vec<PersonRow>,
    #[prost(message, repeated, tag = "2")]
    shifts: Vec<ShiftRow>,
    #[prost(message, repeated, tag = "3")]
    crews: Vec<CrewRow>,
    #[prost(message, repeated, tag = "4")]
    rostered: Vec<RosteredRow>,
}

#[derive(Clone, PartialEq, Message)]
struct SkillRow {
    #[prost(string, tag = "1")]
    capability: String,
    #[prost(sfixed64, tag = "2")]
    valid_from_ms: i64,
    #[prost(sfixed64, tag = "3")]
    expiry_ms: i64,
}

#[derive(Clone, PartialEq, Message)]
struct PersonRow {
    #[prost(string, tag = "1")]
    person_id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "3")]
    skills: Vec<SkillRow>,
}

#[derive(Clone, PartialEq, Message)]
struct ShiftRow {
    #[prost(string, tag = "1")]
    shift_id: String,
    #[prost(string, tag = "2")]
    person_id: String,
    #[prost(sfixed64, tag = "3")]
    start_ms: i64,
    #[prost(sfixed64, tag = "4")]
    end_ms: i64,
    #[prost(string, tag = "5")]
    role: String,
    #[prost(string, tag = "6")]
    area: String,
}

#[derive(Clone, PartialEq, Message)]
struct CrewRow {
    #[prost(string, tag = "1")]
    crew_id: String,
    #[prost(uint32, tag = "2")]
    slot: u32,
    #[prost(string, repeated, tag = "3")]
    members: Vec<String>,
    #[prost(sfixed64, tag = "4")]
    start_ms: i64,
    #[prost(sfixed64, tag = "5")]
    end_ms: i64,
    #[prost(string, repeated, tag = "6")]
    minimum_capabilities: Vec<String>,
    #[prost(uint32, repeated, tag = "7")]
    minimum_holders: Vec<u32>,
}

#[derive(Clone, PartialEq, Message)]
struct RosteredRow {
    #[prost(uint32, tag = "1")]
    slot: u32,
    #[prost(fixed64, tag = "2")]
    declared_caps_lo: u64,
    #[prost(fixed64, tag = "3")]
    declared_caps_hi: u64,
    #[prost(sfixed64, tag = "4")]
    declared_start_ms: i64,
    #[prost(sfixed64, tag = "5")]
    declared_end_ms: i64,
    #[prost(string, optional, tag = "6")]
    active: Option<String>,
    #[prost(fixed64, tag = "7")]
    caps_lo: u64,
    #[prost(fixed64, tag = "8")]
    caps_hi: u64,
    #[prost(sfixed64, tag = "9")]
    start_ms: i64,
    #[prost(sfixed64, tag = "10")]
    end_ms: i64,
    #[prost(sfixed64, tag = "11")]
    due_ms: i64,
}

fn split(caps: CapSet) -> (u64, u64) {
    (caps as u64, (caps >> 64) as u64)
}

fn join(lo: u64, hi: u64) -> CapSet {
    CapSet::from(lo) | (CapSet::from(hi) << 64)
}

/// The duty state as a snapshot message (capability names from `vocab`; masks by its bits).
pub fn encode(d: &Duty, vocab: &Vocabulary) -> DutyMsg {
    let name = |bit: u32| vocab.names()[bit as usize].clone();
    DutyMsg {
        people: d
            .people
            .iter()
            .map(|(id, p)| PersonRow {
                person_id: id.clone(),
                name: p.name.clone(),
                skills: p
                    .skills
                    .iter()
                    .map(|s| SkillRow {
                        capability: name(s.bit),
                        valid_from_ms: s.valid_from_ms,
                        expiry_ms: s.expiry_ms,
                    })
                    .collect(),
            })
            .collect(),
        shifts: d
            .shifts
            .iter()
            .map(|(id, s)| ShiftRow {
                shift_id: id.clone(),
                person_id: s.person_id.clone(),
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                role: s.role.clone(),
                area: s.area.clone(),
            })
            .collect(),
        crews: d
            .crews
            .iter()
            .map(|(id, c)| CrewRow {
                crew_id: id.clone(),
                slot: c.slot,
                members: c.members.clone(),
                start_ms: c.start_ms,
                end_ms: c.end_ms,
                minimum_capabilities: c.minimums.iter().map(|&(b, _)| name(b)).collect(),
                minimum_holders: c.minimums.iter().map(|&(_, n)| n).collect(),
            })
            .collect(),
        rostered: d
            .rostered
            .iter()
            .map(|(&slot, r)| {
                let (declared_caps_lo, declared_caps_hi) = split(r.declared_caps);
                let (caps_lo, caps_hi) = split(r.derived.caps);
                RosteredRow {
                    slot,
                    declared_caps_lo,
                    declared_caps_hi,
                    declared_start_ms: r.declared_start_ms,
                    declared_end_ms: r.declared_end_ms,
                    active: r.derived.active.clone(),
                    caps_lo,
                    caps_hi,
                    start_ms: r.derived.start_ms,
                    end_ms: r.derived.end_ms,
                    due_ms: r.derived.due_ms,
                }
            })
            .collect(),
    }
}

fn bad(what: impl Into<String>) -> CoreError {
    CoreError::invalid("snapshot", what)
}

/// Restores the duty state; `remap` maps the snapshot's capability masks onto the
/// configured vocabulary, `units` is how many unit slots the snapshot holds.
pub fn decode(m: DutyMsg, vocab: &Vocabulary, remap: &dyn Fn(CapSet) -> CapSet, units: usize) -> CoreResult<Duty> {
    let bit = |name: &str| {
        vocab
            .encode(&[name])
            .map(|set| set.trailing_zeros())
            .map_err(|_| bad(format!("capability {name:?} is not in the configured vocabulary")))
    };
    let mut d = Duty::default();
    for p in m.people {
        let skills = p
            .skills
            .iter()
            .map(|s| Ok(Skill { bit: bit(&s.capability)?, valid_from_ms: s.valid_from_ms, expiry_ms: s.expiry_ms }))
            .collect::<CoreResult<_>>()?;
        d.people.insert(p.person_id, Person { name: p.name, skills, ..Default::default() });
    }
    for s in m.shifts {
        let person = d
            .people
            .get_mut(&s.person_id)
            .ok_or_else(|| bad(format!("shift {:?} of an unknown person", s.shift_id)))?;
        person.shifts.push(s.shift_id.clone());
        let shift =
            Shift { person_id: s.person_id, start_ms: s.start_ms, end_ms: s.end_ms, role: s.role, area: s.area };
        d.shifts.insert(s.shift_id, shift);
    }
    for r in m.rostered {
        if r.slot as usize >= units {
            return Err(bad("a rostered unit refers to an unknown slot"));
        }
        let derived = Derived {
            active: r.active,
            caps: remap(join(r.caps_lo, r.caps_hi)),
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            due_ms: r.due_ms,
        };
        if derived.due_ms != NO_TIME {
            d.deadlines.insert((derived.due_ms, r.slot));
        }
        d.rostered.insert(
            r.slot,
            Rostered {
                declared_caps: remap(join(r.declared_caps_lo, r.declared_caps_hi)),
                declared_start_ms: r.declared_start_ms,
                declared_end_ms: r.declared_end_ms,
                crews: Vec::new(),
                derived,
            },
        );
    }
    for c in m.crews {
        if c.minimum_capabilities.len() != c.minimum_holders.len() {
            return Err(bad(format!("crew {:?} has minimum columns of different lengths", c.crew_id)));
        }
        let minimums = c
            .minimum_capabilities
            .iter()
            .zip(&c.minimum_holders)
            .map(|(name, &n)| Ok((bit(name)?, n)))
            .collect::<CoreResult<_>>()?;
        for member in &c.members {
            let p =
                d.people.get_mut(member).ok_or_else(|| bad(format!("crew {:?} holds an unknown person", c.crew_id)))?;
            p.crews.push(c.crew_id.clone());
        }
        let r = d
            .rostered
            .get_mut(&c.slot)
            .ok_or_else(|| bad(format!("crew {:?} is on a unit not rostered", c.crew_id)))?;
        r.crews.push(c.crew_id.clone());
        let crew = Crew { slot: c.slot, members: c.members, start_ms: c.start_ms, end_ms: c.end_ms, minimums };
        d.crews.insert(c.crew_id, crew);
    }
    Ok(d)
}
