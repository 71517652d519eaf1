//! Run control shared by every workload: the stop flag set by SIGINT/SIGTERM, and progress display.
//!
//! The signal handler (installed by the binary) only stores `true` into [`Control::stop`]; workloads check it
//! between operations and unwind with [`Error::Interrupted`], so the work directory is removed on the way out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{Error, Result};

/// Shared by the binary's signal handler and every workload.
#[derive(Debug, Clone)]
pub struct Control {
    stop: Arc<AtomicBool>,
    progress: bool,
}

impl Control {
    /// `progress`: draw bars on stderr (only where stderr is a terminal).
    pub fn new(progress: bool) -> Self {
        Control { stop: Arc::new(AtomicBool::new(false)), progress }
    }

    /// The flag a signal handler sets to stop the run.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// `Err(Interrupted)` once a stop was requested.
    pub fn check(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) { Err(Error::Interrupted) } else { Ok(()) }
    }

    /// Whether a stop was requested.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A progress bar for one run: `len` units (ops, bytes or milliseconds), labelled `label`.
    pub fn bar(&self, len: u64, label: String) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(8));
        let style = ProgressStyle::with_template("{prefix:>34} [{bar:30}] {percent:>3}% {elapsed:>4}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label);
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }
}
