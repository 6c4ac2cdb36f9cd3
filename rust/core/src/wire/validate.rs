//! Field-level validation of `dispatch.v1` requests: every limit the proto documents.
//!
//! Each check collects every violation of a request before the caller refuses it, so a
//! client fixing its input sees all of them at once. Field names are the proto paths the
//! client wrote (`ad_hoc.location.lat`, `requirements[1].capabilities[0]`,
//! `queries[3].k`). State checks (does the unit exist, is the transition allowed) are the
//! state machine's.
//!
//! The field names and the texts are those of the Python layer's
//! `dispatch_core.api.validation`, which clients and tests already rely on: values appear
//! as Python prints them (`'dogg'`, `nan`, `91.0`).

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::caps::Vocabulary;
use crate::error::CoreError;
use crate::plans::{MAX_PLANS, MINUTES_PER_DAY};
use crate::time;
use crate::types::{Agency, Grade, IncidentStatus, Status};
use crate::wire::limits::{
    DEFAULT_PAGE_SIZE, MAX_ASSIGN, MAX_BATCH_QUERIES, MAX_GROUPS, MAX_GROUP_COUNT, MAX_GROUP_NAMES, MAX_K,
    MAX_LOCATION_BATCH, MAX_PAGE_SIZE, MAX_UNIT_CAPABILITIES, MAX_VIOLATIONS,
};
use crate::wire::{ident, pb, token};

/// (field, what is wrong with it), in the order found.
pub type Violations = Vec<(String, String)>;

// ------------------------------------------------------------------------------ helpers

/// An enum of the proto: whether a number is one of its values, and its Python class name.
#[derive(Clone, Copy)]
enum Kind {
    Agency,
    UnitStatus,
    Grade,
    IncidentStatus,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Agency => "Agency",
            Kind::UnitStatus => "UnitStatus",
            Kind::Grade => "Grade",
            Kind::IncidentStatus => "IncidentStatus",
        }
    }

    fn is_valid(self, value: i32) -> bool {
        match self {
            Kind::Agency => Agency::from_i32(value, "").is_ok(),
            Kind::UnitStatus => Status::from_i32(value, "").is_ok(),
            Kind::Grade => Grade::from_i32(value, "").is_ok(),
            Kind::IncidentStatus => IncidentStatus::from_i32(value, "").is_ok(),
        }
    }
}

/// Records a violation; past [`MAX_VIOLATIONS`] only one more, saying there are more. The
/// violations travel back in the status trailer (the message and the BadRequest details),
/// which clients cap at 16 KiB by default: 500 bad unit types in one plan would otherwise
/// reach the client as RESOURCE_EXHAUSTED with nothing it can read.
pub(crate) fn push(v: &mut Violations, field: impl Into<String>, reason: impl Into<String>) {
    match v.len().cmp(&MAX_VIOLATIONS) {
        std::cmp::Ordering::Less => v.push((field.into(), reason.into())),
        std::cmp::Ordering::Equal => v.push((
            "request".to_owned(),
            format!("has more violations than the {MAX_VIOLATIONS} listed; fix these and send it again"),
        )),
        std::cmp::Ordering::Greater => {}
    }
}

/// An identifier: the grammar of [`ident`]; empty only when not `required` (empty is
/// "none" there).
pub(crate) fn id(v: &mut Violations, field: &str, value: &str, required: bool) {
    match ident::admit(value) {
        Ok(()) => {}
        Err(ident::Refusal::Empty) if !required => {}
        Err(refusal) => push(v, field, refusal.to_string()),
    }
}

fn ids(v: &mut Violations, field: &str, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        id(v, &format!("{field}[{i}]"), value, true);
    }
}

fn enum_value(v: &mut Violations, field: &str, value: i32, kind: Kind) {
    if !kind.is_valid(value) {
        let what =
            if value == 0 { "must be set".to_owned() } else { format!("{value} is not a known {}", kind.name()) };
        push(v, field, what);
    }
}

fn enum_values(v: &mut Violations, field: &str, values: &[i32], kind: Kind) {
    for (i, &value) in values.iter().enumerate() {
        enum_value(v, &format!("{field}[{i}]"), value, kind);
    }
}

fn location(v: &mut Violations, field: &str, location: Option<&pb::Location>) {
    let Some(l) = location else {
        push(v, field, "must be set");
        return;
    };
    // Written so that NaN fails too: `contains` is false for NaN.
    if !(-90.0..=90.0).contains(&l.lat) {
        push(v, format!("{field}.lat"), format!("{} is not a latitude in [-90, 90]", py_float(l.lat)));
    }
    if !(-180.0..=180.0).contains(&l.lon) {
        push(v, format!("{field}.lon"), format!("{} is not a longitude in [-180, 180]", py_float(l.lon)));
    }
}

pub(crate) fn capabilities(v: &mut Violations, field: &str, names: &[String], vocab: &Vocabulary) {
    for (i, name) in names.iter().enumerate() {
        if vocab.encode(&[name]).is_err() {
            push(v, format!("{field}[{i}]"), format!("{} is not in the capability vocabulary", py_repr(name)));
        }
    }
}

fn groups(v: &mut Violations, field: &str, groups: &[pb::RequirementGroup], vocab: &Vocabulary) {
    groups_of(v, field, groups, vocab, false);
}

/// Requirement groups; `may_be_empty` where an empty list means "from the response plan".
fn groups_of(v: &mut Violations, field: &str, groups: &[pb::RequirementGroup], vocab: &Vocabulary, may_be_empty: bool) {
    if groups.is_empty() {
        if may_be_empty {
            return;
        }
        push(v, field, "needs at least one requirement group");
    } else if groups.len() > MAX_GROUPS {
        push(v, field, format!("has {} groups; the limit is {MAX_GROUPS}", groups.len()));
        return;
    }
    for (i, group) in groups.iter().enumerate() {
        let at = format!("{field}[{i}]");
        enum_value(v, &format!("{at}.agency"), group.agency, Kind::Agency);
        if group.unit_types.len() > MAX_GROUP_NAMES {
            push(v, format!("{at}.unit_types"), format!("names more than {MAX_GROUP_NAMES} types"));
        } else {
            ids(v, &format!("{at}.unit_types"), &group.unit_types);
        }
        if group.capabilities.len() > MAX_GROUP_NAMES {
            push(v, format!("{at}.capabilities"), format!("names more than {MAX_GROUP_NAMES}"));
        } else {
            capabilities(v, &format!("{at}.capabilities"), &group.capabilities, vocab);
        }
        if !(1..=MAX_GROUP_COUNT).contains(&group.count) {
            push(v, format!("{at}.count"), format!("{} is outside [1, {MAX_GROUP_COUNT}]", group.count));
        }
    }
}

/// The page size (the default filled in) and the id the page starts after.
fn page(v: &mut Violations, listing: token::Listing, page_size: i32, page_token: &str) -> (usize, String) {
    let size = match usize::try_from(page_size) {
        Ok(n) if n <= MAX_PAGE_SIZE => n,
        _ => {
            push(v, "page_size", format!("{page_size} is outside [0, {MAX_PAGE_SIZE}]"));
            0
        }
    };
    let mut after = String::new();
    if !page_token.is_empty() {
        match token::decode(listing, page_token) {
            Some(id) => after = id,
            None => push(v, "page_token", "is not a token this server issued"),
        }
    }
    (if size == 0 { DEFAULT_PAGE_SIZE } else { size }, after)
}

/// A shift bound: a valid Timestamp in the range [`time::in_range`] accepts. Its Unix ms
/// when it is one.
pub(crate) fn shift_bound(v: &mut Violations, field: &str, ts: &prost_types::Timestamp) -> Option<i64> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        push(v, field, format!("nanos {} is outside [0, 999999999]", ts.nanos));
        return None;
    }
    // Only an overflow makes this None; the saturated value is refused by `check` as well.
    let ms = time::from_seconds_nanos(ts.seconds, ts.nanos).unwrap_or(if ts.seconds < 0 { i64::MIN } else { i64::MAX });
    match time::check(field, ms) {
        Ok(()) => Some(ms),
        Err(CoreError::InvalidArgument { field, reason }) => {
            push(v, field, reason);
            None
        }
        Err(other) => {
            push(v, field, other.to_string());
            None
        }
    }
}

/// `x` as Python's `str(float)` prints it: `nan`, `inf`, `91.0`, `1e-05`, `1e+16`.
fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Rust's `{:e}` is the shortest round-trip digits, as Python's repr; only the layout
    // differs: Python writes positional notation for exponents in [-4, 16).
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` writes an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` writes an integer exponent");
    if (-4..16).contains(&exp) {
        let mut fixed = format!("{x}");
        if !fixed.contains('.') {
            fixed.push_str(".0");
        }
        fixed
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs())
    }
}

/// Whether Python's `str.isprintable` holds for a non-ASCII character, for the characters
/// that matter in practice: C1 controls, format characters, separators other than the
/// space, private use and noncharacters are not printable. (Unassigned code points, which
/// Python also escapes, are printed as they are.)
fn py_printable(c: char) -> bool {
    let cp = u32::from(c);
    !matches!(cp,
        0x80..=0xA0 | 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x8E2 | 0x1680 | 0x180E
        | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x2064 | 0x2066..=0x206F | 0x3000
        | 0xE000..=0xF8FF | 0xFDD0..=0xFDEF | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F | 0xF0000..=0x10FFFF)
        && cp & 0xFFFE != 0xFFFE
}

/// `s` as Python's `repr(str)` prints it: single quotes unless only double quotes avoid
/// escaping, backslash escapes for controls and other unprintable characters.
pub(crate) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c < ' ' || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_ascii() || py_printable(c) => out.push(c),
            c => {
                let cp = u32::from(c);
                let _ = match cp {
                    0..=0xFF => write!(out, "\\x{cp:02x}"),
                    0x100..=0xFFFF => write!(out, "\\u{cp:04x}"),
                    _ => write!(out, "\\U{cp:08x}"),
                };
            }
        }
    }
    out.push(quote);
    out
}

// -------------------------------------------------------------------------------- units

pub fn upsert_unit(r: &pb::UpsertUnitRequest, vocab: &Vocabulary) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    let Some(spec) = &r.unit else {
        push(&mut v, "unit", "must be set");
        return v;
    };
    id(&mut v, "unit.unit_id", &spec.unit_id, true);
    enum_value(&mut v, "unit.agency", spec.agency, Kind::Agency);
    id(&mut v, "unit.unit_type", &spec.unit_type, true);
    if spec.capabilities.len() > MAX_UNIT_CAPABILITIES {
        push(&mut v, "unit.capabilities", format!("has more than {MAX_UNIT_CAPABILITIES} entries"));
    } else {
        capabilities(&mut v, "unit.capabilities", &spec.capabilities, vocab);
    }
    id(&mut v, "unit.home_area", &spec.home_area, false);
    let start = spec.shift_start.as_ref().and_then(|ts| shift_bound(&mut v, "unit.shift_start", ts));
    let end = spec.shift_end.as_ref().and_then(|ts| shift_bound(&mut v, "unit.shift_end", ts));
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            push(&mut v, "unit.shift_end", "must be after unit.shift_start");
        }
    }
    v
}

pub fn set_unit_status(r: &pb::SetUnitStatusRequest) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    id(&mut v, "unit_id", &r.unit_id, true);
    enum_value(&mut v, "status", r.status, Kind::UnitStatus);
    v
}

// ---------------------------------------------------------------------------- incidents

pub fn create_incident(r: &pb::CreateIncidentRequest, vocab: &Vocabulary) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    id(&mut v, "incident_id", &r.incident_id, false);
    enum_value(&mut v, "grade", r.grade, Kind::Grade);
    id(&mut v, "incident_type", &r.incident_type, true);
    location(&mut v, "location", r.location.as_ref());
    id(&mut v, "area", &r.area, false);
    // Empty: the response plan in force supplies them (the state machine resolves it).
    groups_of(&mut v, "requirements", &r.requirements, vocab, true);
    v
}

/// The parts of a plan request the decoder needs sound (enums, window bounds, counts);
/// names, groups and ties are checked whole by the plan book, which names the same fields.
pub fn replace_response_plans(r: &pb::ReplaceResponsePlansRequest) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    if r.plans.len() > MAX_PLANS {
        push(&mut v, "plans", format!("has {} plans; the limit is {MAX_PLANS}", r.plans.len()));
        return v;
    }
    for (i, p) in r.plans.iter().enumerate() {
        if p.grade != 0 {
            enum_value(&mut v, &format!("plans[{i}].grade"), p.grade, Kind::Grade);
        }
        if let Some(w) = &p.time_window {
            for (name, minute) in [("start_minute", w.start_minute), ("end_minute", w.end_minute)] {
                if minute >= u32::from(MINUTES_PER_DAY) {
                    push(
                        &mut v,
                        format!("plans[{i}].time_window.{name}"),
                        format!("{minute} is outside [0, {MINUTES_PER_DAY})"),
                    );
                }
            }
        }
        if p.groups.len() > MAX_GROUPS {
            push(
                &mut v,
                format!("plans[{i}].groups"),
                format!("has {} groups; the limit is {MAX_GROUPS}", p.groups.len()),
            );
            continue;
        }
        for (j, g) in p.groups.iter().enumerate() {
            enum_value(&mut v, &format!("plans[{i}].groups[{j}].agency"), g.agency, Kind::Agency);
            if g.unit_types.len() > MAX_GROUP_NAMES || g.capabilities.len() > MAX_GROUP_NAMES {
                push(
                    &mut v,
                    format!("plans[{i}].groups[{j}]"),
                    format!("names more than {MAX_GROUP_NAMES} types or capabilities"),
                );
            }
        }
    }
    v
}

pub fn update_incident(r: &pb::UpdateIncidentRequest, vocab: &Vocabulary) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    id(&mut v, "incident_id", &r.incident_id, true);
    if let Some(grade) = r.grade {
        enum_value(&mut v, "grade", grade, Kind::Grade);
    }
    if let Some(incident_type) = &r.incident_type {
        id(&mut v, "incident_type", incident_type, true);
    }
    if let Some(l) = &r.location {
        location(&mut v, "location", Some(l));
    }
    if let Some(area) = &r.area {
        id(&mut v, "area", area, false);
    }
    if let Some(requirements) = &r.requirements {
        groups(&mut v, "requirements.groups", &requirements.groups, vocab);
    }
    v
}

pub fn close_incident(r: &pb::CloseIncidentRequest) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    id(&mut v, "incident_id", &r.incident_id, true);
    v
}

pub fn assign_units(r: &pb::AssignUnitsRequest) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "request_id", &r.request_id, true);
    id(&mut v, "incident_id", &r.incident_id, true);
    let n = r.unit_ids.len();
    if !(1..=MAX_ASSIGN).contains(&n) {
        push(&mut v, "unit_ids", format!("has {n} units; between 1 and {MAX_ASSIGN} allowed"));
    } else {
        ids(&mut v, "unit_ids", &r.unit_ids);
        let mut seen = HashSet::with_capacity(n);
        for (i, unit_id) in r.unit_ids.iter().enumerate() {
            if !seen.insert(unit_id.as_str()) {
                push(&mut v, format!("unit_ids[{i}]"), format!("{} is listed twice", py_repr(unit_id)));
            }
        }
    }
    v
}

// -------------------------------------------------------------------------------- reads

pub fn get_unit(r: &pb::GetUnitRequest) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "unit_id", &r.unit_id, true);
    v
}

/// Also returns the page size (the default filled in) and the id the page starts after.
pub fn list_units(r: &pb::ListUnitsRequest) -> (Violations, usize, String) {
    let mut v = Violations::new();
    enum_values(&mut v, "statuses", &r.statuses, Kind::UnitStatus);
    enum_values(&mut v, "agencies", &r.agencies, Kind::Agency);
    id(&mut v, "home_area", &r.home_area, false);
    let (page_size, after) = page(&mut v, token::Listing::Units, r.page_size, &r.page_token);
    (v, page_size, after)
}

pub fn get_incident(r: &pb::GetIncidentRequest) -> Violations {
    let mut v = Violations::new();
    id(&mut v, "incident_id", &r.incident_id, true);
    v
}

/// Also returns the page size (the default filled in) and the id the page starts after.
pub fn list_incidents(r: &pb::ListIncidentsRequest) -> (Violations, usize, String) {
    let mut v = Violations::new();
    enum_values(&mut v, "statuses", &r.statuses, Kind::IncidentStatus);
    enum_values(&mut v, "grades", &r.grades, Kind::Grade);
    let (page_size, after) = page(&mut v, token::Listing::Incidents, r.page_size, &r.page_token);
    (v, page_size, after)
}

/// Also returns the page size (the default filled in) and the queue position the page
/// starts after (`None`: the head of the queue).
pub fn list_pending(r: &pb::ListPendingRequest) -> (Violations, usize, Option<crate::state::PendingKey>) {
    let mut v = Violations::new();
    enum_values(&mut v, "grades", &r.grades, Kind::Grade);
    id(&mut v, "area", &r.area, false);
    let (page_size, after) = page(&mut v, token::Listing::Pending, r.page_size, &r.page_token);
    let after = if r.page_token.is_empty() { None } else { token::pending_key(&after) };
    if !r.page_token.is_empty() && after.is_none() && v.is_empty() {
        push(&mut v, "page_token", "is not a token this server issued for ListPending");
    }
    (v, page_size, after)
}

// ----------------------------------------------------------------------- recommendation

/// One recommendation query; `at` prefixes every field (`queries[3].` in a batch).
fn recommend(v: &mut Violations, at: &str, r: &pb::RecommendUnitsRequest, vocab: &Vocabulary) {
    use pb::recommend_units_request::Target;
    match &r.target {
        Some(Target::IncidentId(incident_id)) => id(v, &format!("{at}incident_id"), incident_id, true),
        Some(Target::AdHoc(ad_hoc)) => {
            location(v, &format!("{at}ad_hoc.location"), ad_hoc.location.as_ref());
            enum_value(v, &format!("{at}ad_hoc.grade"), ad_hoc.grade, Kind::Grade);
            id(v, &format!("{at}ad_hoc.area"), &ad_hoc.area, false);
            groups(v, &format!("{at}ad_hoc.requirements"), &ad_hoc.requirements, vocab);
        }
        None => push(v, format!("{at}target"), "set incident_id or ad_hoc"),
    }
    if r.k != 0 && !usize::try_from(r.k).is_ok_and(|k| (1..=MAX_K).contains(&k)) {
        push(v, format!("{at}k"), format!("{} is outside [1, {MAX_K}] (0 for the default)", r.k));
    }
    enum_values(v, &format!("{at}eligible_statuses"), &r.eligible_statuses, Kind::UnitStatus);
    if let Some(limit) = r.max_eta_seconds {
        if !(limit.is_finite() && limit > 0.0) {
            push(v, format!("{at}max_eta_seconds"), format!("{limit} must be finite and above 0"));
        }
    }
}

pub fn recommend_units(r: &pb::RecommendUnitsRequest, vocab: &Vocabulary) -> Violations {
    let mut v = Violations::new();
    recommend(&mut v, "", r, vocab);
    v
}

pub fn batch_recommend_units(r: &pb::BatchRecommendUnitsRequest, vocab: &Vocabulary) -> Violations {
    let mut v = Violations::new();
    let n = r.queries.len();
    if !(1..=MAX_BATCH_QUERIES).contains(&n) {
        push(&mut v, "queries", format!("has {n} queries; between 1 and {MAX_BATCH_QUERIES} allowed"));
    } else {
        for (i, query) in r.queries.iter().enumerate() {
            recommend(&mut v, &format!("queries[{i}]."), query, vocab);
        }
    }
    v
}

/// Only the batch's shape: a bad ping is skipped and counted, never refused. `batch` is the
/// batch's number in a stream (0 for a unary call), named in the messages.
pub fn update_locations(r: &pb::UpdateLocationsRequest, batch: u64) -> Violations {
    let n = r.unit_ids.len();
    let at = if batch > 0 { format!(" (batch {batch} of the stream)") } else { String::new() };
    let mut v = Violations::new();
    if n > MAX_LOCATION_BATCH {
        push(&mut v, "unit_ids", format!("has {n} pings; the limit is {MAX_LOCATION_BATCH}{at}"));
    }
    for (field, len) in [("lat", r.lat.len()), ("lon", r.lon.len()), ("time_unix_ms", r.time_unix_ms.len())] {
        if len != n {
            push(&mut v, field, format!("has {len} values but unit_ids has {n}{at}"));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocabulary {
        Vocabulary::new(&["firearms", "taser", "dog"]).unwrap()
    }

    fn fields(v: &Violations) -> Vec<&str> {
        v.iter().map(|(f, _)| f.as_str()).collect()
    }

    fn reason<'a>(v: &'a Violations, field: &str) -> &'a str {
        &v.iter().find(|(f, _)| f == field).unwrap_or_else(|| panic!("no violation of {field}: {v:?}")).1
    }

    fn group() -> pb::RequirementGroup {
        pb::RequirementGroup { agency: 1, unit_types: vec!["irv".into()], count: 1, ..Default::default() }
    }

    fn spec() -> pb::UnitSpec {
        pb::UnitSpec { unit_id: "MD21".into(), agency: 1, unit_type: "irv".into(), ..Default::default() }
    }

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn incident() -> pb::CreateIncidentRequest {
        pb::CreateIncidentRequest {
            request_id: "r1".into(),
            grade: 1,
            incident_type: "test".into(),
            location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
            requirements: vec![group()],
            ..Default::default()
        }
    }

    fn ad_hoc(k: i32) -> pb::RecommendUnitsRequest {
        pb::RecommendUnitsRequest {
            target: Some(pb::recommend_units_request::Target::AdHoc(pb::AdHocTarget {
                location: Some(pb::Location { lat: 51.5, lon: -0.12 }),
                grade: 1,
                area: String::new(),
                requirements: vec![group()],
            })),
            k,
            eligible_statuses: vec![],
            max_eta_seconds: None,
            explain: false,
            include_diversions: false,
        }
    }

    #[test]
    fn an_eta_limit_must_be_finite_and_positive() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let r = pb::RecommendUnitsRequest { max_eta_seconds: Some(bad), ..ad_hoc(0) };
            let v = recommend_units(&r, &vocab());
            assert_eq!(v.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), ["max_eta_seconds"], "{bad}");
        }
        let r = pb::RecommendUnitsRequest { max_eta_seconds: Some(0.5), ..ad_hoc(0) };
        assert_eq!(recommend_units(&r, &vocab()), Violations::new());
    }

    #[test]
    fn a_valid_request_has_no_violations() {
        let r = pb::UpsertUnitRequest {
            request_id: "r1".into(),
            unit: Some(pb::UnitSpec {
                capabilities: vec!["taser".into()],
                shift_start: ts(1_700_000_000),
                shift_end: ts(1_700_030_000),
                ..spec()
            }),
        };
        assert_eq!(upsert_unit(&r, &vocab()), Violations::new());
        assert_eq!(create_incident(&incident(), &vocab()), Violations::new());
        assert_eq!(recommend_units(&ad_hoc(0), &vocab()), Violations::new());
    }

    #[test]
    fn upsert_unit_names_the_id_and_the_capability() {
        let r = pb::UpsertUnitRequest {
            request_id: "r1".into(),
            unit: Some(pb::UnitSpec {
                unit_id: "U".repeat(65),
                capabilities: vec!["dogg".into(), "taser".into()],
                ..spec()
            }),
        };
        let v = upsert_unit(&r, &vocab());
        assert_eq!(fields(&v), ["unit.unit_id", "unit.capabilities[0]"]);
        assert_eq!(reason(&v, "unit.unit_id"), "is 65 bytes long; the limit is 64");
        assert_eq!(reason(&v, "unit.capabilities[0]"), "'dogg' is not in the capability vocabulary");

        // 17 four-byte characters: 68 bytes.
        let r = pb::UpsertUnitRequest {
            request_id: String::new(),
            unit: Some(pb::UnitSpec { unit_id: "\u{1f693}".repeat(17), agency: 9, ..spec() }),
        };
        let v = upsert_unit(&r, &vocab());
        assert_eq!(fields(&v), ["request_id", "unit.unit_id", "unit.agency"]);
        assert_eq!(reason(&v, "unit.unit_id"), "is 68 bytes long; the limit is 64");
        assert_eq!(reason(&v, "unit.agency"), "9 is not a known Agency");

        let v = upsert_unit(&pb::UpsertUnitRequest { request_id: "r1".into(), unit: None }, &vocab());
        assert_eq!(v, [("unit".to_owned(), "must be set".to_owned())]);
    }

    #[test]
    fn every_identifier_field_keeps_to_the_grammar_and_is_named() {
        let r = pb::UpsertUnitRequest {
            request_id: "r1\n2026-12-01 INFO forged".into(),
            unit: Some(pb::UnitSpec {
                unit_id: "\u{202e}12DM".into(),
                unit_type: " irv".into(),
                home_area: "West\u{200d}minster".into(),
                ..spec()
            }),
        };
        let v = upsert_unit(&r, &vocab());
        assert_eq!(fields(&v), ["request_id", "unit.unit_id", "unit.unit_type", "unit.home_area"]);
        assert!(reason(&v, "unit.unit_id").starts_with("contains U+202E"), "{v:?}");
        assert_eq!(reason(&v, "unit.unit_type"), "must not begin or end with a space");

        // An optional id may be empty but not blank.
        let r = pb::CreateIncidentRequest { incident_id: "  ".into(), area: "Camden\u{0}".into(), ..incident() };
        let v = create_incident(&r, &vocab());
        assert_eq!(fields(&v), ["incident_id", "area"]);
        assert_eq!(reason(&v, "incident_id"), "must not be blank");
        let r = pb::CreateIncidentRequest {
            incident_type: "burglary\r".into(),
            requirements: vec![pb::RequirementGroup { unit_types: vec!["irv".into(), "a\u{2028}".into()], ..group() }],
            ..incident()
        };
        assert_eq!(fields(&create_incident(&r, &vocab())), ["incident_type", "requirements[0].unit_types[1]"]);

        let r = pb::AssignUnitsRequest {
            request_id: "r1".into(),
            incident_id: "INC-000001".into(),
            unit_ids: vec!["MD21".into(), "MD\u{0}22".into(), "MD23\u{feff}".into()],
            ..Default::default()
        };
        assert_eq!(fields(&assign_units(&r)), ["unit_ids[1]", "unit_ids[2]"]);
        assert_eq!(fields(&get_unit(&pb::GetUnitRequest { unit_id: "MD21\t".into() })), ["unit_id"]);
        assert_eq!(fields(&get_incident(&pb::GetIncidentRequest { incident_id: " ".into() })), ["incident_id"]);
        let (v, _, _) = list_units(&pb::ListUnitsRequest { home_area: "Camden ".into(), ..Default::default() });
        assert_eq!(fields(&v), ["home_area"]);
        let r = pb::UpdateIncidentRequest {
            request_id: "r1".into(),
            incident_id: "X".into(),
            area: Some("\u{3000}Soho".into()),
            incident_type: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(fields(&update_incident(&r, &vocab())), ["incident_type", "area"]);
        let by_id = pb::RecommendUnitsRequest {
            target: Some(pb::recommend_units_request::Target::IncidentId("INC\u{85}1".into())),
            ..ad_hoc(0)
        };
        let mut area = ad_hoc(0);
        if let Some(pb::recommend_units_request::Target::AdHoc(t)) = &mut area.target {
            t.area = "Soho\u{e000}".into();
        }
        let v =
            batch_recommend_units(&pb::BatchRecommendUnitsRequest { queries: vec![ad_hoc(0), by_id, area] }, &vocab());
        assert_eq!(fields(&v), ["queries[1].incident_id", "queries[2].ad_hoc.area"]);
        let r = pb::SetUnitStatusRequest { request_id: "r\u{1b}[2J".into(), unit_id: "MD21".into(), status: 1 };
        assert_eq!(fields(&set_unit_status(&r)), ["request_id"]);
        let r = pb::CloseIncidentRequest { request_id: "r1".into(), incident_id: "INC-1\n".into() };
        assert_eq!(fields(&close_incident(&r)), ["incident_id"]);
    }

    #[test]
    fn violations_past_the_limit_are_summed_up_in_one() {
        let bad = pb::RequirementGroup { unit_types: vec![String::new(); MAX_GROUP_NAMES], ..group() };
        let r = pb::CreateIncidentRequest { requirements: vec![bad; MAX_GROUPS], ..incident() };
        let v = create_incident(&r, &vocab());
        assert_eq!(v.len(), MAX_VIOLATIONS + 1);
        assert_eq!(v[0].0, "requirements[0].unit_types[0]");
        assert_eq!(v[MAX_VIOLATIONS].0, "request");
        assert!(v[MAX_VIOLATIONS].1.starts_with("has more violations than the 16 listed"));
        // Exactly the limit: no summary.
        let r = pb::AssignUnitsRequest {
            request_id: "r1".into(),
            incident_id: "X".into(),
            unit_ids: (0..MAX_VIOLATIONS).map(|i| format!("U{i}\n")).collect(),
            ..Default::default()
        };
        assert_eq!(assign_units(&r).len(), MAX_VIOLATIONS);
    }

    #[test]
    fn shift_bounds_must_be_in_range_and_ordered() {
        let with = |start, end| pb::UpsertUnitRequest {
            request_id: "r1".into(),
            unit: Some(pb::UnitSpec { shift_start: start, shift_end: end, ..spec() }),
        };
        // 1990: before 2000-01-01.
        let v = upsert_unit(&with(ts(631_152_000), None), &vocab());
        assert_eq!(fields(&v), ["unit.shift_start"]);
        assert!(reason(&v, "unit.shift_start").starts_with("631152000000 ms is outside the valid range"));

        let v = upsert_unit(&with(ts(1_700_030_000), ts(1_700_000_000)), &vocab());
        assert_eq!(v, [("unit.shift_end".to_owned(), "must be after unit.shift_start".to_owned())]);

        // Both out of range: each is named, the order is not compared.
        let v = upsert_unit(&with(ts(2000), ts(1000)), &vocab());
        assert_eq!(fields(&v), ["unit.shift_start", "unit.shift_end"]);

        let bad_nanos = Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: -1 });
        let v = upsert_unit(&with(bad_nanos, ts(i64::MAX)), &vocab());
        assert_eq!(fields(&v), ["unit.shift_start", "unit.shift_end"]);
    }

    #[test]
    fn create_incident_names_location_and_requirements() {
        let r = pb::CreateIncidentRequest { location: Some(pb::Location { lat: f64::NAN, lon: 200.0 }), ..incident() };
        let v = create_incident(&r, &vocab());
        assert_eq!(fields(&v), ["location.lat", "location.lon"]);
        assert_eq!(reason(&v, "location.lat"), "nan is not a latitude in [-90, 90]");
        assert_eq!(reason(&v, "location.lon"), "200.0 is not a longitude in [-180, 180]");

        let r = pb::CreateIncidentRequest { requirements: vec![group(); 17], location: None, ..incident() };
        let v = create_incident(&r, &vocab());
        assert_eq!(fields(&v), ["location", "requirements"]);
        assert_eq!(reason(&v, "requirements"), "has 17 groups; the limit is 16");

        let r = pb::CreateIncidentRequest {
            grade: 0,
            requirements: vec![
                group(),
                pb::RequirementGroup { agency: 0, count: 0, capabilities: vec!["nope".into()], ..group() },
            ],
            ..incident()
        };
        let v = create_incident(&r, &vocab());
        assert_eq!(
            fields(&v),
            ["grade", "requirements[1].agency", "requirements[1].capabilities[0]", "requirements[1].count"]
        );
        assert_eq!(reason(&v, "grade"), "must be set");
        assert_eq!(reason(&v, "requirements[1].count"), "0 is outside [1, 50]");
    }

    #[test]
    fn update_incident_checks_only_what_is_set() {
        let r = pb::UpdateIncidentRequest {
            request_id: "r1".into(),
            incident_id: "X".into(),
            grade: Some(0),
            location: Some(pb::Location { lat: f64::NEG_INFINITY, lon: 0.0 }),
            requirements: Some(pb::Requirements { groups: vec![] }),
            ..Default::default()
        };
        let v = update_incident(&r, &vocab());
        assert_eq!(fields(&v), ["grade", "location.lat", "requirements.groups"]);
        assert_eq!(reason(&v, "location.lat"), "-inf is not a latitude in [-90, 90]");
        let r = pb::UpdateIncidentRequest { request_id: "r1".into(), incident_id: "X".into(), ..Default::default() };
        assert_eq!(update_incident(&r, &vocab()), Violations::new());
    }

    #[test]
    fn recommendations_prefix_the_query() {
        let r = pb::BatchRecommendUnitsRequest { queries: vec![ad_hoc(0), ad_hoc(-5)] };
        let v = batch_recommend_units(&r, &vocab());
        assert_eq!(v, [("queries[1].k".to_owned(), format!("-5 is outside [1, {MAX_K}] (0 for the default)"))]);

        let v = batch_recommend_units(&pb::BatchRecommendUnitsRequest { queries: vec![] }, &vocab());
        assert_eq!(fields(&v), ["queries"]);

        let v = recommend_units(&pb::RecommendUnitsRequest::default(), &vocab());
        assert_eq!(fields(&v), ["target"]);

        let mut r = ad_hoc(i32::try_from(MAX_K).unwrap() + 1);
        r.eligible_statuses = vec![1, 0];
        let v = recommend_units(&r, &vocab());
        assert_eq!(fields(&v), ["k", "eligible_statuses[1]"]);
    }

    #[test]
    fn lists_pages_and_assignments() {
        let (v, size, after) = list_units(&pb::ListUnitsRequest::default());
        assert_eq!((v, size, after), (Violations::new(), DEFAULT_PAGE_SIZE, String::new()));

        let r = pb::ListUnitsRequest {
            page_size: 7,
            page_token: token::encode(token::Listing::Units, "MD21"),
            ..Default::default()
        };
        assert_eq!(list_units(&r), (Violations::new(), 7, "MD21".to_owned()));

        let r = pb::ListUnitsRequest {
            statuses: vec![1, 8],
            page_size: -1,
            page_token: "%%%not-a-token".into(),
            ..Default::default()
        };
        let (v, _, _) = list_units(&r);
        assert_eq!(fields(&v), ["statuses[1]", "page_size", "page_token"]);
        assert_eq!(reason(&v, "statuses[1]"), "8 is not a known UnitStatus");
        assert_eq!(reason(&v, "page_size"), "-1 is outside [0, 1000]");

        let r = pb::ListIncidentsRequest { grades: vec![9], page_size: 1001, ..Default::default() };
        let (v, _, _) = list_incidents(&r);
        assert_eq!(fields(&v), ["grades[0]", "page_size"]);

        let r = pb::AssignUnitsRequest {
            request_id: "r1".into(),
            incident_id: "X".into(),
            unit_ids: vec!["a".into(), String::new(), "a".into()],
            ..Default::default()
        };
        let v = assign_units(&r);
        assert_eq!(fields(&v), ["unit_ids[1]", "unit_ids[2]"]);
        assert_eq!(reason(&v, "unit_ids[2]"), "'a' is listed twice");
    }

    #[test]
    fn location_batches_name_the_short_column() {
        let r = pb::UpdateLocationsRequest {
            unit_ids: vec!["a".into()],
            lat: vec![51.6],
            lon: vec![],
            time_unix_ms: vec![20_000],
        };
        assert_eq!(update_locations(&r, 0), [("lon".to_owned(), "has 0 values but unit_ids has 1".to_owned())]);
        assert_eq!(reason(&update_locations(&r, 2), "lon"), "has 0 values but unit_ids has 1 (batch 2 of the stream)");
    }

    #[test]
    fn python_formatting() {
        for (x, s) in [
            (91.0, "91.0"),
            (-180.01, "-180.01"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(py_float(x), s);
        }
        assert_eq!(py_repr("dogg"), "'dogg'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'\"\\\n\u{0}"), "'a\\'\"\\\\\\n\\x00'");
        assert_eq!(py_repr("é\u{a0}\u{200b}\u{1f693}"), "'é\\xa0\\u200b\u{1f693}'");
    }
}
