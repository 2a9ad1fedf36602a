//! Generates the service traits the server implements, against the message types of
//! `numbering-client` (one set of types for both), and the descriptor set reflection serves.

use std::{env, fs, path::PathBuf};

use protox::prost::Message;

#[path = "client/protos.rs"]
mod protos;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("client/proto");
    let fds = protos::compile(&root)?;
    // tonic-prost-build ignores file_descriptor_set_path when given a compiled set.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("numbering_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .extern_path(".numbering.v1", "::numbering_client::v1")
        .extern_path(".google.rpc", "::tonic_types::pb")
        // Our codec: a request that does not decode is INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::grpc::codec::ProtoCodec")
        .build_client(false)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
