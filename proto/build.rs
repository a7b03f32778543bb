//! Generates the message and ttrpc service code from protos/ at build time,
//! in pure Rust (no protoc binary needed).

use std::path::PathBuf;

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

const MODULES: [&str; 7] = [
    "mount",
    "task",
    "shim",
    "events",
    "runc_options",
    "cgroups_v1",
    "cgroups_v2",
];

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(std::io::Error::other)?);
    let raw = out.join("raw");
    std::fs::create_dir_all(&raw)?;
    let protos: Vec<String> = MODULES
        .iter()
        .map(|m| format!("protos/{m}.proto"))
        .collect();
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Codegen::new()
        .out_dir(&raw)
        .inputs(&protos)
        .include("protos")
        .rust_protobuf()
        .customize(Customize::default())
        .rust_protobuf_customize(ProtobufCustomize::default())
        .run()?;
    // The generated files open with inner attributes and doc comments, which
    // `include!` cannot take; the crate root sets the equivalent allows instead.
    for m in MODULES
        .iter()
        .map(|m| m.to_string())
        .chain(["shim_ttrpc".to_string()])
    {
        let text = std::fs::read_to_string(raw.join(format!("{m}.rs")))?;
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with("#!") && !l.starts_with("//!"))
            .flat_map(|l| [l, "\n"])
            .collect();
        std::fs::write(out.join(format!("{m}.rs")), kept)?;
    }
    Ok(())
}
