//! The pure-Rust core of dispatch-core: which available units, with the right skills, can
//! reach a location soonest?
//!
//! - [`units`]: the unit table (string id → dense slot, attributes, status, position);
//! - [`index`]: a uniform-cell grid of moving points, partitioned by (agency, status);
//! - [`eta`]: the travel-time model and the cost weights ([`eta::RankConfig`]);
//! - [`rank`]: eligibility, scoring and exact top-K, plus the brute-force oracle;
//! - [`coverage`]: which places some eligible unit can reach within a target time;
//! - [`batch`]: many waiting places × candidate units assigned at once (min-cost flow);
//! - [`store`]: the table and the grid kept in step, with the status lifecycle;
//! - [`duty`]: people, skills, shifts and crews, which decide a rostered unit's capabilities.
//! - [`plans`]: response plans (run cards) and which one is in force for an incident;
//! - [`team`]: the whole-team recommendation (one unit per place of a plan).
//!
//! No PyO3 here: the crate tests and benches without Python; `rust/python` binds it.
//!
//! ```
//! use dispatch_engine::{store::UnitStore, store::UnitSpec, types::*, rank::Query};
//! let mut store = UnitStore::new(Default::default(), 0.01).unwrap();
//! let spec = UnitSpec { agency: Agency::Police, unit_type: "irv".into(), ..Default::default() };
//! store.upsert("MD21", &spec).unwrap();
//! store.update_location("MD21", 51.5, -0.12, 1_000).unwrap();
//! let q = Query::new(51.51, -0.12, 2_000);
//! let top = store.rank(&q).unwrap();
//! assert_eq!(top[0].unit_id, "MD21");
//! ```

pub mod batch;
pub mod caps;
pub mod command;
pub mod coverage;
pub mod duty;
pub mod error;
pub mod eta;
pub mod geo;
pub mod index;
pub mod plans;
pub mod rank;
pub mod record;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod store;
pub mod team;
pub mod time;
pub mod types;
pub mod units;
pub mod wire;

pub use error::{CoreError, CoreResult};
