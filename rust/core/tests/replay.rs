//! Replay equality: random command sequences applied live to a machine, journaled as the
//! server journals them, then
//! (a) replayed from scratch into a fresh machine: every entry applies with the journaled
//!     answer and the snapshot bytes equal the live machine's;
//! (b) replayed from a snapshot taken at a random point of the live run: the same bytes and
//!     digest again.
//! Along the way every outcome is checked against the journal (a refused or repeated
//! command changes nothing; a request_id is never applied twice inside the retention
//! window) and the machine's invariants hold after every step.
//!
//! The sequences collide on purpose: five unit ids, five incident ids (two of them the ids
//! the server allocates), retries of earlier request_ids with the same, re-encoded or a
//! different payload, clocks that go back or jump past the 24 h retention, and hostile
//! values in every field.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use common::{Cmd, Entry, Group, PlanSpec, Seen};
use dispatch_engine::command::Method;
use dispatch_engine::snapshot;
use dispatch_engine::state::requests::RETENTION_MS;
use dispatch_engine::state::{Event, Outcome};
use dispatch_engine::time::{MAX_TIME_MS, MIN_TIME_MS};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestError, TestRunner};

/// When a step's command is applied, relative to the running clock.
#[derive(Debug, Clone)]
enum When {
    Same,
    Later(i64),
    /// A wall clock stepped back.
    Back(i64),
    /// Past the retention window.
    Jump(i64),
    /// This step only: a time outside 2000..2100 (refused Unavailable unless a retry).
    Invalid(i64),
}

#[derive(Debug, Clone)]
enum Retry {
    /// The same bytes.
    Same,
    /// The same request in other bytes (an unknown field appended).
    Reencoded,
    /// Another request with the same request_id.
    Different(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Send(Cmd),
    /// Sends an earlier step's command again.
    Retry(Index, Retry),
}

#[derive(Debug, Clone)]
struct Case {
    request_capacity: usize,
    steps: Vec<(Op, When)>,
    /// The live run is snapshotted before this step (modulo steps + 1).
    snapshot_at: Index,
}

fn pick(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![30 => select(pool).prop_map(str::to_owned), 1 => select(common::hostile_strings())].boxed()
}

fn enum_value(max: i32) -> BoxedStrategy<i32> {
    prop_oneof![30 => 1..=max, 1 => select(common::HOSTILE_ENUMS)].boxed()
}

fn coordinate(lo: f64, hi: f64) -> BoxedStrategy<f64> {
    prop_oneof![30 => lo..hi, 1 => select(common::HOSTILE_F64)].boxed()
}

fn location() -> BoxedStrategy<Option<(f64, f64)>> {
    prop_oneof![15 => (coordinate(51.3, 51.7), coordinate(-0.5, 0.3)).prop_map(Some), 1 => Just(None)].boxed()
}

fn shift_bound() -> BoxedStrategy<Option<(i64, i32)>> {
    let t0 = common::T0 / 1000;
    prop_oneof![
        3 => Just(None),
        3 => (t0 - 86_400..t0 + 3 * 86_400).prop_map(|s| Some((s, 0))),
        1 => select(common::HOSTILE_TIMESTAMPS).prop_map(Some),
    ]
    .boxed()
}

fn group() -> BoxedStrategy<Group> {
    (
        enum_value(3),
        prop::collection::vec(pick(common::UNIT_TYPES), 0..2),
        prop::collection::vec(pick(common::CAPS), 0..2),
        prop_oneof![10 => 1u32..3, 1 => select(common::HOSTILE_COUNTS)],
    )
        .prop_map(|(agency, unit_types, capabilities, count)| Group { agency, unit_types, capabilities, count })
        .boxed()
}

fn groups() -> BoxedStrategy<Vec<Group>> {
    prop_oneof![
        20 => prop::collection::vec(group(), 1..3),
        // Empty: the response plan in force decides (or the command is refused).
        6 => Just(Vec::new()),
        1 => prop::collection::vec(group(), 17..=17),
    ]
    .boxed()
}

/// Response plans over the incident types the commands use: selectors that overlap and
/// windows that straddle midnight, so resolution, ties and refusals all occur.
fn plans() -> BoxedStrategy<Vec<PlanSpec>> {
    let window = prop_oneof![
        3 => Just(None),
        1 => Just(Some((1320, 360))),
        1 => Just(Some((360, 1320))),
        1 => Just(Some((600, 660))),
        1 => Just(Some((700, 700))),
    ];
    let plan = (
        select(&["p1", "p2", "p3", "p4"][..]),
        pick(&["burglary", "rtc"]),
        prop_oneof![3 => Just(0), 1 => 1..=2, 1 => select(common::HOSTILE_ENUMS)],
        prop_oneof![3 => Just(String::new()), 1 => pick(common::AREAS)],
        window,
        prop::collection::vec(group(), 1..3),
    )
        .prop_map(|(name, incident_type, grade, area, window, groups)| PlanSpec {
            name: name.to_owned(),
            incident_type,
            grade,
            area,
            window,
            groups,
        });
    prop::collection::vec(plan, 0..4).boxed()
}

/// Mostly fresh request_ids; some shared by unrelated commands; some hostile.
fn request_id() -> BoxedStrategy<String> {
    prop_oneof![
        16 => (0..100_000u32).prop_map(|n| format!("r{n}")),
        2 => select(&["dup-a", "dup-b"][..]).prop_map(str::to_owned),
        1 => select(common::hostile_strings()),
    ]
    .boxed()
}

fn cmd() -> BoxedStrategy<Cmd> {
    let upsert = (
        request_id(),
        pick(common::UNIT_IDS),
        enum_value(3),
        pick(common::UNIT_TYPES),
        prop::collection::vec(pick(common::CAPS), 0..3),
        prop_oneof![Just(String::new()), pick(common::AREAS)],
        shift_bound(),
        shift_bound(),
    )
        .prop_map(|(rid, unit_id, agency, unit_type, caps, area, shift_start, shift_end)| Cmd::Upsert {
            rid,
            unit_id,
            agency,
            unit_type,
            caps,
            area,
            shift_start,
            shift_end,
        });
    let status = (request_id(), pick(common::UNIT_IDS), enum_value(7)).prop_map(|(rid, unit_id, status)| Cmd::Status {
        rid,
        unit_id,
        status,
    });
    let create = (
        request_id(),
        prop_oneof![2 => Just(String::new()), 3 => pick(common::INCIDENT_IDS)],
        enum_value(4),
        pick(&["burglary", "rtc"]),
        location(),
        prop_oneof![Just(String::new()), pick(common::AREAS)],
        groups(),
    )
        .prop_map(|(rid, incident_id, grade, incident_type, location, area, groups)| Cmd::Create {
            rid,
            incident_id,
            grade,
            incident_type,
            location,
            area,
            groups,
        });
    let update = (
        request_id(),
        pick(common::INCIDENT_IDS),
        prop::option::of(enum_value(4)),
        prop::option::of(pick(&["burglary", "rtc"])),
        prop_oneof![2 => Just(None), 1 => location()],
        prop::option::of(prop_oneof![Just(String::new()), pick(common::AREAS)]),
        prop::option::of(groups()),
    )
        .prop_map(|(rid, incident_id, grade, incident_type, location, area, groups)| Cmd::Update {
            rid,
            incident_id,
            grade,
            incident_type,
            location,
            area,
            groups,
        });
    let close =
        (request_id(), pick(common::INCIDENT_IDS)).prop_map(|(rid, incident_id)| Cmd::Close { rid, incident_id });
    let assign = (
        request_id(),
        pick(common::INCIDENT_IDS),
        prop_oneof![20 => prop::collection::vec(pick(common::UNIT_IDS), 1..=3), 1 => Just(Vec::new())],
        any::<bool>(),
    )
        .prop_map(|(rid, incident_id, unit_ids, divert)| Cmd::Assign { rid, incident_id, unit_ids, divert });
    let replace_plans = (request_id(), plans()).prop_map(|(rid, plans)| Cmd::Plans { rid, plans });
    let raw = (select(Method::ALL), prop::collection::vec(any::<u8>(), 0..40))
        .prop_map(|(method, bytes)| Cmd::Raw { method, bytes });
    prop_oneof![
        4 => upsert,
        3 => status,
        3 => create,
        1 => update,
        1 => close,
        4 => assign,
        1 => Just(Cmd::Tick),
        1 => replace_plans,
        1 => raw,
    ]
    .boxed()
}

fn when() -> BoxedStrategy<When> {
    prop_oneof![
        2 => Just(When::Same),
        12 => (1..120_000i64).prop_map(When::Later),
        2 => (1..2 * common::HOUR).prop_map(When::Back),
        1 => (RETENTION_MS + 1..RETENTION_MS + 6 * common::HOUR).prop_map(When::Jump),
        1 => select(&[MIN_TIME_MS - 1, MAX_TIME_MS, 0, i64::MIN, i64::MAX][..]).prop_map(When::Invalid),
    ]
    .boxed()
}

fn op() -> BoxedStrategy<Op> {
    let retry = prop_oneof![
        3 => Just(Retry::Same),
        1 => Just(Retry::Reencoded),
        2 => any::<u8>().prop_map(Retry::Different),
    ];
    prop_oneof![5 => cmd().prop_map(Op::Send), 1 => (any::<Index>(), retry).prop_map(|(i, r)| Op::Retry(i, r))].boxed()
}

fn case() -> impl Strategy<Value = Case> {
    (select(&[1usize, 2, 3, 100_000][..]), prop::collection::vec((op(), when()), 1..150), any::<Index>())
        .prop_map(|(request_capacity, steps, snapshot_at)| Case { request_capacity, steps, snapshot_at })
}

/// How often each path ran, over all cases: the property is only as good as its coverage.
#[derive(Default)]
struct Coverage {
    applied: AtomicUsize,
    repeated: AtomicUsize,
    refused: AtomicUsize,
    journal_lookups: AtomicUsize,
    expired: AtomicUsize,
    reapplied_after_expiry: AtomicUsize,
    first_assigned: AtomicUsize,
    first_on_scene: AtomicUsize,
    released: AtomicUsize,
}

fn run(case: &Case, cov: &Coverage) -> Result<(), String> {
    let capacity = case.request_capacity;
    let mut a = common::fresh_machine(capacity);
    let mut journal: Vec<Entry> = Vec::new();
    let mut sent: Vec<Cmd> = Vec::new();
    let mut now = common::T0;
    let k = case.snapshot_at.index(case.steps.len() + 1);
    let mut snap: Option<(Vec<u8>, usize)> = None;
    for (i, (op, when)) in case.steps.iter().enumerate() {
        if i == k {
            snap = Some((snapshot::encode(&a), journal.len()));
        }
        let time = match *when {
            When::Same => now,
            When::Later(d) | When::Jump(d) => {
                now += d;
                now
            }
            When::Back(d) => {
                now -= d;
                now
            }
            When::Invalid(t) => t,
        };
        let (cmd, bytes) = match op {
            Op::Send(c) => (c.clone(), c.encode()),
            Op::Retry(_, _) if sent.is_empty() => (Cmd::Tick, Vec::new()),
            Op::Retry(ix, how) => {
                let first = &sent[ix.index(sent.len())];
                match how {
                    Retry::Same => (first.clone(), first.encode()),
                    Retry::Reencoded => (first.clone(), first.encode_with_unknown_field()),
                    Retry::Different(t) => {
                        let c = first.tweak(*t);
                        let b = c.encode();
                        (c, b)
                    }
                }
            }
        };
        let method = cmd.method();
        let before = snapshot::digest(&a);
        let had = cmd.request_id().is_some_and(|r| journal.iter().any(|e| e.method == method && e.request_id == r));
        let (outcome, looked_up) = common::execute(&mut a, &journal, method, &bytes, time);
        cov.journal_lookups.fetch_add(usize::from(looked_up), Relaxed);
        if let Outcome::Applied { events, release, .. } = &outcome {
            for e in events {
                match e {
                    Event::FirstAssigned { .. } => _ = cov.first_assigned.fetch_add(1, Relaxed),
                    Event::FirstOnScene { .. } => _ = cov.first_on_scene.fetch_add(1, Relaxed),
                    Event::RequestsExpired { .. } => _ = cov.expired.fetch_add(1, Relaxed),
                    Event::Diverted { .. } | Event::AckOverdue { .. } | Event::CrewOff { .. } => {}
                }
            }
            cov.released.fetch_add(release.len(), Relaxed);
        }
        let seen = common::check_outcome(&a, &mut journal, method, &bytes, time, outcome, before)
            .map_err(|e| format!("step {i} ({cmd:?} at {time}): {e}"))?;
        match seen {
            Seen::Applied { .. } => {
                cov.applied.fetch_add(1, Relaxed);
                cov.reapplied_after_expiry.fetch_add(usize::from(had), Relaxed);
            }
            Seen::Repeated { stale_positions: true, .. } => {
                return Err(format!("step {i} ({cmd:?}): a retry was answered other than the first time"));
            }
            Seen::Repeated { .. } => _ = cov.repeated.fetch_add(1, Relaxed),
            Seen::Refused(_) => _ = cov.refused.fetch_add(1, Relaxed),
        }
        a.check_invariants().map_err(|e| format!("step {i} ({cmd:?}): invariant: {e}"))?;
        sent.push(cmd);
    }
    let live = snapshot::encode(&a);

    // (a) From scratch.
    let mut b = common::fresh_machine(capacity);
    let differ = common::replay(&mut b, &journal)?;
    if let Some(e) = differ.first() {
        return Err(format!("replay from scratch answered entry {} ({}) differently", e.sequence, e.method.name()));
    }
    let replayed = snapshot::encode(&b);
    if replayed != live {
        return Err(format!(
            "replay from scratch differs from the live state: {}",
            common::first_difference(&live, &replayed)
        ));
    }

    // (b) From the snapshot taken at step k.
    let (bytes, from) = snap.unwrap_or_else(|| (live.clone(), journal.len()));
    let mut c = snapshot::decode(&bytes, common::empty_store(), capacity).map_err(|e| format!("decode: {e}"))?;
    c.ack_timeouts = common::ACK_TIMEOUTS;
    if snapshot::encode(&c) != bytes {
        return Err("a snapshot decoded and encoded again is not the same bytes".into());
    }
    let differ = common::replay(&mut c, &journal[from..])?;
    if let Some(e) = differ.first() {
        return Err(format!("replay from the snapshot at step {k} answered entry {} differently", e.sequence));
    }
    let restored = snapshot::encode(&c);
    if restored != live || snapshot::digest(&c) != snapshot::digest(&a) {
        return Err(format!(
            "snapshot at step {k} + {} entries differs from the live state: {}",
            journal.len() - from,
            common::first_difference(&live, &restored)
        ));
    }

    // The final state survives a snapshot round trip, too.
    let round = snapshot::decode(&live, common::empty_store(), capacity).map_err(|e| format!("decode: {e}"))?;
    if snapshot::encode(&round) != live {
        return Err("the final snapshot does not round-trip".into());
    }
    Ok(())
}

#[test]
fn replay_equality() {
    let mut config = Config::with_cases(256);
    config.source_file = Some(file!());
    let mut runner = TestRunner::new(config);
    let cov = Coverage::default();
    let result = runner.run(&case(), |c| run(&c, &cov).map_err(TestCaseError::fail));
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!("replay equality fails: {reason}\nminimal case: {case:#?}"),
        Err(e) => panic!("{e}"),
    }
    let n = |x: &AtomicUsize| x.load(Relaxed);
    eprintln!(
        "replay_equality: applied {} repeated {} refused {} journal lookups {} expiring ticks {} re-applied after expiry {} \
         first assigned {} first on scene {} units released {}",
        n(&cov.applied),
        n(&cov.repeated),
        n(&cov.refused),
        n(&cov.journal_lookups),
        n(&cov.expired),
        n(&cov.reapplied_after_expiry),
        n(&cov.first_assigned),
        n(&cov.first_on_scene),
        n(&cov.released)
    );
    // Every path the property is about must have run (shrinking runs count too).
    for (what, x) in [
        ("applied", &cov.applied),
        ("repeated", &cov.repeated),
        ("refused", &cov.refused),
        ("journal lookups", &cov.journal_lookups),
        ("expiring ticks", &cov.expired),
        ("first assignments", &cov.first_assigned),
        ("arrivals on scene", &cov.first_on_scene),
        ("releases", &cov.released),
    ] {
        assert!(n(x) > 0, "no case exercised {what}");
    }
}
