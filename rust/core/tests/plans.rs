//! Response plans through `execute`: CreateIncident without requirements takes the plan in
//! force at the command's time, a plan change mid-journal changes only later incidents, and
//! replay (from scratch and from a snapshot taken between the changes) rebuilds exactly
//! the same state.

mod common;

use common::{Entry, Group, PlanSpec};
use dispatch_engine::command::Method;
use dispatch_engine::snapshot;
use dispatch_engine::state::{JournalAnswer, Machine, Outcome};
use dispatch_engine::wire::pb;
use dispatch_engine::CoreError;
use prost::Message;

/// 2025-01-15 12:00 UTC (GMT: local time equals UTC).
const NOON: i64 = 1_736_942_400_000;
const HOUR: i64 = 3_600_000;

fn police(count: u32) -> Group {
    Group { agency: 1, unit_types: vec![], capabilities: vec![], count }
}

fn plan(name: &str, window: Option<(u32, u32)>, count: u32) -> PlanSpec {
    PlanSpec {
        name: name.into(),
        incident_type: "burglary".into(),
        grade: 0,
        area: String::new(),
        window,
        groups: vec![police(count)],
    }
}

fn replace(rid: &str, plans: &[PlanSpec]) -> Vec<u8> {
    pb::ReplaceResponsePlansRequest {
        request_id: rid.into(),
        plans: plans.iter().map(PlanSpec::pb).collect(),
        source: "plans.toml".into(),
    }
    .encode_to_vec()
}

fn create(rid: &str, incident_type: &str) -> Vec<u8> {
    pb::CreateIncidentRequest {
        request_id: rid.into(),
        grade: 2,
        incident_type: incident_type.into(),
        location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Runs commands as the server does, journaling what applied.
struct Live {
    m: Machine,
    journal: Vec<Entry>,
}

impl Live {
    fn run(&mut self, method: Method, request: Vec<u8>, time_ms: i64) -> Result<Vec<u8>, CoreError> {
        match self.m.execute(method, &request, time_ms, JournalAnswer::Unchecked) {
            Outcome::Applied { sequence, request_id, request, response, .. } => {
                self.journal.push(Entry {
                    sequence,
                    method,
                    request_id,
                    payload: dispatch_engine::record::encode(time_ms, &request),
                    response: response.clone(),
                    clock_ms: self.m.clock_ms(),
                });
                Ok(response)
            }
            Outcome::Refused(e) => Err(e),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn incident(&mut self, rid: &str, time_ms: i64) -> Result<pb::Incident, CoreError> {
        let answer = self.run(Method::CreateIncident, create(rid, "burglary"), time_ms)?;
        Ok(pb::CreateIncidentResponse::decode(answer.as_slice()).unwrap().incident.unwrap())
    }
}

#[test]
fn incidents_take_the_plan_in_force_and_replay_agrees() {
    let mut live = Live { m: common::fresh_machine(1000), journal: vec![] };
    // No plan yet: refused, as an empty list always was, naming the field.
    let e = live.incident("c0", NOON).unwrap_err();
    assert!(e.to_string().starts_with("requirements: is empty and no response plan matches"), "{e}");

    live.run(
        Method::ReplaceResponsePlans,
        replace("p1", &[plan("day", None, 1), plan("night", Some((1320, 360)), 2)]),
        NOON,
    )
    .unwrap();
    let day = live.incident("c1", NOON).unwrap();
    assert_eq!((day.response_plan.as_str(), day.requirements[0].count), ("day", 1));
    let night = live.incident("c2", NOON + 10 * HOUR).unwrap();
    assert_eq!((night.response_plan.as_str(), night.requirements[0].count), ("night", 2));
    let snap_between = snapshot::encode(&live.m);

    // Explicit requirements still win over any plan.
    let explicit = pb::CreateIncidentRequest {
        requirements: vec![police(5).pb()],
        ..pb::CreateIncidentRequest::decode(create("c3", "burglary").as_slice()).unwrap()
    };
    let a = live.run(Method::CreateIncident, explicit.encode_to_vec(), NOON + 11 * HOUR).unwrap();
    let a = pb::CreateIncidentResponse::decode(a.as_slice()).unwrap().incident.unwrap();
    assert_eq!((a.response_plan.as_str(), a.requirements[0].count), ("", 5));

    // Mid-journal change: later incidents get the new plan, earlier ones keep theirs.
    live.run(Method::ReplaceResponsePlans, replace("p2", &[plan("day", None, 3)]), NOON + 12 * HOUR).unwrap();
    let later = live.incident("c4", NOON + 22 * HOUR).unwrap();
    assert_eq!((later.response_plan.as_str(), later.requirements[0].count), ("day", 3));
    let kept = live.m.incidents().get(&night.incident_id).unwrap();
    assert_eq!((kept.response_plan.as_str(), kept.requirements[0].count), ("night", 2));

    // A refused install changes nothing.
    let tie = replace("p3", &[plan("a", None, 1), plan("b", None, 1)]);
    let before = snapshot::encode(&live.m);
    let e = live.run(Method::ReplaceResponsePlans, tie, NOON + 23 * HOUR).unwrap_err();
    assert!(e.to_string().contains("plans[1]") && e.to_string().contains("equally specific"), "{e}");
    assert_eq!(snapshot::encode(&live.m), before);

    let want = snapshot::encode(&live.m);
    let (scratch, differ) = common::restore(None, &live.journal, 1000).unwrap();
    assert!(differ.is_empty());
    assert_eq!(snapshot::encode(&scratch), want, "replay from scratch");
    let (from_snap, differ) = common::restore(Some(&snap_between), &live.journal, 1000).unwrap();
    assert!(differ.is_empty());
    assert_eq!(snapshot::encode(&from_snap), want, "replay from the snapshot between the changes");
    assert_eq!(from_snap.response_plans().plans().len(), 1);
    assert_eq!(from_snap.response_plans().installed_ms, Some(NOON + 12 * HOUR));
}

#[test]
fn a_plan_request_with_bad_enums_is_refused_naming_the_field() {
    let mut m = common::fresh_machine(10);
    let mut p = plan("x", Some((1440, 10)), 1).pb();
    p.grade = 9;
    p.groups[0].agency = 0;
    let request = pb::ReplaceResponsePlansRequest { request_id: "r".into(), plans: vec![p], source: String::new() };
    let Outcome::Refused(CoreError::InvalidFields(v)) =
        m.execute(Method::ReplaceResponsePlans, &request.encode_to_vec(), NOON, JournalAnswer::Unchecked)
    else {
        panic!("not refused")
    };
    let fields: Vec<&str> = v.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["plans[0].grade", "plans[0].time_window.start_minute", "plans[0].groups[0].agency"]);
    assert_eq!(m.sequence(), 0);
}
