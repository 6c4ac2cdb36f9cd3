//! Errors of the core; each message names the field, unit or value at fault so that the
//! gRPC layer can pass it to a dispatcher unchanged.

use std::fmt;

/// Everything that can go wrong in a core call. No variant leaves state half-changed.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// The unit id is not registered.
    UnknownUnit(String),
    /// A capability name outside the configured vocabulary.
    UnknownCapability(String),
    /// A malformed argument: the field and what is wrong with it.
    InvalidArgument { field: String, reason: String },
    /// A status change the lifecycle does not allow.
    InvalidTransition { unit_id: String, reason: String },
    /// A unit that cannot be assigned (taken, wrong status).
    NotAssignable { unit_id: String, reason: String },
    /// A unit that cannot be diverted from its incident to another (pre-emption): the
    /// target is not IMMEDIATE, or the unit's incident is not of a lower grade.
    DiversionRefused { unit_id: String, from_incident: String, to_incident: String, reason: String },
    /// Several malformed fields of one request, each with what is wrong with it: a client
    /// fixing its input sees them all at once.
    InvalidFields(Vec<(String, String)>),
    /// The incident id is not known.
    UnknownIncident(String),
    /// A client-chosen incident id that is already taken.
    IncidentExists(String),
    /// The incident is closed: it takes no more changes.
    IncidentClosed(String),
    /// A person (or another duty record) that is not known: its kind and id.
    UnknownRecord { kind: &'static str, id: String },
    /// A roster change that conflicts with a record already held; `subject` names that
    /// record (`shift/S-1`, `crew/C-1`, `person/P-1`) and `reason` says what clashes.
    RosterConflict { subject: String, reason: String },
    /// The command cannot be applied now for a reason outside the request (the server's
    /// clock is outside the valid range): retrying later may succeed.
    Unavailable(String),
}

impl CoreError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    /// The same error with its field named from the request's root, e.g. `capabilities`
    /// of a unit spec becomes `unit.capabilities`.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::InvalidArgument { field, reason } => {
                Self::InvalidArgument { field: format!("{prefix}{field}"), reason }
            }
            Self::UnknownCapability(name) => Self::InvalidArgument {
                field: format!("{prefix}capabilities"),
                reason: format!("unknown capability {name:?}"),
            },
            Self::InvalidFields(v) => {
                Self::InvalidFields(v.into_iter().map(|(f, r)| (format!("{prefix}{f}"), r)).collect())
            }
            other => other,
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownUnit(id) => write!(f, "unknown unit_id {id:?}"),
            Self::UnknownCapability(name) => write!(f, "unknown capability {name:?}"),
            Self::InvalidArgument { field, reason } => write!(f, "{field}: {reason}"),
            Self::InvalidTransition { unit_id, reason } => write!(f, "unit {unit_id:?}: {reason}"),
            Self::NotAssignable { unit_id, reason } => {
                write!(f, "unit {unit_id:?} is not assignable: {reason}")
            }
            Self::DiversionRefused { unit_id, from_incident, to_incident, reason } => write!(
                f,
                "unit {unit_id:?} cannot be diverted from incident/{from_incident} to incident/{to_incident}: {reason}"
            ),
            Self::InvalidFields(violations) => {
                let parts: Vec<String> = violations.iter().map(|(field, what)| format!("{field}: {what}")).collect();
                write!(f, "{}", parts.join("; "))
            }
            Self::UnknownIncident(id) => write!(f, "incident {id:?} not found"),
            Self::IncidentExists(id) => write!(f, "incident {id:?} already exists"),
            Self::IncidentClosed(id) => write!(f, "incident/{id}: incident {id:?} is closed"),
            Self::UnknownRecord { kind, id } => write!(f, "{kind} {id:?} not found"),
            Self::RosterConflict { subject, reason } => write!(f, "{subject}: {reason}"),
            Self::Unavailable(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;
