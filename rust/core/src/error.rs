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
}

impl CoreError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument { field: field.into(), reason: reason.into() }
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
        }
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;
