//! Compiles the numbering protos with protox (no system protoc) into one set of message types,
//! client stubs, and (with the `server` feature) the server traits.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "numbering/v1/common.proto",
    "numbering/v1/tenancy.proto",
    "numbering/v1/number_pool.proto",
    "numbering/v1/allocation.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    for proto in PROTOS.iter().chain(["google/rpc/status.proto"].iter()) {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let fds = protox::compile(PROTOS, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Reflection serves this set; tonic-prost-build ignores file_descriptor_set_path here.
    fs::write(out.join("numbering_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .extern_path(".google.rpc", "::tonic_types::pb")
        // Ordered maps make encoded requests deterministic, so a retry can be recognised.
        .btree_map(".")
        .build_client(true)
        .build_server(env::var_os("CARGO_FEATURE_SERVER").is_some())
        .compile_fds(fds)?;
    Ok(())
}
