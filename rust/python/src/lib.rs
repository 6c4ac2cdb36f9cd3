//! PyO3 bindings of `dispatch_engine` as `dispatch_core._core`. This crate only binds:
//! every decision lives in the core crate. Calls that do real work release the GIL, and
//! state sits behind read-write locks so reads run concurrently while writes take turns.
//!
//! - [`machine`]: `DispatchCore`, the state machine (commands, reads, snapshots);
//! - [`index`]: `UnitIndex`, the unit index and ranking alone;
//! - [`views`]: the result classes; [`config`]: the ranking model as a dict;
//! - [`errors`]: core errors as Python exceptions and gRPC-shaped refusals.

mod config;
mod errors;
mod index;
mod machine;
mod views;

use dispatch_engine::caps::{DEFAULT_CAPABILITIES, DEFAULT_SCARCE, MAX_CAPABILITIES};
use dispatch_engine::geo::EARTH_RADIUS_M;
use dispatch_engine::rank::MAX_K;
use dispatch_engine::store;
use pyo3::prelude::*;

/// Every Rust allocation of the extension (the state, snapshots, answers) goes through
/// mimalloc: see the workspace Cargo.toml for the glibc stall it avoids.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::errors::{InvalidArgument, InvalidTransition, NotAssignable, Refused, UnknownUnit};
use crate::index::UnitIndex;
use crate::machine::{DispatchCore, Outcome};
use crate::views::{BatchRanking, Candidate, LocationReport, ScoreBreakdown, UnitView};

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_K", MAX_K)?;
    m.add("MAX_CAPABILITIES", MAX_CAPABILITIES)?;
    m.add("MAX_ID_LEN", store::MAX_ID_LEN)?;
    m.add("EARTH_RADIUS_M", EARTH_RADIUS_M)?;
    m.add("DEFAULT_CAPABILITIES", DEFAULT_CAPABILITIES.to_vec())?;
    m.add("DEFAULT_SCARCE_CAPABILITIES", DEFAULT_SCARCE.to_vec())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("UnknownUnit", py.get_type::<UnknownUnit>())?;
    m.add("InvalidTransition", py.get_type::<InvalidTransition>())?;
    m.add("NotAssignable", py.get_type::<NotAssignable>())?;
    m.add("Refused", py.get_type::<Refused>())?;
    m.add("MIN_TIME_MS", dispatch_engine::time::MIN_TIME_MS)?;
    m.add("MAX_TIME_MS", dispatch_engine::time::MAX_TIME_MS)?;
    m.add("DEFAULT_MAX_FUTURE_SKEW_MS", dispatch_engine::time::DEFAULT_MAX_FUTURE_SKEW_MS)?;
    m.add("REQUEST_RETENTION_MS", dispatch_engine::state::requests::RETENTION_MS)?;
    m.add("DEFAULT_REQUEST_CAPACITY", dispatch_engine::state::requests::DEFAULT_CAPACITY)?;
    m.add("SNAPSHOT_FORMAT", dispatch_engine::snapshot::FORMAT)?;
    let retention = dispatch_engine::state::Retention::default();
    m.add("DEFAULT_CLOSED_RETENTION_MS", retention.age_ms)?;
    m.add("DEFAULT_CLOSED_RETENTION_COUNT", retention.count)?;
    m.add("MAX_LOCATION_BATCH", dispatch_engine::wire::limits::MAX_LOCATION_BATCH)?;
    m.add("MAX_PAGE_SIZE", dispatch_engine::wire::limits::MAX_PAGE_SIZE)?;
    m.add("COMMANDS", dispatch_engine::command::Method::ALL.iter().map(|m| m.name()).collect::<Vec<_>>())?;
    m.add_function(pyo3::wrap_pyfunction!(machine::payload_request, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(machine::check_rows, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(machine::entry_checksum, m)?)?;
    m.add("JOURNAL_FORMAT", dispatch_engine::record::JOURNAL_FORMAT)?;
    m.add_function(pyo3::wrap_pyfunction!(machine::payload_time_ms, m)?)?;
    m.add_function(pyo3::wrap_pyfunction!(identifier_refusal, m)?)?;
    m.add_class::<DispatchCore>()?;
    m.add_class::<Outcome>()?;
    m.add_class::<UnitIndex>()?;
    m.add_class::<Candidate>()?;
    m.add_class::<ScoreBreakdown>()?;
    m.add_class::<BatchRanking>()?;
    m.add_class::<LocationReport>()?;
    m.add_class::<UnitView>()?;
    Ok(())
}

/// Why `value` is not an identifier (`wire::ident`'s grammar, at most `max_bytes` long), or
/// None when it is one: the fields Python validates itself (picture filters, audit queries,
/// the actor metadata) follow the same grammar as the core's.
#[pyfunction]
#[pyo3(signature = (value, max_bytes = store::MAX_ID_LEN))]
fn identifier_refusal(value: &str, max_bytes: usize) -> Option<String> {
    dispatch_engine::wire::ident::check_within(value, max_bytes).err().map(|refusal| refusal.to_string())
}
