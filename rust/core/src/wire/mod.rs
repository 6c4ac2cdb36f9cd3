//! The `dispatch.v1` wire format: requests decoded (and validated) into commands and
//! queries, state encoded into responses. A command crosses from Python once, as the bytes
//! the client sent, and its answer goes back once, as the bytes the client receives.
//!
//! - [`pb`]: the message types, generated from `protos/` at build time;
//! - [`limits`]: every size limit the proto documents, in one place;
//! - [`ident`]: the identifier grammar (which strings may name a unit, an incident, ...);
//! - [`validate`]: field-level checks naming the offending field as the client wrote it;
//! - [`decode`]: request bytes → [`crate::command::Command`];
//! - [`encode`]: state → response messages;
//! - [`reads`]: the read RPCs (Get/List, recommendations) from request bytes to response
//!   bytes.

pub mod decode;
pub mod encode;
pub mod ident;
pub mod limits;
pub mod reads;
pub mod token;
pub mod validate;

/// The generated `dispatch.v1` messages.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/dispatch.v1.rs"));
}
