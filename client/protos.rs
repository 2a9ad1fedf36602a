//! The numbering protos and how they are read: one list for the build scripts of both the client
//! (messages and client stubs) and the server (service traits and the reflection descriptors).

use std::path::Path;

use tonic_prost_build::FileDescriptorSet;

/// The API, relative to the proto root; `google/rpc/status.proto` comes in through imports.
const PROTOS: &[&str] = &[
    "numbering/v1/common.proto",
    "numbering/v1/tenancy.proto",
    "numbering/v1/number_pool.proto",
    "numbering/v1/allocation.proto",
];

/// Compiles the protos under `root` with protox (no system protoc), and tells cargo to build
/// again when any file read from `root` changes (the directory too, for a file added to it).
pub fn compile(root: &Path) -> Result<FileDescriptorSet, protox::Error> {
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(PROTOS, [root])?;
    // The set holds every file read, imports included; the well-known types come with protox.
    for file in &fds.file {
        let path = root.join(file.name());
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Ok(fds)
}
