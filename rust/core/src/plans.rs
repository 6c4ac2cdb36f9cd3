//! Response plans (run cards): which requirement groups an incident of a type needs,
//! optionally only for one grade, one area or one time of day.
//!
//! The plans in force are state: they are installed by a journaled command
//! (`ReplaceResponsePlans`), kept in snapshots, and read by `CreateIncident` when a client
//! sends no requirements. So replay resolves every incident against exactly the plans that
//! were in force when it was created.
//!
//! **Precedence.** Every selector a plan sets (grade, area, time window) must match. Of the
//! matching plans the most specific wins: the most selectors set, then, between plans
//! setting as many, area before grade before time window (an area's own card is a local
//! override; a grade or a time of day refines the general one). Two plans of one type that
//! set the same selectors and could both match one incident (same grade, same area,
//! overlapping windows) are refused when installed, so the winner is never a matter of
//! order.
//!
//! **Time of day** is Europe/London wall-clock time (GMT, BST from 01:00 UTC on the last
//! Sunday of March to 01:00 UTC on the last Sunday of October), computed from the command's
//! time with integer arithmetic: run cards are written in the control room's local time
//! ("nights, 22:00-06:00"), and a UTC window would move by an hour twice a year.
//!
//! ```
//! use dispatch_engine::plans::{london_minute_of_day, TimeWindow};
//! // 2025-07-01 21:30 UTC is 22:30 BST.
//! let t = 1_751_405_400_000;
//! assert_eq!(london_minute_of_day(t), 22 * 60 + 30);
//! assert!(TimeWindow { start_minute: 22 * 60, end_minute: 6 * 60 }.contains(22 * 60 + 30));
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::caps::Vocabulary;
use crate::command::RequirementGroup;
use crate::error::{CoreError, CoreResult};
use crate::types::Grade;

/// Most plans one installation may hold.
pub const MAX_PLANS: usize = 1_024;
/// Longest `source` (where the plans were read from), bytes.
pub const MAX_SOURCE_LEN: usize = 1_024;
/// Minutes in a day: window bounds lie in `0..MINUTES_PER_DAY`.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// A local time-of-day window, `[start_minute, end_minute)`, wrapping past midnight when
/// `end_minute < start_minute`. The bounds differ (an empty or whole-day window is written
/// by leaving the window out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl TimeWindow {
    pub fn contains(self, minute: u16) -> bool {
        if self.start_minute <= self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }

    /// Whether some minute of the day lies in both windows.
    pub fn overlaps(self, other: TimeWindow) -> bool {
        // Each window is one or two plain intervals; two intervals overlap when each starts
        // before the other ends.
        let parts = |w: TimeWindow| -> Vec<(u16, u16)> {
            if w.start_minute <= w.end_minute {
                vec![(w.start_minute, w.end_minute)]
            } else {
                vec![(w.start_minute, MINUTES_PER_DAY), (0, w.end_minute)]
            }
        };
        parts(self).iter().any(|&(a0, a1)| parts(other).iter().any(|&(b0, b1)| a0 < b1 && b0 < a1))
    }
}

/// One response plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsePlan {
    pub name: String,
    pub incident_type: String,
    pub grade: Option<Grade>,
    pub area: Option<String>,
    pub window: Option<TimeWindow>,
    /// Shared with every incident created from the plan.
    pub groups: Arc<[RequirementGroup]>,
}

impl ResponsePlan {
    /// How specific the plan is: more selectors first, then area, grade, window.
    fn specificity(&self) -> (u8, u8) {
        let (a, g, w) = (self.area.is_some(), self.grade.is_some(), self.window.is_some());
        (a as u8 + g as u8 + w as u8, (a as u8) << 2 | (g as u8) << 1 | w as u8)
    }

    fn matches(&self, grade: Grade, area: &str, minute: u16) -> bool {
        self.grade.is_none_or(|g| g == grade)
            && self.area.as_deref().is_none_or(|a| a == area)
            && self.window.is_none_or(|w| w.contains(minute))
    }

    /// Whether the two plans set the same selectors and some incident matches both.
    fn ties_with(&self, other: &ResponsePlan) -> bool {
        self.incident_type == other.incident_type
            && self.specificity() == other.specificity()
            && self.grade == other.grade
            && self.area == other.area
            && match (self.window, other.window) {
                (Some(a), Some(b)) => a.overlaps(b),
                _ => true,
            }
    }
}

/// The plans in force, with where they came from and when they were installed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanBook {
    /// In installation order (the order GetResponsePlans shows).
    plans: Vec<ResponsePlan>,
    /// Plan positions by incident type.
    by_type: BTreeMap<String, Vec<usize>>,
    pub source: String,
    /// The install command's time; `None` before any install.
    pub installed_ms: Option<i64>,
}

/// Why a set of plans cannot be installed: the plan at fault (its position) and, for a
/// tie, the earlier plan it ties with.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanProblem {
    pub plan: usize,
    /// The field inside the plan (`groups[0].count`), empty for the plan as a whole.
    pub field: String,
    pub reason: String,
    pub other: Option<usize>,
}

impl PlanBook {
    /// Checks `plans` whole: every problem found, in plan order (the file loader maps each
    /// to a file and line). `check_groups` checks one plan's groups as CreateIncident
    /// checks requirements.
    pub fn problems(plans: &[ResponsePlan], vocab: &Vocabulary) -> Vec<PlanProblem> {
        let mut out = Vec::new();
        let mut problem = |plan: usize, field: &str, reason: String, other: Option<usize>| {
            out.push(PlanProblem { plan, field: field.to_owned(), reason, other });
        };
        if plans.len() > MAX_PLANS {
            problem(MAX_PLANS, "", format!("{} plans given; at most {MAX_PLANS} are allowed", plans.len()), None);
            return out;
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, p) in plans.iter().enumerate() {
            if let Err(e) = crate::store::validate_id("name", &p.name) {
                problem(i, "name", reason_of(e), None);
            } else if let Some(&first) = names.get(p.name.as_str()) {
                problem(i, "name", format!("{:?} is already the name of another plan", p.name), Some(first));
            } else {
                names.insert(&p.name, i);
            }
            if let Err(e) = crate::store::validate_id("incident_type", &p.incident_type) {
                problem(i, "incident_type", reason_of(e), None);
            }
            if let Some(area) = &p.area {
                if let Err(e) = crate::store::validate_id("area", area) {
                    problem(i, "area", reason_of(e), None);
                }
            }
            if let Some(w) = p.window {
                if w.start_minute >= MINUTES_PER_DAY || w.end_minute >= MINUTES_PER_DAY {
                    problem(i, "time_window", format!("minutes must lie in [0, {MINUTES_PER_DAY})"), None);
                } else if w.start_minute == w.end_minute {
                    problem(
                        i,
                        "time_window",
                        "starts and ends at the same minute; leave the window out for all day".to_owned(),
                        None,
                    );
                }
            }
            for (field, reason) in crate::state::group_problems(&p.groups, vocab) {
                problem(i, &format!("groups{field}"), reason, None);
            }
            if let Some(j) = (0..i).find(|&j| plans[j].ties_with(p)) {
                problem(
                    i,
                    "",
                    format!(
                        "plan {:?} and plan {:?} are equally specific for incident type {:?} and can match the \
                         same incident; give one of them a grade, an area or a time window the other lacks, or \
                         make their windows disjoint",
                        p.name, plans[j].name, p.incident_type
                    ),
                    Some(j),
                );
            }
        }
        out
    }

    /// The plans as a book, refusing them as `problems` would (the first problem, its
    /// field named from the request's root: `plans[3].groups[0].count`).
    pub fn new(plans: Vec<ResponsePlan>, source: String, installed_ms: i64, vocab: &Vocabulary) -> CoreResult<Self> {
        if source.len() > MAX_SOURCE_LEN || source.chars().any(char::is_control) {
            return Err(CoreError::invalid(
                "source",
                format!("must be at most {MAX_SOURCE_LEN} bytes of printable text"),
            ));
        }
        let problems = Self::problems(&plans, vocab);
        if !problems.is_empty() {
            let violations = problems
                .into_iter()
                .take(crate::wire::limits::MAX_VIOLATIONS)
                .map(|p| {
                    let field = if p.field.is_empty() {
                        format!("plans[{}]", p.plan)
                    } else {
                        format!("plans[{}].{}", p.plan, p.field)
                    };
                    (field, p.reason)
                })
                .collect();
            return Err(CoreError::InvalidFields(violations));
        }
        Ok(Self::trusted(plans, source, Some(installed_ms)))
    }

    /// A book of plans already checked (a snapshot's).
    pub(crate) fn trusted(plans: Vec<ResponsePlan>, source: String, installed_ms: Option<i64>) -> Self {
        let mut by_type: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, p) in plans.iter().enumerate() {
            by_type.entry(p.incident_type.clone()).or_default().push(i);
        }
        Self { plans, by_type, source, installed_ms }
    }

    pub fn plans(&self) -> &[ResponsePlan] {
        &self.plans
    }

    /// The plan in force for an incident of this type, grade and area created at `time_ms`
    /// (see the module docs for the precedence); `None` when no plan matches.
    pub fn resolve(&self, incident_type: &str, grade: Grade, area: &str, time_ms: i64) -> Option<&ResponsePlan> {
        let minute = london_minute_of_day(time_ms);
        self.by_type
            .get(incident_type)?
            .iter()
            .map(|&i| &self.plans[i])
            .filter(|p| p.matches(grade, area, minute))
            .max_by_key(|p| p.specificity())
    }
}

fn reason_of(e: CoreError) -> String {
    match e {
        CoreError::InvalidArgument { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year of a day counted from 1970-01-01.
fn year_of_day(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

/// The day (from 1970-01-01) of the last Sunday of `month` in `year`.
fn last_sunday(year: i64, month: i64) -> i64 {
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let last = days_from_civil(ny, nm, 1) - 1;
    // 1970-01-01 was a Thursday: weekday 4 with Sunday as 0.
    last - (last + 4).rem_euclid(7)
}

/// Europe/London's offset from UTC at `time_ms`, in ms: an hour during British Summer Time.
pub fn london_offset_ms(time_ms: i64) -> i64 {
    let year = year_of_day(time_ms.div_euclid(DAY_MS));
    let starts = last_sunday(year, 3) * DAY_MS + HOUR_MS;
    let ends = last_sunday(year, 10) * DAY_MS + HOUR_MS;
    if (starts..ends).contains(&time_ms) {
        HOUR_MS
    } else {
        0
    }
}

/// Minutes after local midnight in Europe/London at `time_ms`.
pub fn london_minute_of_day(time_ms: i64) -> u16 {
    ((time_ms + london_offset_ms(time_ms)).rem_euclid(DAY_MS) / 60_000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Agency;

    fn group(agency: Agency, count: u32) -> RequirementGroup {
        RequirementGroup { agency, unit_types: vec![], capabilities: vec![], count, arrive_together: false }
    }

    fn plan(name: &str, grade: Option<Grade>, area: Option<&str>, window: Option<(u16, u16)>) -> ResponsePlan {
        ResponsePlan {
            name: name.into(),
            incident_type: "burglary".into(),
            grade,
            area: area.map(Into::into),
            window: window.map(|(s, e)| TimeWindow { start_minute: s, end_minute: e }),
            groups: Arc::from(vec![group(Agency::Police, 1)]),
        }
    }

    fn utc(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
        (days_from_civil(y, mo, d) * 24 * 60 + h * 60 + mi) * 60_000
    }

    fn book(plans: Vec<ResponsePlan>) -> PlanBook {
        PlanBook::new(plans, "test".into(), 0, &Vocabulary::default()).unwrap()
    }

    #[test]
    fn london_time_follows_british_summer_time() {
        // 2025: BST from 30 March 01:00 UTC to 26 October 01:00 UTC.
        assert_eq!(london_minute_of_day(utc(2025, 3, 30, 0, 59)), 59);
        assert_eq!(london_minute_of_day(utc(2025, 3, 30, 1, 0)), 2 * 60);
        assert_eq!(london_minute_of_day(utc(2025, 10, 26, 0, 59)), 60 + 59);
        assert_eq!(london_minute_of_day(utc(2025, 10, 26, 1, 0)), 60);
        assert_eq!(london_minute_of_day(utc(2025, 1, 15, 23, 30)), 23 * 60 + 30);
        assert_eq!(london_minute_of_day(utc(2025, 7, 15, 23, 30)), 30);
        // 2024: 31 March and 27 October; a leap year.
        assert_eq!(london_offset_ms(utc(2024, 3, 31, 1, 0)), HOUR_MS);
        assert_eq!(london_offset_ms(utc(2024, 3, 31, 0, 59)), 0);
        assert_eq!(london_offset_ms(utc(2024, 10, 27, 0, 59)), HOUR_MS);
        assert_eq!(london_offset_ms(utc(2024, 10, 27, 1, 0)), 0);
        assert_eq!(london_offset_ms(utc(2000, 2, 29, 12, 0)), 0);
        assert_eq!(london_offset_ms(utc(2099, 6, 1, 12, 0)), HOUR_MS);
    }

    #[test]
    fn civil_dates_round_trip_over_the_valid_range() {
        for day in (days_from_civil(2000, 1, 1)..days_from_civil(2100, 1, 1)).step_by(13) {
            let y = year_of_day(day);
            assert!(days_from_civil(y, 1, 1) <= day && day < days_from_civil(y + 1, 1, 1), "day {day}");
        }
    }

    #[test]
    fn windows_include_their_start_and_exclude_their_end() {
        let day = TimeWindow { start_minute: 360, end_minute: 1320 };
        assert!(!day.contains(359) && day.contains(360) && day.contains(1319) && !day.contains(1320));
        let night = TimeWindow { start_minute: 1320, end_minute: 360 };
        assert!(night.contains(1320) && night.contains(0) && night.contains(359) && !night.contains(360));
        assert!(!day.overlaps(night) && !night.overlaps(day));
        assert!(night.overlaps(TimeWindow { start_minute: 0, end_minute: 1 }));
        assert!(night.overlaps(TimeWindow { start_minute: 1300, end_minute: 1321 }));
    }

    #[test]
    fn the_most_specific_matching_plan_wins() {
        let b = book(vec![
            plan("any", None, None, None),
            plan("night", None, None, Some((1320, 360))),
            plan("immediate", Some(Grade::Immediate), None, None),
            plan("westminster", None, Some("Westminster"), None),
            plan("immediate_night", Some(Grade::Immediate), None, Some((1320, 360))),
        ]);
        // 2025-01-15 is GMT: local time equals UTC.
        let noon = utc(2025, 1, 15, 12, 0);
        let late = utc(2025, 1, 15, 22, 0);
        let name = |g, a, t| b.resolve("burglary", g, a, t).map(|p| p.name.as_str());
        assert_eq!(name(Grade::Significant, "", noon), Some("any"));
        assert_eq!(name(Grade::Significant, "", late), Some("night"));
        assert_eq!(name(Grade::Significant, "", late - 60_000), Some("any"), "21:59 is not night");
        assert_eq!(name(Grade::Immediate, "", noon), Some("immediate"), "grade beats window");
        assert_eq!(name(Grade::Significant, "Westminster", late), Some("westminster"), "area beats window");
        assert_eq!(name(Grade::Immediate, "Westminster", noon), Some("westminster"), "area beats grade");
        assert_eq!(name(Grade::Immediate, "Westminster", late), Some("immediate_night"), "two selectors beat one");
        assert_eq!(b.resolve("robbery", Grade::Immediate, "", noon), None);
    }

    #[test]
    fn the_window_boundary_follows_local_time_across_the_clock_change() {
        let b = book(vec![plan("day", None, None, None), plan("night", None, None, Some((1320, 360)))]);
        // Summer: 22:00 BST is 21:00 UTC.
        let summer = utc(2025, 7, 1, 21, 0);
        assert_eq!(b.resolve("burglary", Grade::Significant, "", summer).unwrap().name, "night");
        assert_eq!(b.resolve("burglary", Grade::Significant, "", summer - 1).unwrap().name, "day");
        // Winter: 22:00 GMT is 22:00 UTC; 06:00 ends it.
        let winter = utc(2025, 12, 1, 22, 0);
        assert_eq!(b.resolve("burglary", Grade::Significant, "", winter - 1).unwrap().name, "day");
        assert_eq!(b.resolve("burglary", Grade::Significant, "", winter).unwrap().name, "night");
        let morning = utc(2025, 12, 2, 6, 0);
        assert_eq!(b.resolve("burglary", Grade::Significant, "", morning - 1).unwrap().name, "night");
        assert_eq!(b.resolve("burglary", Grade::Significant, "", morning).unwrap().name, "day");
    }

    #[test]
    fn equally_specific_plans_that_can_match_one_incident_are_refused() {
        let vocab = Vocabulary::default();
        let refused = |plans: Vec<ResponsePlan>| PlanBook::problems(&plans, &vocab);
        let p = refused(vec![plan("a", None, None, None), plan("b", None, None, None)]);
        assert_eq!((p.len(), p[0].plan, p[0].other), (1, 1, Some(0)));
        let p = refused(vec![plan("a", None, None, Some((1200, 120))), plan("b", None, None, Some((60, 600)))]);
        assert_eq!((p[0].plan, p[0].other), (1, Some(0)));
        // Disjoint windows, other grades or areas, or other selectors: no tie.
        assert!(refused(vec![plan("a", None, None, Some((1320, 360))), plan("b", None, None, Some((360, 1320)))])
            .is_empty());
        assert!(refused(vec![
            plan("a", Some(Grade::Immediate), None, None),
            plan("b", Some(Grade::Significant), None, None)
        ])
        .is_empty());
        assert!(
            refused(vec![plan("a", Some(Grade::Immediate), None, None), plan("b", None, Some("X"), None)]).is_empty()
        );
    }

    #[test]
    fn bad_plans_are_refused_naming_the_field() {
        let vocab = Vocabulary::default();
        let mut bad = plan("a", None, None, Some((10, 10)));
        bad.groups =
            Arc::from(vec![RequirementGroup { capabilities: vec!["tazer".into()], ..group(Agency::Police, 0) }]);
        let dup = plan("a", Some(Grade::Immediate), None, None);
        let p = PlanBook::problems(&[bad.clone(), dup], &vocab);
        let fields: Vec<&str> = p.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(fields, ["time_window", "groups[0].capabilities[0]", "groups[0].count", "name"]);
        let e = PlanBook::new(vec![bad], String::new(), 0, &vocab).unwrap_err();
        assert!(e.to_string().contains("plans[0].groups[0].count"), "{e}");
    }
}
