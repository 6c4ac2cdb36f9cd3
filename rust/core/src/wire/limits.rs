//! Every limit of the `dispatch.v1` API, in one place: the validation here, the core's own
//! checks and the Python layer (which reads them from the extension) all use these.

pub use crate::rank::MAX_K;
pub use crate::store::MAX_ID_LEN;

/// Most pings in one location batch.
pub const MAX_LOCATION_BATCH: usize = 100_000;
/// Most requirement groups in one response plan.
pub const MAX_GROUPS: usize = 16;
/// Most units one requirement group may ask for.
pub const MAX_GROUP_COUNT: u32 = 50;
/// Most unit types or capabilities named in one requirement group.
pub const MAX_GROUP_NAMES: usize = 32;
/// Most capabilities on one unit.
pub const MAX_UNIT_CAPABILITIES: usize = 128;
/// Most units in one AssignUnits call.
pub const MAX_ASSIGN: usize = 100;
/// Most queries in one BatchRecommendUnits call.
pub const MAX_BATCH_QUERIES: usize = 1_000;
/// Largest page of ListUnits / ListIncidents.
pub const MAX_PAGE_SIZE: usize = 1_000;
/// Most field violations one refusal lists (then one more saying there are more): they
/// travel in the status trailer, which gRPC clients cap at 16 KiB by default.
pub const MAX_VIOLATIONS: usize = 16;
/// The page size when a request asks for none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Candidates per requirement group when a recommendation leaves k at 0, unless the group
/// needs more units.
pub const DEFAULT_K: usize = 5;
