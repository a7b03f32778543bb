//! `mkbundle DIR [ARGS...]`: makes an OCI bundle with a busybox rootfs in DIR whose
//! process runs ARGS (default `sh`). Used by `make demo`, `make bench` and by hand.
use std::path::PathBuf;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: mkbundle DIR [ARGS...]")?);
    let rest: Vec<String> = args.collect();
    let rest: Vec<&str> = if rest.is_empty() {
        vec!["sh"]
    } else {
        rest.iter().map(String::as_str).collect()
    };
    testkit::Bundle::create(&dir, &rest)?;
    println!("{}", dir.display());
    Ok(())
}
