//! Commands: what a client (or the server's clock) asks the state machine to do.
//!
//! A command arrives as the encoded `dispatch.v1` request of its method ([`crate::wire`]
//! decodes and validates it) and is applied by [`crate::state::Machine::execute`] with the
//! time the server journaled for it. The journal stores exactly those bytes and that time,
//! so replaying an entry is executing it again.

use crate::plans::ResponsePlan;
use crate::store::UnitSpec;
use crate::types::{Agency, Grade, Status};

/// The journaled methods. Reads are not commands: they change nothing and are not journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    UpsertUnit,
    SetUnitStatus,
    CreateIncident,
    UpdateIncident,
    CloseIncident,
    AssignUnits,
    /// The server's clock: makes the time-driven changes that are due.
    Tick,
    /// Installs the response plans (the server sends it from its plan file).
    ReplaceResponsePlans,
    /// Duty management ([`crate::duty`]).
    UpsertPerson,
    UpsertShift,
    BookCrew,
}

impl Method {
    pub const ALL: &'static [Method] = &[
        Method::UpsertUnit,
        Method::SetUnitStatus,
        Method::CreateIncident,
        Method::UpdateIncident,
        Method::CloseIncident,
        Method::AssignUnits,
        Method::Tick,
        Method::ReplaceResponsePlans,
        Method::UpsertPerson,
        Method::UpsertShift,
        Method::BookCrew,
    ];

    /// The RPC name (and the journal's `method` column).
    pub const fn name(self) -> &'static str {
        match self {
            Method::UpsertUnit => "UpsertUnit",
            Method::SetUnitStatus => "SetUnitStatus",
            Method::CreateIncident => "CreateIncident",
            Method::UpdateIncident => "UpdateIncident",
            Method::CloseIncident => "CloseIncident",
            Method::AssignUnits => "AssignUnits",
            Method::Tick => "Tick",
            Method::ReplaceResponsePlans => "ReplaceResponsePlans",
            Method::UpsertPerson => "UpsertPerson",
            Method::UpsertShift => "UpsertShift",
            Method::BookCrew => "BookCrew",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// A stable small number, for hashing and snapshots.
    pub const fn code(self) -> u32 {
        match self {
            Method::UpsertUnit => 1,
            Method::SetUnitStatus => 2,
            Method::CreateIncident => 3,
            Method::UpdateIncident => 4,
            Method::CloseIncident => 5,
            Method::AssignUnits => 6,
            Method::Tick => 7,
            Method::ReplaceResponsePlans => 8,
            // Duty management numbers from 21, leaving 9-20 to the dispatch commands.
            Method::UpsertPerson => 21,
            Method::UpsertShift => 22,
            Method::BookCrew => 23,
        }
    }

    pub fn from_code(code: u32) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.code() == code)
    }
}

/// "`count` units of `agency`, of any of `unit_types` (any type when empty), each with all
/// of `capabilities`": one group of an incident's response plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequirementGroup {
    pub agency: Agency,
    pub unit_types: Vec<String>,
    pub capabilities: Vec<String>,
    pub count: u32,
    /// The group's units must reach the scene together (a firearms team): carried for
    /// recommendations, not a ranking rule of its own.
    pub arrive_together: bool,
}

/// Everything a new incident is created with.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncident {
    /// `None`: the state machine allocates one.
    pub incident_id: Option<String>,
    pub grade: Grade,
    pub incident_type: String,
    pub lat: f64,
    pub lon: f64,
    pub area: String,
    /// Empty: the response plan in force decides.
    pub requirements: Vec<RequirementGroup>,
}

/// The fields UpdateIncident changes; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IncidentChange {
    pub grade: Option<Grade>,
    pub incident_type: Option<String>,
    pub location: Option<(f64, f64)>,
    pub area: Option<String>,
    pub requirements: Option<Vec<RequirementGroup>>,
}

/// A decoded, validated command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    UpsertUnit {
        unit_id: String,
        spec: UnitSpec,
    },
    SetUnitStatus {
        unit_id: String,
        status: Status,
    },
    CreateIncident(NewIncident),
    UpdateIncident {
        incident_id: String,
        change: IncidentChange,
    },
    CloseIncident {
        incident_id: String,
    },
    /// `allow_diversion`: units attached to lower-grade incidents may be taken for an
    /// IMMEDIATE one (pre-emption).
    AssignUnits {
        incident_id: String,
        unit_ids: Vec<String>,
        allow_diversion: bool,
    },
    Tick,
    /// A duty management command ([`crate::duty`]).
    Duty(crate::duty::wire::DutyCommand),
    ReplaceResponsePlans {
        plans: Vec<ResponsePlan>,
        source: String,
    },
}
