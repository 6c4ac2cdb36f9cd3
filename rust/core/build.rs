//! Generates the `dispatch.v1` message types from `protos/` at build time, with protox (a
//! protobuf compiler in Rust) so that building needs no `protoc` on the machine.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("../../protos");
    let proto = root.join("dispatch/v1/dispatch.proto");
    // The whole tree, not only the one file: a .proto it comes to import must rebuild too.
    println!("cargo:rerun-if-changed={}", root.display());
    let files = protox::compile([&proto], [&root]).expect("protos/dispatch/v1/dispatch.proto compiles");
    prost_build::Config::new().compile_fds(files).expect("prost generates the dispatch.v1 types");
}
