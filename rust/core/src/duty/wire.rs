//! The duty RPCs on the wire: request validation (every violation named by its proto
//! path), decoding into [`DutyCommand`]s, and the messages the answers and reads are made of.

use prost::Message;

use crate::caps::Vocabulary;
use crate::duty::{Crew, Duty, Person, RosterChange, Shift, Skill};
use crate::error::{CoreError, CoreResult};
use crate::store::UnitStore;
use crate::units::NO_TIME;
use crate::wire::decode::message;
use crate::wire::encode::{timestamp, unit};
use crate::wire::pb;
use crate::wire::validate::{capabilities, id, push, shift_bound, Violations};

/// Most skills one person holds (each capability once, so the vocabulary's size bounds it).
pub const MAX_SKILLS: usize = 128;
/// Most members of one crew.
pub const MAX_CREW: usize = 16;
/// Longest shift or crew booking: a week. Longer is a data-entry error, not a shift.
pub const MAX_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

/// A decoded, validated duty command.
#[derive(Debug, Clone, PartialEq)]
pub enum DutyCommand {
    UpsertPerson {
        person_id: String,
        name: String,
        skills: Vec<Skill>,
    },
    UpsertShift {
        shift_id: String,
        shift: Shift,
    },
    /// The crew with its unit named (the state machine resolves it to a slot).
    BookCrew {
        crew_id: String,
        unit_id: String,
        members: Vec<String>,
        start_ms: i64,
        end_ms: i64,
        minimums: Vec<(u32, u32)>,
    },
}

/// What an applied duty command answers.
#[derive(Debug, Clone, PartialEq)]
pub enum DutyReply {
    Person { person_id: String, created: bool },
    Shift { shift_id: String, created: bool },
    Crew { crew_id: String, created: bool },
}

fn refuse_if(v: Violations) -> CoreResult<()> {
    if v.is_empty() {
        Ok(())
    } else {
        Err(CoreError::InvalidFields(v))
    }
}

fn bit(vocab: &Vocabulary, name: &str) -> u32 {
    vocab.encode(&[name]).map(|set| set.trailing_zeros()).expect("validated against the vocabulary")
}

/// A required window: both bounds valid, end after start, at most [`MAX_WINDOW_MS`] long.
fn window(
    v: &mut Violations,
    at: &str,
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> (i64, i64) {
    let bound = |v: &mut Violations, name: &str, ts: Option<&prost_types::Timestamp>| match ts {
        Some(ts) => shift_bound(v, &format!("{at}{name}"), ts),
        None => {
            push(v, format!("{at}{name}"), "must be set");
            None
        }
    };
    let (s, e) = (bound(v, "start", start), bound(v, "end", end));
    if let (Some(s), Some(e)) = (s, e) {
        if e <= s {
            push(v, format!("{at}end"), format!("must be after {at}start"));
        } else if e - s > MAX_WINDOW_MS {
            push(v, format!("{at}end"), "is more than 7 days after the start");
        }
    }
    (s.unwrap_or(NO_TIME), e.unwrap_or(NO_TIME))
}

fn upsert_person(r: &pb::UpsertPersonRequest, vocab: &Vocabulary) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    let Some(p) = &r.person else {
        push(&mut v, "person", "must be set");
        return v;
    };
    id(&mut v, "person.person_id", &p.person_id, true);
    id(&mut v, "person.name", &p.name, false);
    if p.skills.len() > MAX_SKILLS {
        push(&mut v, "person.skills", format!("has more than {MAX_SKILLS} entries"));
        return v;
    }
    let mut seen = Vec::new();
    for (i, s) in p.skills.iter().enumerate() {
        let at = format!("person.skills[{i}]");
        capabilities(&mut v, &format!("{at}.capability"), std::slice::from_ref(&s.capability), vocab);
        if seen.contains(&&s.capability) {
            push(&mut v, format!("{at}.capability"), format!("{:?} is listed twice", s.capability));
        }
        seen.push(&s.capability);
        let from = s.valid_from.as_ref().and_then(|ts| shift_bound(&mut v, &format!("{at}.valid_from"), ts));
        let expiry = s.expiry.as_ref().and_then(|ts| shift_bound(&mut v, &format!("{at}.expiry"), ts));
        if let (Some(from), Some(expiry)) = (from, expiry) {
            if expiry <= from {
                push(&mut v, format!("{at}.expiry"), format!("must be after {at}.valid_from"));
            }
        }
    }
    v
}

fn upsert_shift(r: &pb::UpsertShiftRequest) -> (Violations, i64, i64) {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    let Some(s) = &r.shift else {
        push(&mut v, "shift", "must be set");
        return (v, NO_TIME, NO_TIME);
    };
    id(&mut v, "shift.shift_id", &s.shift_id, true);
    id(&mut v, "shift.person_id", &s.person_id, true);
    id(&mut v, "shift.role", &s.role, false);
    id(&mut v, "shift.area", &s.area, false);
    let (start, end) = window(&mut v, "shift.", s.start.as_ref(), s.end.as_ref());
    (v, start, end)
}

fn book_crew(r: &pb::BookCrewRequest, vocab: &Vocabulary) -> (Violations, i64, i64) {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    let Some(c) = &r.crew else {
        push(&mut v, "crew", "must be set");
        return (v, NO_TIME, NO_TIME);
    };
    id(&mut v, "crew.crew_id", &c.crew_id, true);
    id(&mut v, "crew.unit_id", &c.unit_id, true);
    if c.person_ids.is_empty() || c.person_ids.len() > MAX_CREW {
        push(&mut v, "crew.person_ids", format!("needs 1 to {MAX_CREW} people"));
    } else {
        for (i, p) in c.person_ids.iter().enumerate() {
            id(&mut v, &format!("crew.person_ids[{i}]"), p, true);
            if c.person_ids[..i].contains(p) {
                push(&mut v, format!("crew.person_ids[{i}]"), format!("{p:?} is listed twice"));
            }
        }
    }
    if c.minimums.len() > MAX_SKILLS {
        push(&mut v, "crew.minimums", format!("has more than {MAX_SKILLS} entries"));
    } else {
        for (i, m) in c.minimums.iter().enumerate() {
            let at = format!("crew.minimums[{i}]");
            capabilities(&mut v, &format!("{at}.capability"), std::slice::from_ref(&m.capability), vocab);
            if c.minimums[..i].iter().any(|o| o.capability == m.capability) {
                push(&mut v, format!("{at}.capability"), format!("{:?} is listed twice", m.capability));
            }
            if !(1..=MAX_CREW as u32).contains(&m.holders) {
                push(&mut v, format!("{at}.holders"), format!("{} is outside [1, {MAX_CREW}]", m.holders));
            }
        }
    }
    let (start, end) = window(&mut v, "crew.", c.start.as_ref(), c.end.as_ref());
    (v, start, end)
}

fn ms(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref().and_then(crate::wire::decode::timestamp_ms).unwrap_or(NO_TIME)
}

/// Decodes and validates a duty request: (request_id, command, canonical bytes).
pub fn decode(
    method: crate::command::Method,
    bytes: &[u8],
    vocab: &Vocabulary,
) -> CoreResult<(String, DutyCommand, Vec<u8>)> {
    use crate::command::Method;
    match method {
        Method::UpsertPerson => {
            let r: pb::UpsertPersonRequest = message(bytes, "UpsertPersonRequest")?;
            refuse_if(upsert_person(&r, vocab))?;
            let p = r.person.clone().unwrap_or_default();
            let skills = p
                .skills
                .iter()
                .map(|s| Skill {
                    bit: bit(vocab, &s.capability),
                    valid_from_ms: ms(&s.valid_from),
                    expiry_ms: ms(&s.expiry),
                })
                .collect();
            let command = DutyCommand::UpsertPerson { person_id: p.person_id, name: p.name, skills };
            Ok((r.request_id.clone(), command, r.encode_to_vec()))
        }
        Method::UpsertShift => {
            let r: pb::UpsertShiftRequest = message(bytes, "UpsertShiftRequest")?;
            let (v, start_ms, end_ms) = upsert_shift(&r);
            refuse_if(v)?;
            let s = r.shift.clone().unwrap_or_default();
            let shift = Shift { person_id: s.person_id, start_ms, end_ms, role: s.role, area: s.area };
            Ok((r.request_id.clone(), DutyCommand::UpsertShift { shift_id: s.shift_id, shift }, r.encode_to_vec()))
        }
        Method::BookCrew => {
            let r: pb::BookCrewRequest = message(bytes, "BookCrewRequest")?;
            let (v, start_ms, end_ms) = book_crew(&r, vocab);
            refuse_if(v)?;
            let c = r.crew.clone().unwrap_or_default();
            let command = DutyCommand::BookCrew {
                crew_id: c.crew_id,
                unit_id: c.unit_id,
                members: c.person_ids,
                start_ms,
                end_ms,
                minimums: c.minimums.iter().map(|m| (bit(vocab, &m.capability), m.holders)).collect(),
            };
            Ok((r.request_id.clone(), command, r.encode_to_vec()))
        }
        other => Err(CoreError::invalid("method", format!("{} is not a duty command", other.name()))),
    }
}

fn optional_timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    (ms != NO_TIME).then(|| timestamp(ms))
}

pub fn person(person_id: &str, p: &Person, vocab: &Vocabulary) -> pb::Person {
    pb::Person {
        person_id: person_id.to_owned(),
        name: p.name.clone(),
        skills: p
            .skills
            .iter()
            .map(|s| pb::Skill {
                capability: vocab.names()[s.bit as usize].clone(),
                valid_from: optional_timestamp(s.valid_from_ms),
                expiry: optional_timestamp(s.expiry_ms),
            })
            .collect(),
    }
}

pub fn shift(shift_id: &str, s: &Shift) -> pb::Shift {
    pb::Shift {
        shift_id: shift_id.to_owned(),
        person_id: s.person_id.clone(),
        start: Some(timestamp(s.start_ms)),
        end: Some(timestamp(s.end_ms)),
        role: s.role.clone(),
        area: s.area.clone(),
    }
}

pub fn crew(crew_id: &str, c: &Crew, units: &UnitStore) -> pb::Crew {
    pb::Crew {
        crew_id: crew_id.to_owned(),
        unit_id: units.table().ids[c.slot as usize].to_string(),
        person_ids: c.members.clone(),
        start: Some(timestamp(c.start_ms)),
        end: Some(timestamp(c.end_ms)),
        minimums: c
            .minimums
            .iter()
            .map(|&(bit, holders)| pb::CapabilityMinimum {
                capability: units.vocabulary().names()[bit as usize].clone(),
                holders,
            })
            .collect(),
    }
}

pub fn roster_change(c: &RosterChange, units: &UnitStore) -> pb::RosterChange {
    pb::RosterChange {
        unit: Some(unit(units, c.slot)),
        crew_id: c.crew.clone().unwrap_or_default(),
        overtime: c.overtime,
    }
}

/// The encoded answer of an applied duty command.
pub fn reply(duty: &Duty, units: &UnitStore, r: &DutyReply) -> Vec<u8> {
    match r {
        DutyReply::Person { person_id, created } => pb::UpsertPersonResponse {
            person: duty.person(person_id).map(|p| person(person_id, p, units.vocabulary())),
            created: *created,
        }
        .encode_to_vec(),
        DutyReply::Shift { shift_id, created } => {
            pb::UpsertShiftResponse { shift: duty.shift(shift_id).map(|s| shift(shift_id, s)), created: *created }
                .encode_to_vec()
        }
        DutyReply::Crew { crew_id, created } => {
            let c = duty.crew(crew_id);
            pb::BookCrewResponse {
                crew: c.map(|c| crew(crew_id, c, units)),
                created: *created,
                unit: c.map(|c| unit(units, c.slot)),
            }
            .encode_to_vec()
        }
    }
}

/// GetPerson: the person, their shifts and crews, each earliest first.
pub fn get_person(duty: &Duty, units: &UnitStore, bytes: &[u8]) -> CoreResult<Vec<u8>> {
    let r: pb::GetPersonRequest = message(bytes, "GetPersonRequest")?;
    let mut v = Violations::new();
    id(&mut v, "person_id", &r.person_id, true);
    refuse_if(v)?;
    let p = duty
        .person(&r.person_id)
        .ok_or_else(|| CoreError::UnknownRecord { kind: "person", id: r.person_id.clone() })?;
    let mut shifts: Vec<(&String, &Shift)> = p.shifts.iter().map(|id| (id, &duty.shifts[id])).collect();
    shifts.sort_by_key(|(id, s)| (s.start_ms, *id));
    let mut crews: Vec<(&String, &Crew)> = p.crews.iter().map(|id| (id, &duty.crews[id])).collect();
    crews.sort_by_key(|(id, c)| (c.start_ms, *id));
    Ok(pb::GetPersonResponse {
        person: Some(person(&r.person_id, p, units.vocabulary())),
        shifts: shifts.into_iter().map(|(id, s)| shift(id, s)).collect(),
        crews: crews.into_iter().map(|(id, c)| crew(id, c, units)).collect(),
    }
    .encode_to_vec())
}
