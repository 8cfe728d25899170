//! Compiles `proto/` with protox (pure Rust, no system `protoc`) into prost messages, tonic
//! clients and servers, and pbjson serde impls (proto3 JSON), so the same types are gRPC wire
//! messages and readable JSON payloads in Temporal.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let mut files = Vec::new();
    for package in ["retail/v1", "promo/v1"] {
        let mut found: Vec<PathBuf> = fs::read_dir(root.join(package))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "proto"))
            .collect();
        found.sort();
        files.extend(found);
    }
    println!("cargo:rerun-if-changed={}", root.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("descriptors.bin");
    fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&fs::read(&descriptor_path)?)?
        .build(&[".retail", ".promo"])?;
    Ok(())
}
