//! Generates the one set of numbering message types and the client stubs. The server package
//! generates its service traits from the same protos, against these messages.

use std::{env, path::PathBuf};

#[path = "protos.rs"]
mod protos;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Inside the crate, so that the published crate builds on its own.
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    tonic_prost_build::configure()
        .extern_path(".google.rpc", "::tonic_types::pb")
        // Ordered maps make encoded requests deterministic, so a retry can be recognised.
        .btree_map(".")
        .build_client(true)
        .build_server(false)
        .compile_fds(protos::compile(&root)?)?;
    Ok(())
}
