use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cfg = engined::Config::parse();
    // Library chatter (h2, tower, hyper) stays at info whatever our level is.
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{},h2=info,tower=info,hyper=info,hyper_util=info",
        cfg.log_level
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // One line whatever RUST_BACKTRACE says: every StartError names its cause.
    if let Err(e) = rt.block_on(engined::run(cfg)) {
        eprintln!("engined: {e}");
        std::process::exit(1);
    }
    Ok(())
}
