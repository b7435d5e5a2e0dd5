//! Compiles `proto/flwr/proto/*.proto` with protox (pure Rust, so no system `protoc`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("proto");
    let dir = root.join("flwr/proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "proto"));
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    let fds = protox::compile(&files, [&root])?;
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .codec_path("sepal_wire::codec::WireCodec")
        // Payload objects as `Bytes`: decoded as a slice of the received buffer and sent
        // without a copy into a `Vec` first (they are the bulk of every message).
        .bytes(".flwr.proto.PushObjectRequest.object_content")
        .bytes(".flwr.proto.PullObjectResponse.object_content")
        .bytes(".flwr.proto.InlineObject.object_content")
        // Array data too: records convert to and from protobuf without copying tensors.
        .bytes(".flwr.proto.Array.data")
        .compile_fds(fds)?;
    Ok(())
}
