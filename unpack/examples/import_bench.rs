//! Import + unpack time of a ~100 MB image of random files (two uncompressed layers of
//! 50 x 1 MiB, plus a gzip layer of small files), on the overlay snapshotter, and the
//! latency of durable metadata writes. Run as root:
//! `cargo run --release -p unpack --example import_bench`
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest as _, Sha256};

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn header(size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn layer(files: usize, size: usize, seed: u64) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut x = seed;
    for i in 0..files {
        let data: Vec<u8> = (0..size)
            .map(|_| {
                // xorshift: incompressible enough and much faster than a CSPRNG.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut h = header(data.len());
        b.append_data(&mut h, format!("d{seed}/f{i}"), &data[..])?;
    }
    b.into_inner()
}

fn main() -> anyhow::Result<()> {
    let layers = [
        layer(50, 1 << 20, 1)?,
        layer(50, 1 << 20, 2)?,
        layer(2000, 2048, 3)?,
    ];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layers[2])?;
    let blobs = [layers[0].clone(), layers[1].clone(), gz.finish()?];
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha(l)).collect::<Vec<_>>()},
    }))?;
    let mut t = tar::Builder::new(Vec::new());
    let mut names = Vec::new();
    for (i, blob) in blobs.iter().enumerate() {
        let mut h = header(blob.len());
        t.append_data(&mut h, format!("l{i}/layer.tar"), &blob[..])?;
        names.push(format!("l{i}/layer.tar"));
    }
    let mut h = header(cfg.len());
    t.append_data(&mut h, "config.json", &cfg[..])?;
    let m = serde_json::to_vec(
        &serde_json::json!([{"Config": "config.json", "RepoTags": ["bench:1"], "Layers": names}]),
    )?;
    let mut h = header(m.len());
    t.append_data(&mut h, "manifest.json", &m[..])?;
    let archive = t.into_inner()?;

    let dir = tempfile::tempdir()?;
    let db = metadata::Db::open(&dir.path().join("meta.redb"))?;
    let store = db.content_store(&dir.path().join("content"), "default")?;
    let sn = snapshots::Snapshotter::new(
        snapshots::Driver::Overlay,
        &dir.path().join("overlay"),
        Arc::clone(&db),
    )?;
    let start = Instant::now();
    unpack::import_archive(&archive[..], &store, &db, "default")?;
    let import = start.elapsed();
    let start = Instant::now();
    unpack::unpack_image(&db, &store, &sn, "default", "docker.io/library/bench:1")?;
    let unpacked = start.elapsed();
    println!(
        "image of {:.1} MiB ({} files): import {import:?}, unpack {unpacked:?}, total {:?}",
        archive.len() as f64 / (1 << 20) as f64,
        2100,
        import + unpacked
    );

    let n = 500u32;
    let start = Instant::now();
    for i in 0..n {
        db.create_lease("default", &format!("l{i}"), Default::default())?;
    }
    let per = start.elapsed() / n;
    let start = Instant::now();
    for i in 0..n {
        db.get_lease("default", &format!("l{i}"))?;
    }
    println!(
        "metadata: durable write {per:?}/op, read {:?}/op",
        start.elapsed() / n
    );
    let start = Instant::now();
    let r = db.garbage_collect(Some(&store))?;
    println!(
        "gc over {} leases and 1 image: {:?} ({} removed)",
        n,
        start.elapsed(),
        r.content.len()
    );
    Ok(())
}
