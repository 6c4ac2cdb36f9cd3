//! Errors: core errors as Python exceptions (for the unit index) and as refusals carrying a
//! gRPC status code and its details (for the state machine's commands and reads).

use dispatch_engine::CoreError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyKeyError, PyValueError};
use pyo3::prelude::*;

create_exception!(_core, InvalidArgument, PyValueError, "A malformed argument; `.field` names it.");
create_exception!(_core, UnknownUnit, PyKeyError, "The unit_id is not registered; `.field` is the id.");
create_exception!(
    _core,
    InvalidTransition,
    PyValueError,
    "A status change the lifecycle refuses; `.field` is the unit."
);
create_exception!(_core, NotAssignable, PyValueError, "A unit that cannot be assigned; `.field` is the unit.");

/// Maps a core error to its Python exception, with the field or unit as `.field`.
pub fn to_py(py: Python<'_>, err: CoreError) -> PyErr {
    let message = err.to_string();
    let (py_err, field) = match err {
        CoreError::UnknownUnit(id) => (UnknownUnit::new_err(message), id),
        CoreError::UnknownCapability(_) => (InvalidArgument::new_err(message), "capabilities".to_owned()),
        CoreError::InvalidArgument { field, .. } => (InvalidArgument::new_err(message), field),
        CoreError::InvalidTransition { unit_id, .. } => (InvalidTransition::new_err(message), unit_id),
        CoreError::NotAssignable { unit_id, .. } => (NotAssignable::new_err(message), unit_id),
        // The state machine's own errors reach Python as `Refused`; the unit index never
        // raises them.
        other => return Refusal::of(other).into_py(py),
    };
    // Setting an attribute on a fresh exception cannot fail in practice; if it did, the
    // message still names the field.
    let _ = py_err.value(py).setattr("field", field);
    py_err
}

create_exception!(
    _core,
    Refused,
    PyException,
    "A command or read the core refused; `.code` is the gRPC status name and the other \
     attributes its details. Nothing changed."
);

/// Details of a refusal, shaped for google.rpc error details.
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub violations: Vec<(String, String)>,
    pub precondition: Option<(&'static str, String, String)>,
    pub resource: Option<(&'static str, String)>,
}

/// Python's `repr` of a str, as the messages quote ids ('MD21').
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Refusal {
    pub fn of(err: CoreError) -> Self {
        let plain =
            |code, message| Refusal { code, message, violations: Vec::new(), precondition: None, resource: None };
        match err {
            CoreError::InvalidArgument { field, reason } => {
                let message = format!("{field}: {reason}");
                Refusal { violations: vec![(field, reason)], ..plain("INVALID_ARGUMENT", message) }
            }
            CoreError::InvalidFields(violations) => {
                let message = violations.iter().map(|(f, r)| format!("{f}: {r}")).collect::<Vec<_>>().join("; ");
                Refusal { violations, ..plain("INVALID_ARGUMENT", message) }
            }
            CoreError::UnknownCapability(name) => {
                let reason = format!("{} is not in the capability vocabulary", quoted(&name));
                Refusal {
                    violations: vec![("capabilities".into(), reason.clone())],
                    ..plain("INVALID_ARGUMENT", format!("capabilities: {reason}"))
                }
            }
            CoreError::UnknownUnit(id) => Refusal {
                resource: Some(("unit", id.clone())),
                ..plain("NOT_FOUND", format!("unit {} not found", quoted(&id)))
            },
            CoreError::UnknownIncident(id) => Refusal {
                resource: Some(("incident", id.clone())),
                ..plain("NOT_FOUND", format!("incident {} not found", quoted(&id)))
            },
            CoreError::IncidentExists(id) => Refusal {
                resource: Some(("incident", id.clone())),
                ..plain("ALREADY_EXISTS", format!("incident {} already exists", quoted(&id)))
            },
            CoreError::IncidentClosed(id) => {
                precondition("INCIDENT_CLOSED", format!("incident/{id}"), format!("incident {} is closed", quoted(&id)))
            }
            CoreError::InvalidTransition { unit_id, reason } => {
                precondition("INVALID_TRANSITION", format!("unit/{unit_id}"), reason)
            }
            CoreError::NotAssignable { unit_id, reason } => precondition(
                "UNIT_NOT_ASSIGNABLE",
                format!("unit/{unit_id}"),
                format!("unit {} is not assignable: {reason}", quoted(&unit_id)),
            ),
            CoreError::DiversionRefused { unit_id, from_incident, to_incident, reason } => precondition(
                "DIVERSION_NOT_ALLOWED",
                format!("incident/{from_incident}"),
                format!(
                    "unit {} cannot be diverted from incident/{from_incident} to incident/{to_incident}: {reason}",
                    quoted(&unit_id)
                ),
            ),
            CoreError::UnknownRecord { kind, id } => Refusal {
                resource: Some((kind, id.clone())),
                ..plain("NOT_FOUND", format!("{kind} {} not found", quoted(&id)))
            },
            CoreError::RosterConflict { subject, reason } => precondition("ROSTER_CONFLICT", subject, reason),
            CoreError::Unavailable(reason) => plain("UNAVAILABLE", reason),
        }
    }

    /// The `Refused` exception carrying this refusal.
    pub fn into_py(self, py: Python<'_>) -> PyErr {
        let err = Refused::new_err(self.message.clone());
        let value = err.value(py);
        // Setting attributes on a fresh exception cannot fail in practice; if it did, the
        // message still says what was wrong.
        let _ = value.setattr("code", self.code);
        let _ = value.setattr("violations", self.violations);
        let _ = value.setattr("precondition", self.precondition);
        let _ = value.setattr("resource", self.resource);
        err
    }
}

fn precondition(kind: &'static str, subject: String, description: String) -> Refusal {
    Refusal {
        code: "FAILED_PRECONDITION",
        message: format!("{subject}: {description}"),
        violations: Vec::new(),
        precondition: Some((kind, subject, description)),
        resource: None,
    }
}

/// A core error as the `Refused` exception.
pub fn refused(py: Python<'_>, err: CoreError) -> PyErr {
    Refusal::of(err).into_py(py)
}
