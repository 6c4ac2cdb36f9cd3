//! The travel-time model and the cost weights: every number that decides a ranking lives
//! here, with its default and the reason for it.
//!
//! ETA = mobilisation(status) + great-circle distance × circuity ÷ (speed(agency, type) ×
//! blue-light factor(grade)). The score adds non-negative cost terms (seconds) to the ETA.

use rustc_hash::FxHashMap;

use crate::error::{CoreError, CoreResult};
use crate::types::{Agency, Grade, Status, N_AGENCIES, N_GRADES, N_STATUSES};

/// Everything ranking needs besides the units. Overridable from Python key by key.
#[derive(Debug, Clone, PartialEq)]
pub struct RankConfig {
    /// Road distance ÷ straight-line distance. Published urban ratios are 1.2-1.35; 1.33
    /// sits at the top so that ETAs err late rather than promise too much.
    pub circuity: f64,
    /// Seconds before a unit in each status starts moving (index: [`Status::index`]).
    pub mobilisation_seconds: [f64; N_STATUSES],
    /// Normal urban speed per agency when its unit type has no speed of its own, m/s.
    pub agency_speed_mps: [f64; N_AGENCIES],
    /// Normal urban speed per (agency, unit type), m/s.
    pub unit_type_speed_mps: FxHashMap<(Agency, String), f64>,
    /// Blue-light speed multiplier per grade (index: [`Grade::index`]).
    pub blue_light_factor: [f64; N_GRADES],
    /// Cost, in seconds, of sending a unit outside its home area (BCU boundary).
    pub cross_area_cost_seconds: f64,
    /// Cost per second that a shift would overrun before the job is likely done, per grade;
    /// zero for IMMEDIATE because life comes before overtime (docs/domain.md).
    pub shift_overrun_weight: [f64; N_GRADES],
    /// How long a job of each grade is expected to keep a unit after arrival, seconds.
    pub expected_job_seconds: [f64; N_GRADES],
    /// Cost, in seconds, per scarce capability a unit holds that the requirement does not
    /// ask for: keep the dog van free for the job that needs a dog.
    pub specialist_cost_seconds: f64,
    /// Age of a position, seconds, up to which it is trusted as it is. AVL units report
    /// every 10-30 s; two minutes of silence means a dead spot, a flat radio battery or a
    /// unit that has moved where the last fix no longer says.
    pub stale_after_seconds: f64,
    /// Cost, in seconds, per second a position is older than `stale_after_seconds`: a unit
    /// could have driven away from its last fix about as fast as it could drive to the job,
    /// so a second of doubt costs about a second of ETA.
    pub stale_position_weight: f64,
    /// Age of a position, seconds, beyond which the unit is not offered at all: after a
    /// quarter of an hour the fix says nothing about where the unit is.
    pub stale_exclude_after_seconds: f64,
    /// Cost, in seconds, of taking a unit away from the lower-grade job it is committed to
    /// (pre-emption): that job goes back to the queue and loses the time already spent
    /// travelling to it, so a diversion must beat a free unit by this much to be offered
    /// first.
    pub diversion_cost_seconds: f64,
    /// Grades whose units may be diverted to an IMMEDIATE incident (index:
    /// [`Grade::index`]). IMMEDIATE is never pre-empted, whatever this says.
    pub preemptible_grades: [bool; N_GRADES],
    /// Whether a unit already ON_SCENE at a lower-grade job may be diverted (otherwise only
    /// DISPATCHED and EN_ROUTE units are).
    pub preempt_on_scene: bool,
}

impl Default for RankConfig {
    fn default() -> Self {
        let police = [
            // London's average traffic speed is about 7-8 m/s (16-18 mph); response drivers
            // are a little faster, foot and cycle patrols much slower.
            ("irv", 8.0),
            ("area_car", 8.5),
            ("arv", 8.5),
            ("dog", 8.0),
            ("tsg", 7.0),
            ("traffic", 9.0),
            ("motorcycle", 9.0),
            ("cycle", 4.5),
            ("foot", 1.4),
        ];
        let fire = [("pump", 7.0), ("aerial", 6.0), ("rescue", 7.0)];
        let ambulance = [("ambulance", 7.5), ("fast_response_car", 8.5)];
        let mut unit_type_speed_mps = FxHashMap::default();
        for (agency, table) in
            [(Agency::Police, &police[..]), (Agency::Fire, &fire[..]), (Agency::Ambulance, &ambulance[..])]
        {
            for &(name, speed) in table {
                unit_type_speed_mps.insert((agency, name.to_owned()), speed);
            }
        }
        Self {
            circuity: 1.33,
            // AVAILABLE crews acknowledge and start in ~30 s; a DISPATCHED or EN_ROUTE unit is
            // already mobile; ON_SCENE must hand over; COMMITTED (custody, hospital) longer;
            // UNAVAILABLE and OFF_DUTY only when a query explicitly allows them.
            mobilisation_seconds: [30.0, 15.0, 0.0, 120.0, 600.0, 600.0, 1800.0],
            agency_speed_mps: [8.0, 7.0, 7.5],
            unit_type_speed_mps,
            blue_light_factor: [1.5, 1.25, 1.0, 1.0],
            cross_area_cost_seconds: 60.0,
            shift_overrun_weight: [0.0, 0.5, 1.0, 1.0],
            expected_job_seconds: [5400.0, 3600.0, 3600.0, 1800.0],
            specialist_cost_seconds: 120.0,
            stale_after_seconds: 120.0,
            stale_position_weight: 1.0,
            stale_exclude_after_seconds: 900.0,
            // Three minutes: a diverted unit is usually already moving, so it wins only when
            // a free unit is clearly further away.
            diversion_cost_seconds: 180.0,
            preemptible_grades: [false, true, true, true],
            preempt_on_scene: false,
        }
    }
}

impl RankConfig {
    /// Speed of a unit type, m/s: its own if configured, else its agency's.
    pub fn speed_mps(&self, agency: Agency, unit_type: &str) -> f64 {
        // Allocation-free lookup would need a borrowed key type; this runs only when a
        // unit type is first seen or the config changes, never per ranking call.
        self.unit_type_speed_mps
            .get(&(agency, unit_type.to_owned()))
            .copied()
            .unwrap_or(self.agency_speed_mps[agency.index()])
    }

    pub fn mobilisation(&self, status: Status) -> f64 {
        self.mobilisation_seconds[status.index()]
    }

    /// Whether units attached to an incident of `grade` may be diverted to an IMMEDIATE one.
    pub fn preemptible(&self, grade: Grade) -> bool {
        grade != Grade::Immediate && self.preemptible_grades[grade.index()]
    }

    pub fn blue_light(&self, grade: Grade) -> f64 {
        self.blue_light_factor[grade.index()]
    }

    /// The stale-position cost of a position `age_seconds` old.
    #[inline]
    pub fn stale_cost(&self, age_seconds: f64) -> f64 {
        let beyond = age_seconds - self.stale_after_seconds;
        if beyond > 0.0 {
            beyond * self.stale_position_weight
        } else {
            0.0
        }
    }

    /// Refuses values that would break the model or the pruning bound (which needs every
    /// cost term non-negative and every speed positive).
    pub fn validate(&self) -> CoreResult<()> {
        fn check(field: &str, value: f64, min: f64, strict: bool) -> CoreResult<()> {
            let ok = value.is_finite() && if strict { value > min } else { value >= min };
            if ok {
                Ok(())
            } else {
                let op = if strict { ">" } else { ">=" };
                Err(CoreError::invalid(field, format!("{value} must be finite and {op} {min}")))
            }
        }
        check("circuity", self.circuity, 1.0, false)?;
        for (s, v) in Status::ALL.iter().zip(self.mobilisation_seconds) {
            check(&format!("mobilisation_seconds.{}", s.name()), v, 0.0, false)?;
        }
        for (a, v) in Agency::ALL.iter().zip(self.agency_speed_mps) {
            check(&format!("agency_speed_mps.{}", a.name()), v, 0.0, true)?;
        }
        for ((a, t), v) in &self.unit_type_speed_mps {
            check(&format!("unit_type_speed_mps.{}/{t}", a.name()), *v, 0.0, true)?;
        }
        for (g, v) in Grade::ALL.iter().zip(self.blue_light_factor) {
            check(&format!("blue_light_factor.{}", g.name()), v, 0.0, true)?;
        }
        for (g, v) in Grade::ALL.iter().zip(self.shift_overrun_weight) {
            check(&format!("shift_overrun_weight.{}", g.name()), v, 0.0, false)?;
        }
        for (g, v) in Grade::ALL.iter().zip(self.expected_job_seconds) {
            check(&format!("expected_job_seconds.{}", g.name()), v, 0.0, false)?;
        }
        check("cross_area_cost_seconds", self.cross_area_cost_seconds, 0.0, false)?;
        check("specialist_cost_seconds", self.specialist_cost_seconds, 0.0, false)?;
        check("stale_after_seconds", self.stale_after_seconds, 0.0, false)?;
        check("stale_position_weight", self.stale_position_weight, 0.0, false)?;
        check("stale_exclude_after_seconds", self.stale_exclude_after_seconds, self.stale_after_seconds, false)
            .map_err(|_| {
                CoreError::invalid(
                    "stale_exclude_after_seconds",
                    format!(
                        "{} must be finite and >= stale_after_seconds ({})",
                        self.stale_exclude_after_seconds, self.stale_after_seconds
                    ),
                )
            })?;
        check("diversion_cost_seconds", self.diversion_cost_seconds, 0.0, false)?;
        if self.preemptible_grades[Grade::Immediate.index()] {
            return Err(CoreError::invalid("preemptible_grades", "IMMEDIATE incidents are never pre-empted"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RankConfig::default().validate().unwrap();
    }

    #[test]
    fn type_speed_falls_back_to_agency() {
        let c = RankConfig::default();
        assert_eq!(c.speed_mps(Agency::Police, "foot"), 1.4);
        assert_eq!(c.speed_mps(Agency::Police, "hovercraft"), 8.0);
    }

    #[test]
    fn negative_weight_is_refused_with_its_name() {
        let c = RankConfig { cross_area_cost_seconds: -1.0, ..RankConfig::default() };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("cross_area_cost_seconds"), "{err}");
    }

    #[test]
    fn stale_cost_starts_after_the_trusted_age() {
        let c = RankConfig { stale_after_seconds: 120.0, stale_position_weight: 2.0, ..RankConfig::default() };
        assert_eq!(c.stale_cost(0.0), 0.0);
        assert_eq!(c.stale_cost(120.0), 0.0);
        assert_eq!(c.stale_cost(130.0), 20.0);
    }

    #[test]
    fn exclusion_before_the_trusted_age_is_refused() {
        let c = RankConfig { stale_after_seconds: 300.0, stale_exclude_after_seconds: 200.0, ..RankConfig::default() };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("stale_exclude_after_seconds") && err.contains("300"), "{err}");
    }
}
