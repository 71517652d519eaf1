//! `diskbench [OPTIONS] [DIR]`: command line, signal handling and exit status only; the work is in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use diskbench::cli::Cli;
use diskbench::control::Control;

/// Exit status for errors (bad input, I/O failure, interruption).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(Ok(cli)) => cli,
        Ok(Err(help_or_version)) => {
            let _ = help_or_version.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    let (json, progress) = (cli.json, !cli.no_progress && std::io::stderr().is_terminal());
    let job = match cli.into_job() {
        Ok(job) => job,
        Err(e) => return fail(&e),
    };
    let ctl = Control::new(progress);
    let stop = ctl.stop_flag();
    if let Err(e) = ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::Relaxed)) {
        eprintln!("diskbench: cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    match diskbench::run(job, &ctl) {
        Ok(report) => {
            if json {
                println!("{}", report.json());
                if let Some(line) = report.fsync_line() {
                    eprintln!("{line}");
                }
            } else {
                print!("{}", report.text());
                if let Some(line) = report.fsync_line() {
                    println!("{line}");
                }
            }
            ExitCode::from(report.verdict.exit_code as u8)
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &diskbench::Error) -> ExitCode {
    eprintln!("diskbench: {e}");
    ExitCode::from(EXIT_ERROR)
}
