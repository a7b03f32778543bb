//! `mkimage [--format docker|oci] [--name NAME] OUT.tar`: writes the busybox image
//! (Debian's static busybox, reproducible digests) as a `docker load` archive
//! (default) or an OCI image-layout tar; both load with `ctr images import`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use testkit::image::{Image, build_busybox_layer, write_docker_archive, write_oci_layout};

const USAGE: &str = "usage: mkimage [--format docker|oci] [--name NAME] OUT.tar";

fn main() -> Result<()> {
    let mut format = "docker".to_string();
    let mut name = "busybox:latest".to_string();
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--format" => format = args.next().context(USAGE)?,
            "--name" => name = args.next().context(USAGE)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ if out.is_none() && !arg.starts_with('-') => out = Some(arg.into()),
            _ => bail!("unexpected argument {arg:?}\n{USAGE}"),
        }
    }
    let out = out.context(USAGE)?;
    let image = Image::new(&name, vec![build_busybox_layer()?], &["sh"]);
    match format.as_str() {
        "docker" => write_docker_archive(&image, &out)?,
        "oci" => write_oci_layout(&image, &out)?,
        _ => bail!("unknown format {format:?}\n{USAGE}"),
    }
    println!(
        "{}: {} ({format}), manifest {}",
        out.display(),
        image.containerd_name(),
        image.manifest().digest
    );
    Ok(())
}
