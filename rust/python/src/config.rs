//! The ranking model as a Python dict and back.

use dispatch_engine::eta::RankConfig;
use dispatch_engine::geo::EARTH_RADIUS_M;
use dispatch_engine::types::{Agency, Grade, Status};
use dispatch_engine::CoreError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping};

use crate::errors::to_py;

pub fn config_to_dict<'py>(py: Python<'py>, c: &RankConfig, scarce: &[String]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("circuity", c.circuity)?;
    let per = |names: &[&str], values: &[f64]| -> PyResult<Bound<'py, PyDict>> {
        let m = PyDict::new(py);
        for (n, v) in names.iter().zip(values) {
            m.set_item(*n, *v)?;
        }
        Ok(m)
    };
    let status_names: Vec<&str> = Status::ALL.iter().map(|s| s.name()).collect();
    let agency_names: Vec<&str> = Agency::ALL.iter().map(|a| a.name()).collect();
    let grade_names: Vec<&str> = Grade::ALL.iter().map(|g| g.name()).collect();
    d.set_item("mobilisation_seconds", per(&status_names, &c.mobilisation_seconds)?)?;
    d.set_item("agency_speed_mps", per(&agency_names, &c.agency_speed_mps)?)?;
    let types = PyDict::new(py);
    for ((agency, name), speed) in &c.unit_type_speed_mps {
        types.set_item(format!("{}/{name}", agency.name()), *speed)?;
    }
    d.set_item("unit_type_speed_mps", types)?;
    d.set_item("blue_light_factor", per(&grade_names, &c.blue_light_factor)?)?;
    d.set_item("cross_area_cost_seconds", c.cross_area_cost_seconds)?;
    d.set_item("shift_overrun_weight", per(&grade_names, &c.shift_overrun_weight)?)?;
    d.set_item("expected_job_seconds", per(&grade_names, &c.expected_job_seconds)?)?;
    d.set_item("specialist_cost_seconds", c.specialist_cost_seconds)?;
    d.set_item("stale_after_seconds", c.stale_after_seconds)?;
    d.set_item("stale_position_weight", c.stale_position_weight)?;
    d.set_item("stale_exclude_after_seconds", c.stale_exclude_after_seconds)?;
    d.set_item("diversion_cost_seconds", c.diversion_cost_seconds)?;
    let preemptible: Vec<&str> = Grade::ALL.iter().filter(|g| c.preemptible(**g)).map(|g| g.name()).collect();
    d.set_item("preemptible_grades", preemptible)?;
    d.set_item("preempt_on_scene", c.preempt_on_scene)?;
    d.set_item("scarce_capabilities", scarce.to_vec())?;
    d.set_item("earth_radius_m", EARTH_RADIUS_M)?;
    Ok(d)
}

/// Applies a (possibly partial) dict shaped like `config()` onto `c`.
pub fn apply_overrides(c: &mut RankConfig, overrides: &Bound<'_, PyMapping>) -> PyResult<()> {
    let py = overrides.py();
    let bad = |field: String, reason: String| to_py(py, CoreError::InvalidArgument { field, reason });
    for item in overrides.items()?.iter() {
        let (key, value): (String, Bound<'_, PyAny>) = item.extract()?;
        let float = |v: &Bound<'_, PyAny>, field: &str| -> PyResult<f64> {
            v.extract::<f64>().map_err(|_| bad(field.to_owned(), "must be a number".into()))
        };
        let table = |v: &Bound<'_, PyAny>| -> PyResult<Vec<(String, f64)>> {
            let m = v.cast::<PyMapping>().map_err(|_| bad(key.clone(), "must be a mapping".into()))?;
            let mut out = Vec::new();
            for kv in m.items()?.iter() {
                let (k, v): (String, Bound<'_, PyAny>) = kv.extract()?;
                let f = float(&v, &format!("{key}.{k}"))?;
                out.push((k, f));
            }
            Ok(out)
        };
        let field = |name: &str| format!("{key}.{name}");
        match key.as_str() {
            "circuity" => c.circuity = float(&value, &key)?,
            "cross_area_cost_seconds" => c.cross_area_cost_seconds = float(&value, &key)?,
            "specialist_cost_seconds" => c.specialist_cost_seconds = float(&value, &key)?,
            "stale_after_seconds" => c.stale_after_seconds = float(&value, &key)?,
            "stale_position_weight" => c.stale_position_weight = float(&value, &key)?,
            "stale_exclude_after_seconds" => c.stale_exclude_after_seconds = float(&value, &key)?,
            "diversion_cost_seconds" => c.diversion_cost_seconds = float(&value, &key)?,
            "preempt_on_scene" => {
                c.preempt_on_scene = value.extract::<bool>().map_err(|_| bad(key.clone(), "must be a bool".into()))?;
            }
            "preemptible_grades" => {
                let names: Vec<String> =
                    value.extract().map_err(|_| bad(key.clone(), "must be a list of grade names".into()))?;
                let mut grades = [false; dispatch_engine::types::N_GRADES];
                for (i, name) in names.iter().enumerate() {
                    let g = Grade::from_name(name, &format!("{key}[{i}]")).map_err(|e| to_py(py, e))?;
                    grades[g.index()] = true;
                }
                c.preemptible_grades = grades;
            }
            "mobilisation_seconds" => {
                for (k, v) in table(&value)? {
                    c.mobilisation_seconds[Status::from_name(&k, &field(&k)).map_err(|e| to_py(py, e))?.index()] = v;
                }
            }
            "agency_speed_mps" => {
                for (k, v) in table(&value)? {
                    c.agency_speed_mps[Agency::from_name(&k, &field(&k)).map_err(|e| to_py(py, e))?.index()] = v;
                }
            }
            "unit_type_speed_mps" => {
                for (k, v) in table(&value)? {
                    let (agency, name) =
                        k.split_once('/').ok_or_else(|| bad(field(&k), "key must be AGENCY/unit_type".into()))?;
                    let agency = Agency::from_name(agency, &field(&k)).map_err(|e| to_py(py, e))?;
                    c.unit_type_speed_mps.insert((agency, name.to_owned()), v);
                }
            }
            "blue_light_factor" | "shift_overrun_weight" | "expected_job_seconds" => {
                for (k, v) in table(&value)? {
                    let g = Grade::from_name(&k, &field(&k)).map_err(|e| to_py(py, e))?.index();
                    match key.as_str() {
                        "blue_light_factor" => c.blue_light_factor[g] = v,
                        "shift_overrun_weight" => c.shift_overrun_weight[g] = v,
                        _ => c.expected_job_seconds[g] = v,
                    }
                }
            }
            // Read-only facts reported by config(); accepted unchanged so a dict from
            // config() can be edited and passed back.
            "scarce_capabilities" | "earth_radius_m" => {}
            _ => return Err(bad(key.clone(), "unknown configuration key".into())),
        }
    }
    c.validate().map_err(|e| to_py(py, e))
}
