//! Duty management through `Machine::execute`: crew-derived capabilities, skill expiry and
//! shift end at the boundary instant, OFF_DUTY and overtime, refusals that change nothing,
//! replay and snapshot equality with rosters (as properties), and the ranking with crews
//! against the brute-force oracle.

use dispatch_engine::command::{Method, RequirementGroup};
use dispatch_engine::error::CoreError;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::rank::Query;
use dispatch_engine::record;
use dispatch_engine::snapshot;
use dispatch_engine::state::{Event, JournalAnswer, Machine, Outcome};
use dispatch_engine::store::UnitStore;
use dispatch_engine::team;
use dispatch_engine::types::{Agency, Status};
use dispatch_engine::wire::encode::timestamp;
use dispatch_engine::wire::pb;
use proptest::prelude::*;
use prost::Message;

const T0: i64 = 1_750_000_000_000;
const H: i64 = 3_600_000;

fn machine() -> Machine {
    Machine::new(UnitStore::new(RankConfig::default(), 0.01).unwrap(), 10_000)
}

struct Run {
    m: Machine,
    journal: Vec<(u64, Method, Vec<u8>, Vec<u8>)>,
    n: u64,
    /// When every unit was last pinged (pings are not journaled: a replica is given them).
    pinged_ms: i64,
}

impl Run {
    fn new() -> Self {
        Self { m: machine(), journal: Vec::new(), n: 0, pinged_ms: T0 }
    }

    fn send(&mut self, method: Method, bytes: Vec<u8>, at: i64) -> Outcome {
        let out = self.m.execute(method, &bytes, at, JournalAnswer::Unchecked);
        if let Outcome::Applied { sequence, request, response, .. } = &out {
            self.journal.push((*sequence, method, record::encode(at, request), response.clone()));
        }
        self.m.check_invariants().unwrap();
        out
    }

    fn ok(&mut self, method: Method, bytes: Vec<u8>, at: i64) -> (Vec<u8>, Vec<Event>) {
        match self.send(method, bytes, at) {
            Outcome::Applied { response, events, .. } => (response, events),
            other => panic!("{method:?} refused: {other:?}"),
        }
    }

    fn rid(&mut self) -> String {
        self.n += 1;
        format!("r{}", self.n)
    }

    fn unit(&mut self, id: &str, caps: &[&str], at: i64) -> pb::UpsertUnitResponse {
        let r = pb::UpsertUnitRequest {
            request_id: self.rid(),
            unit: Some(pb::UnitSpec {
                unit_id: id.into(),
                agency: Agency::Police as i32,
                unit_type: "arv".into(),
                capabilities: caps.iter().map(|c| (*c).into()).collect(),
                ..Default::default()
            }),
        };
        let (resp, _) = self.ok(Method::UpsertUnit, r.encode_to_vec(), at);
        pb::UpsertUnitResponse::decode(resp.as_slice()).unwrap()
    }

    fn person_request(&mut self, id: &str, skills: &[(&str, Option<i64>, Option<i64>)]) -> Vec<u8> {
        pb::UpsertPersonRequest {
            request_id: self.rid(),
            person: Some(pb::Person {
                person_id: id.into(),
                name: format!("PC {id}"),
                skills: skills
                    .iter()
                    .map(|(c, f, e)| pb::Skill {
                        capability: (*c).into(),
                        valid_from: f.map(timestamp),
                        expiry: e.map(timestamp),
                    })
                    .collect(),
            }),
        }
        .encode_to_vec()
    }

    fn person(&mut self, id: &str, skills: &[(&str, Option<i64>, Option<i64>)], at: i64) {
        let r = self.person_request(id, skills);
        self.ok(Method::UpsertPerson, r, at);
    }

    fn shift_request(&mut self, id: &str, person: &str, start: i64, end: i64) -> Vec<u8> {
        pb::UpsertShiftRequest {
            request_id: self.rid(),
            shift: Some(pb::Shift {
                shift_id: id.into(),
                person_id: person.into(),
                start: Some(timestamp(start)),
                end: Some(timestamp(end)),
                role: "driver".into(),
                area: "Camden".into(),
            }),
        }
        .encode_to_vec()
    }

    fn crew_request(
        &mut self,
        id: &str,
        unit: &str,
        people: &[&str],
        start: i64,
        end: i64,
        min_firearms: u32,
    ) -> Vec<u8> {
        pb::BookCrewRequest {
            request_id: self.rid(),
            crew: Some(pb::Crew {
                crew_id: id.into(),
                unit_id: unit.into(),
                person_ids: people.iter().map(|p| (*p).into()).collect(),
                start: Some(timestamp(start)),
                end: Some(timestamp(end)),
                minimums: if min_firearms > 1 {
                    vec![pb::CapabilityMinimum { capability: "firearms".into(), holders: min_firearms }]
                } else {
                    Vec::new()
                },
            }),
        }
        .encode_to_vec()
    }

    fn tick(&mut self, at: i64) -> (pb::ClockTick, Vec<Event>) {
        let (resp, events) = self.ok(Method::Tick, Vec::new(), at);
        (pb::ClockTick::decode(resp.as_slice()).unwrap(), events)
    }

    fn caps(&self, unit: &str) -> Vec<String> {
        let slot = self.m.units().slot(unit).unwrap();
        self.m.vocabulary().decode(self.m.units().table().caps[slot as usize])
    }

    fn status(&self, unit: &str) -> Status {
        self.m.units().table().status[self.m.units().slot(unit).unwrap() as usize]
    }

    /// Pings every positioned unit where it stands, dated `now`: the ranking excludes a
    /// position older than the exclusion age (15 minutes), and these tests are about crews,
    /// not about the AVL feed going quiet.
    fn ping_all(&mut self, now: i64) {
        let t = self.m.units().table();
        let slots: Vec<usize> = (0..t.len()).filter(|&s| t.live[s] && t.has_location(s as u32)).collect();
        let ids: Vec<String> = slots.iter().map(|&s| t.ids[s].to_string()).collect();
        let lat: Vec<f64> = slots.iter().map(|&s| t.lat[s]).collect();
        let lon: Vec<f64> = slots.iter().map(|&s| t.lon[s]).collect();
        let report = self.m.update_locations(&ids, &lat, &lon, &vec![now; ids.len()], now).unwrap();
        assert_eq!(report.applied as usize, ids.len(), "{report:?}");
        self.pinged_ms = now;
    }

    /// Units the ranking offers for a firearms job at `now` (positions fresh then).
    fn firearms_candidates(&mut self, now: i64) -> Vec<String> {
        self.ping_all(now);
        let mut q = Query::new(51.5, -0.12, now);
        q.required = vec!["firearms".into()];
        q.k = 10;
        let fast: Vec<String> = self.m.units().rank(&q).unwrap().into_iter().map(|c| c.unit_id).collect();
        let slow: Vec<String> = self.m.units().rank_brute_force(&q).unwrap().into_iter().map(|c| c.unit_id).collect();
        assert_eq!(fast, slow, "grid search and brute force disagree");
        fast
    }
}

/// An ARV crewed by two firearms officers; one's authorisation lapses at T0 + 2h.
fn arv() -> Run {
    let mut r = Run::new();
    r.unit("ARV1", &["firearms", "taser"], T0);
    r.m.update_locations(&["ARV1"], &[51.5], &[-0.12], &[T0], T0).unwrap();
    r.person("A", &[("firearms", None, Some(T0 + 2 * H)), ("advanced_driver", None, None)], T0);
    r.person("B", &[("firearms", None, None), ("lang_polish", Some(T0 + H), None)], T0);
    for (id, p) in [("SA", "A"), ("SB", "B")] {
        let req = r.shift_request(id, p, T0, T0 + 8 * H);
        r.ok(Method::UpsertShift, req, T0);
    }
    let req = r.crew_request("C1", "ARV1", &["A", "B"], T0, T0 + 8 * H, 2);
    r.ok(Method::BookCrew, req, T0);
    r
}

#[test]
fn a_crew_decides_the_units_capabilities_and_expiry_takes_effect_at_the_boundary_tick() {
    let mut r = arv();
    // The crew's skills, not the upserted ones: no taser on board.
    assert_eq!(r.caps("ARV1"), ["firearms", "advanced_driver"]);
    assert_eq!(r.firearms_candidates(T0 + 1), ["ARV1"]);
    // B's Polish becomes valid at T0+1h: due exactly then, not a millisecond before.
    assert!(!r.m.tick_due(T0 + H - 1));
    assert!(r.m.tick_due(T0 + H));
    let (tick, _) = r.tick(T0 + H);
    assert_eq!(tick.roster_changes.len(), 1);
    assert!(r.caps("ARV1").contains(&"lang_polish".to_owned()));
    // A's firearms lapse at T0+2h: one authorised officer left, under the crew's two.
    assert!(!r.m.tick_due(T0 + 2 * H - 1));
    assert!(r.m.tick_due(T0 + 2 * H));
    r.tick(T0 + 2 * H);
    assert!(!r.caps("ARV1").contains(&"firearms".to_owned()));
    assert!(r.firearms_candidates(T0 + 2 * H).is_empty());
}

#[test]
fn upsert_unit_keeps_working_and_says_the_roster_overrides_it() {
    let mut r = arv();
    let answer = r.unit("ARV1", &["dog"], T0 + 10);
    assert_eq!(answer.roster_overridden_fields, ["capabilities", "shift_start", "shift_end"]);
    assert_eq!(answer.unit.unwrap().capabilities, ["firearms", "advanced_driver"]);
    let plain = r.unit("IRV1", &["dog"], T0 + 10);
    assert!(plain.roster_overridden_fields.is_empty());
}

#[test]
fn the_unit_goes_off_duty_at_shift_end_unless_committed_then_it_is_on_overtime() {
    let mut r = arv();
    // A second unit, committed to an incident when its crew goes off.
    r.unit("ARV2", &[], T0);
    r.m.update_locations(&["ARV2"], &[51.51], &[-0.12], &[T0], T0).unwrap();
    r.person("C", &[], T0);
    let req = r.shift_request("SC", "C", T0, T0 + 4 * H);
    r.ok(Method::UpsertShift, req, T0);
    let req = r.crew_request("C2", "ARV2", &["C"], T0, T0 + 4 * H, 1);
    r.ok(Method::BookCrew, req, T0);
    let inc = pb::CreateIncidentRequest {
        request_id: "inc".into(),
        incident_id: "I1".into(),
        grade: 1,
        incident_type: "t".into(),
        location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
        requirements: vec![pb::RequirementGroup { agency: 1, count: 1, ..Default::default() }],
        ..Default::default()
    };
    r.ok(Method::CreateIncident, inc.encode_to_vec(), T0 + H);
    let assign = pb::AssignUnitsRequest {
        request_id: "a".into(),
        incident_id: "I1".into(),
        unit_ids: vec!["ARV2".into()],
        ..Default::default()
    };
    r.ok(Method::AssignUnits, assign.encode_to_vec(), T0 + H);
    assert!(r.m.tick_due(T0 + 4 * H));
    let (tick, events) = r.tick(T0 + 4 * H);
    assert_eq!(events, [Event::CrewOff { overtime: true }]);
    let change = tick.roster_changes.iter().find(|c| c.unit.as_ref().unwrap().unit_id == "ARV2").unwrap();
    assert!(change.overtime);
    assert_eq!(r.status("ARV2"), Status::Dispatched);
    // ARV1's crew goes off at 8h: AVAILABLE becomes OFF_DUTY, not overtime.
    let (tick, events) = r.tick(T0 + 8 * H);
    assert_eq!(events, [Event::CrewOff { overtime: false }]);
    assert!(!tick.roster_changes[0].overtime);
    assert_eq!(r.status("ARV1"), Status::OffDuty);
    assert_eq!(r.m.duty().next_due(), None, "nothing more is due on the roster");
    // A new crew coming on books the unit on again.
    for (id, p) in [("SA2", "A"), ("SB2", "B")] {
        let req = r.shift_request(id, p, T0 + 24 * H, T0 + 32 * H);
        r.ok(Method::UpsertShift, req, T0 + 9 * H);
    }
    let req = r.crew_request("C3", "ARV1", &["A", "B"], T0 + 24 * H, T0 + 32 * H, 1);
    r.ok(Method::BookCrew, req, T0 + 9 * H);
    assert_eq!(r.m.duty().next_due(), Some(T0 + 24 * H));
    r.tick(T0 + 24 * H);
    assert_eq!(r.status("ARV1"), Status::Available);
}

/// The whole-team recommendation for two firearms places at `now`, positions as they are.
fn firearms_team(r: &Run, now: i64) -> team::Team {
    let group = RequirementGroup {
        agency: Agency::Police,
        unit_types: Vec::new(),
        capabilities: vec!["firearms".into()],
        count: 2,
        arrive_together: true,
    };
    team::recommend(r.m.units(), &Query::new(51.5, -0.12, now), &[group], None, false).unwrap()
}

#[test]
fn the_whole_team_takes_crew_skills_and_windows_under_the_eligibility_rules() {
    let mut r = arv();
    // IRV1 declares firearms, but its crew, on from 1h, holds none: the crew decides.
    r.unit("IRV1", &["firearms"], T0);
    r.person("E", &[("taser", None, None)], T0);
    let req = r.shift_request("SE", "E", T0 + H, T0 + 9 * H);
    r.ok(Method::UpsertShift, req, T0);
    let req = r.crew_request("C5", "IRV1", &["E"], T0 + H, T0 + 9 * H, 1);
    r.ok(Method::BookCrew, req, T0);
    // ARV3 declares nothing; a crew of one firearms officer comes on at 1h.
    r.unit("ARV3", &[], T0);
    r.person("F", &[("firearms", None, None)], T0);
    let req = r.shift_request("SF", "F", T0 + H, T0 + 9 * H);
    r.ok(Method::UpsertShift, req, T0);
    let req = r.crew_request("C6", "ARV3", &["F"], T0 + H, T0 + 9 * H, 1);
    r.ok(Method::BookCrew, req, T0);
    r.m.update_locations(&["IRV1", "ARV3"], &[51.501, 51.502], &[-0.12, -0.12], &[T0, T0], T0).unwrap();

    // Before 1h ARV3's crew window has not opened (off shift): one place short.
    r.ping_all(T0 + 60_000);
    let t = firearms_team(&r, T0 + 60_000);
    assert_eq!(t.members.iter().map(|m| m.candidate.unit_id.as_str()).collect::<Vec<_>>(), ["ARV1"]);
    assert_eq!(t.shortfalls.len(), 1);
    assert_eq!(t.shortfalls[0].missing, 1);

    // From 1h, after the tick: ARV3 has its officer's firearms; IRV1 still has none.
    r.tick(T0 + H);
    r.ping_all(T0 + H);
    let t = firearms_team(&r, T0 + H);
    let mut ids: Vec<&str> = t.members.iter().map(|m| m.candidate.unit_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["ARV1", "ARV3"]);
    assert!(t.shortfalls.is_empty());
    assert!(!r.caps("IRV1").contains(&"firearms".to_owned()));

    // Main's stale-position rule holds for rostered units too: ARV1 silent for 20 minutes.
    let later = T0 + H + 20 * 60_000;
    r.m.update_locations(&["ARV3"], &[51.502], &[-0.12], &[later], later).unwrap();
    let t = firearms_team(&r, later);
    assert_eq!(t.members.iter().map(|m| m.candidate.unit_id.as_str()).collect::<Vec<_>>(), ["ARV3"]);
    assert_eq!(t.shortfalls[0].reason, team::ShortfallReason::PositionsStale);
}

fn refused(r: &mut Run, method: Method, bytes: Vec<u8>, at: i64) -> CoreError {
    let before = snapshot::encode(&r.m);
    let out = r.send(method, bytes, at);
    assert_eq!(snapshot::encode(&r.m), before, "a refused {method:?} changed the state");
    match out {
        Outcome::Refused(e) => e,
        other => panic!("{method:?} was not refused: {other:?}"),
    }
}

#[test]
fn bad_rosters_are_refused_naming_the_record_and_change_nothing() {
    let mut r = arv();
    // Overlapping shifts of one person.
    let req = r.shift_request("SA-late", "A", T0 + 7 * H, T0 + 9 * H);
    let e = refused(&mut r, Method::UpsertShift, req, T0);
    assert!(matches!(&e, CoreError::RosterConflict { subject, .. } if subject == "shift/SA"), "{e}");
    // A skill expiring before it is valid.
    let req = r.person_request("D", &[("taser", Some(T0 + H), Some(T0))]);
    let e = refused(&mut r, Method::UpsertPerson, req, T0);
    assert!(matches!(&e, CoreError::InvalidFields(v) if v[0].0 == "person.skills[0].expiry"), "{e}");
    // A crew member not on shift.
    r.person("D", &[], T0);
    r.unit("ARV3", &[], T0);
    let req = r.crew_request("C9", "ARV3", &["D"], T0, T0 + H, 1);
    let e = refused(&mut r, Method::BookCrew, req, T0);
    assert!(matches!(&e, CoreError::RosterConflict { subject, .. } if subject == "person/D"), "{e}");
    // A person on two units at once.
    let req = r.crew_request("C9", "ARV3", &["A"], T0 + H, T0 + 2 * H, 1);
    let e = refused(&mut r, Method::BookCrew, req, T0);
    assert!(matches!(&e, CoreError::RosterConflict { subject, .. } if subject == "crew/C1"), "{e}");
    // A shift change that would leave a booked member off shift.
    let req = r.shift_request("SA", "A", T0, T0 + 4 * H);
    let e = refused(&mut r, Method::UpsertShift, req, T0);
    assert!(matches!(&e, CoreError::RosterConflict { subject, .. } if subject == "crew/C1"), "{e}");
    // Unknown people and units.
    let req = r.crew_request("C9", "ARV3", &["nobody"], T0, T0 + H, 1);
    let e = refused(&mut r, Method::BookCrew, req, T0);
    assert_eq!(e, CoreError::UnknownRecord { kind: "person", id: "nobody".into() });
    let req = r.crew_request("C9", "NOPE", &["D"], T0, T0 + H, 1);
    assert_eq!(refused(&mut r, Method::BookCrew, req, T0), CoreError::UnknownUnit("NOPE".into()));
}

#[test]
fn rebooking_a_crew_elsewhere_gives_the_old_unit_back_its_declared_attributes() {
    let mut r = arv();
    r.unit("ARV3", &[], T0);
    let req = r.crew_request("C1", "ARV3", &["A", "B"], T0, T0 + 8 * H, 2);
    r.ok(Method::BookCrew, req, T0 + 1);
    assert_eq!(r.caps("ARV1"), ["firearms", "taser"]);
    assert_eq!(r.caps("ARV3"), ["firearms", "advanced_driver"]);
    assert!(r.m.duty().rostered(r.m.units().slot("ARV1").unwrap()).is_none());
}

#[test]
fn get_person_lists_skills_shifts_and_crews() {
    let r = arv();
    let req = pb::GetPersonRequest { person_id: "A".into() }.encode_to_vec();
    let answer = pb::GetPersonResponse::decode(
        dispatch_engine::duty::wire::get_person(r.m.duty(), r.m.units(), &req).unwrap().as_slice(),
    )
    .unwrap();
    assert_eq!(answer.person.unwrap().skills.len(), 2);
    assert_eq!(answer.shifts[0].shift_id, "SA");
    assert_eq!(answer.crews[0].crew_id, "C1");
    let missing = pb::GetPersonRequest { person_id: "Z".into() }.encode_to_vec();
    assert!(matches!(
        dispatch_engine::duty::wire::get_person(r.m.duty(), r.m.units(), &missing),
        Err(CoreError::UnknownRecord { .. })
    ));
}

// ---------------------------------------------------------------------------- properties

/// One random roster step: people with random skills, shifts, crews, ticks, unit upserts.
#[derive(Debug, Clone)]
enum Step {
    Person(u8, Vec<(u8, Option<u8>, Option<u8>)>),
    Shift(u8, u8, u8, u8),
    Crew(u8, u8, Vec<u8>, u8, u8, u8),
    Unit(u8, Vec<u8>),
    Tick,
}

const CAPS: [&str; 4] = ["firearms", "taser", "dog", "lang_polish"];

fn step() -> impl Strategy<Value = Step> {
    let skill = (0u8..4, proptest::option::of(0u8..24), proptest::option::of(0u8..24));
    prop_oneof![
        (0u8..6, proptest::collection::vec(skill, 0..4)).prop_map(|(p, s)| Step::Person(p, s)),
        (0u8..8, 0u8..6, 0u8..24, 1u8..12).prop_map(|(id, p, s, l)| Step::Shift(id, p, s, l)),
        (0u8..6, 0u8..4, proptest::collection::vec(0u8..6, 1..4), 0u8..24, 1u8..8, 1u8..3)
            .prop_map(|(id, u, m, s, l, min)| Step::Crew(id, u, m, s, l, min)),
        (0u8..4, proptest::collection::vec(0u8..4, 0..3)).prop_map(|(u, c)| Step::Unit(u, c)),
        Just(Step::Tick),
    ]
}

fn play(steps: &[(Step, u8)]) -> Run {
    let mut r = Run::new();
    for u in 0..4 {
        r.unit(&format!("U{u}"), &[], T0);
        r.m.update_locations(&[format!("U{u}")], &[51.5 + 0.01 * f64::from(u)], &[-0.12], &[T0], T0).unwrap();
    }
    let mut now = T0;
    for (s, dt) in steps {
        now += i64::from(*dt) * H / 4;
        let at = |h: u8| T0 + i64::from(h) * H;
        match s {
            Step::Person(p, skills) => {
                let mut seen = Vec::new();
                let skills: Vec<(&str, Option<i64>, Option<i64>)> = skills
                    .iter()
                    .filter(|(c, _, _)| {
                        let fresh = !seen.contains(c);
                        seen.push(*c);
                        fresh
                    })
                    .map(|&(c, f, e)| (CAPS[c as usize], f.map(at), e.map(at)))
                    .collect();
                let req = r.person_request(&format!("P{p}"), &skills);
                r.send(Method::UpsertPerson, req, now);
            }
            Step::Shift(id, p, s, l) => {
                let req = r.shift_request(&format!("S{id}"), &format!("P{p}"), at(*s), at(s + l));
                r.send(Method::UpsertShift, req, now);
            }
            Step::Crew(id, u, members, s, l, min) => {
                let mut ms: Vec<String> = members.iter().map(|m| format!("P{m}")).collect();
                ms.sort();
                ms.dedup();
                let refs: Vec<&str> = ms.iter().map(String::as_str).collect();
                let req =
                    r.crew_request(&format!("C{id}"), &format!("U{u}"), &refs, at(*s), at(s + l), u32::from(*min));
                r.send(Method::BookCrew, req, now);
            }
            Step::Unit(u, caps) => {
                let names: Vec<&str> = caps.iter().map(|&c| CAPS[c as usize]).collect();
                r.unit(&format!("U{u}"), &names, now);
            }
            Step::Tick => {
                if r.m.tick_due(now) {
                    r.send(Method::Tick, Vec::new(), now);
                }
            }
        }
        // The ranking sees exactly what the table holds: search = brute force, with the
        // positions fresh so that eligibility turns on the crews' shifts and skills.
        r.ping_all(now);
        for required in CAPS {
            let mut q = Query::new(51.5, -0.12, now);
            q.required = vec![required.into()];
            q.k = 4;
            assert_eq!(r.m.units().rank(&q).unwrap(), r.m.units().rank_brute_force(&q).unwrap());
        }
    }
    r
}

/// The oracle for a rostered unit's capabilities: its crew on at `t`, counted the obvious way.
fn expected_caps(m: &Machine, unit: &str, t: i64) -> Option<Vec<String>> {
    let slot = m.units().slot(unit).unwrap();
    let r = m.duty().rostered(slot)?;
    let crew = r.crews.iter().map(|c| m.duty().crew(c).unwrap()).find(|c| c.start_ms <= t && t < c.end_ms);
    let Some(crew) = crew else { return Some(Vec::new()) };
    let mut out = Vec::new();
    for name in m.vocabulary().names() {
        let bit = m.vocabulary().encode(&[name]).unwrap().trailing_zeros();
        let holders = crew
            .members
            .iter()
            .filter(|p| m.duty().person(p).unwrap().skills.iter().any(|s| s.bit == bit && s.valid_at(t)))
            .count() as u32;
        let need = crew.minimums.iter().find(|(b, _)| *b == bit).map_or(1, |(_, n)| *n);
        if holders > 0 && holders >= need {
            out.push(name.clone());
        }
    }
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Replaying the journal from scratch, or from a snapshot taken midway, gives the same
    /// state byte for byte; after a tick, every rostered unit holds what its crew gives it.
    #[test]
    fn replay_and_snapshots_agree_with_rosters(steps in proptest::collection::vec((step(), 0u8..6), 1..40), cut in any::<proptest::sample::Index>()) {
        let mut live = play(&steps);
        let end = live.m.clock_ms() + 30 * H;
        if live.m.tick_due(end) {
            live.send(Method::Tick, Vec::new(), end);
        }
        for u in 0..4 {
            let unit = format!("U{u}");
            if let Some(expected) = expected_caps(&live.m, &unit, live.m.clock_ms()) {
                prop_assert_eq!(live.caps(&unit), expected, "unit {}", unit);
            }
        }
        let bytes = snapshot::encode(&live.m);
        let mut replayed = machine();
        for (seq, method, payload, response) in &live.journal {
            replayed.replay(*seq, method.name(), payload, response).unwrap();
        }
        // Positions are not journaled: give the replica the same pings before comparing.
        let pinged = live.pinged_ms;
        for u in 0..4 {
            replayed.update_locations(&[format!("U{u}")], &[51.5 + 0.01 * f64::from(u)], &[-0.12], &[pinged], pinged).unwrap();
        }
        prop_assert_eq!(snapshot::encode(&replayed), bytes.clone());
        // From a snapshot taken midway (by replaying a prefix), then the rest.
        let k = cut.index(live.journal.len() + 1);
        let mut prefix = machine();
        for (seq, method, payload, response) in &live.journal[..k] {
            prefix.replay(*seq, method.name(), payload, response).unwrap();
        }
        let mut restored = snapshot::decode(&snapshot::encode(&prefix), UnitStore::new(RankConfig::default(), 0.01).unwrap(), 10_000).unwrap();
        for (seq, method, payload, response) in &live.journal[k..] {
            restored.replay(*seq, method.name(), payload, response).unwrap();
        }
        for u in 0..4 {
            restored.update_locations(&[format!("U{u}")], &[51.5 + 0.01 * f64::from(u)], &[-0.12], &[pinged], pinged).unwrap();
        }
        prop_assert_eq!(snapshot::encode(&restored), bytes);
    }
}
