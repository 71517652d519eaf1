//! `ferrokv`: command line and start-up only; the server is in the library. `ferrokv bench …` (etcd's benchmark
//! tool), `ferrokv cluster …` (local clusters) and `ferrokv snapshot status …` are subcommands of the same binary.

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: with thousands of requests in flight the gRPC layer allocates and frees
/// per request, and glibc's allocator took ~20% of the server's CPU (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`), before the server allocates.
///
/// mimalloc asks for huge pages on its arena (`MADV_HUGEPAGE`), and each thread that allocates touches pages of
/// its own, so an idle member held ten 2 MiB pages, 20 of its 23 MB of anonymous memory (etcd 3.4.23 idle: 5 MB),
/// and the peak after a 1,000-client put run was 25 MB higher with them. A/B, etcd's benchmark, 4 rounds
/// pinned: server CPU per put 30.2 -> 31.0 us (100 clients) and 28.5 -> 28.8 us (1,000 clients) without them,
/// peak RSS 83 -> 62 MB and 120 -> 95 MB (docs/performance.md). A failure only costs that memory.
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers; it changes only this process's paging.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        eprintln!("ferrokv: could not turn transparent huge pages off: {}", std::io::Error::last_os_error());
    }
}

/// How often freed heap memory is handed back to the system.
const RETURN_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Starts the thread that hands freed memory back to the system.
///
/// mimalloc returns the pages a burst of requests freed (its purge, `MADV_DONTNEED`) only a second after they
/// were freed, and only when some thread later calls into the allocator's slow path: a server that goes quiet after a
/// burst kept the burst's whole heap resident (RssAnon 113 MB after 100,000 puts from 1,000 clients, of which 22 MB
/// in use). `mi_collect(false)` from any thread performs the purges that are due, for the whole process; it does
/// not move or free anything in use, and with nothing due it returns at once.
fn return_freed_memory() {
    let spawned = std::thread::Builder::new().name("mem-return".into()).spawn(|| {
        // mi_collect does nothing on a thread whose heap was never used.
        let first = std::hint::black_box(Box::new(0u64));
        drop(first);
        loop {
            std::thread::sleep(RETURN_EVERY);
            // SAFETY: mi_collect has no preconditions; it may be called from any thread at any time.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
    if let Err(e) = spawned {
        // The server runs as well without it; memory is only returned later.
        eprintln!("ferrokv: no memory-return thread: {e}");
    }
}

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
    no_huge_pages();
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
    return_freed_memory();
    if let Err(e) = server::api::failpoint_http::start_from_env() {
        println!("{e}");
        return ExitCode::from(1);
    }
    match server::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            server::logging::log("fatal", "ferrokv stopped", &[("error", e.to_string())]);
            ExitCode::from(1)
        }
    }
}
