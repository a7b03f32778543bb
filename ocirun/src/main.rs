use clap::Parser;

fn main() {
    let cli = ocirun::cli::Cli::parse();
    ocirun::logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    let cli_has_log = cli.log.is_some();
    let code = match ocirun::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let line = ocirun::one_line(&e);
            // containerd reads the reason from --log; a person reads stderr.
            if cli_has_log {
                ocirun::logging::log_error(&line);
            }
            eprintln!("ocirun: {line}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
