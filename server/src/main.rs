//! `ferrokv`: command line and start-up only; the server is in the library.

use std::process::ExitCode;

use clap::Parser;
use server::config::Flags;

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let first = e.render().to_string();
            eprintln!("ferrokv: {}", first.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    if flags.version {
        println!("ferrokv Version: {}", env!("CARGO_PKG_VERSION"));
        println!("API Version: {}", server::grpc::maintenance::API_VERSION);
        return ExitCode::SUCCESS;
    }
    let config = match flags.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferrokv: {e}");
            return ExitCode::from(2);
        }
    };
    match server::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            server::logging::log("fatal", "ferrokv stopped", &[("error", e.to_string())]);
            ExitCode::from(1)
        }
    }
}
