//! `ferrokv`: command line and start-up only; the server is in the library. `ferrokv bench …` (etcd's benchmark
//! tool) and `ferrokv cluster …` (local clusters) are subcommands of the same binary.

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: with thousands of requests in flight the gRPC layer allocates and frees
/// per request, and glibc's allocator took ~20% of the server's CPU (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use server::config::Flags;

fn main() -> ExitCode {
    // Tools that ship in the same binary, dispatched before etcd's flags.
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("bench") => return ExitCode::from(server::tools::bench::main(args.collect())),
        Some("cluster") => return ExitCode::from(server::tools::cluster::main(args.collect())),
        _ => {}
    }
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
        println!("etcd Version: {}", server::api::maintenance::SERVER_VERSION);
        println!("API Version: {}", server::api::maintenance::API_VERSION);
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
