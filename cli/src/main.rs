//! `engine`: see the library for the commands.
#![forbid(unsafe_code)]

fn main() {
    let code = engine_cli::main_with_args(std::env::args().collect());
    std::process::exit(code);
}
