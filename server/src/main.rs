//! `ferrokv`: command line and start-up only; the server is in the library. `ferrokv bench …` (etcd's benchmark
//! tool), `ferrokv cluster …` (local clusters) and `ferrokv snapshot status …` are subcommands of the same binary.

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: with thousands of requests in flight the gRPC layer allocates and frees
/// per request, and glibc's allocator took ~20% of the server's CPU (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use server::config::Parsed;

/// Go's name for this machine's architecture, as etcd prints it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn main() -> ExitCode {
    // Tools that ship in the same binary, dispatched before etcd's flags.
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("bench") => return ExitCode::from(server::tools::bench::main(args.collect())),
        Some("cluster") => return ExitCode::from(server::tools::cluster::main(args.collect())),
        Some("snapshot") => return ExitCode::from(server::tools::snapshot::main(args.collect())),
        _ => {}
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let values = match server::config::from_args(&args, &env) {
        Ok(Parsed::Run(values)) => values,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            // etcd's layout (tools read the first line), then what ferrokv is.
            println!("etcd Version: {}", server::api::maintenance::SERVER_VERSION);
            println!("Git SHA: Not provided (ferrokv)");
            println!("Go Version: none (ferrokv {}, Rust)", env!("CARGO_PKG_VERSION"));
            println!("Go OS/Arch: {}/{}", std::env::consts::OS, go_arch());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ferrokv: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match values.validate() {
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
