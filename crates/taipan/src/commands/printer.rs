//! The terminal side of `taipan_server::report`: each event of `taipan dev`
//! and `taipan serve` as the line the operator reads, and the spinner while
//! a build runs.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::ProgressBar;
use taipan_runtime::engine::fmt_duration;
use taipan_server::report::{Event, Reporter};

#[derive(Default)]
pub struct Printer {
    spinner: Mutex<Option<ProgressBar>>,
}

impl Printer {
    fn stop_spinner(&self) {
        if let Some(spinner) = self
            .spinner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            spinner.finish_and_clear();
        }
    }
}

impl Reporter for Printer {
    fn report(&self, event: Event<'_>) {
        match event {
            Event::Building { worker } => {
                let spinner =
                    ProgressBar::new_spinner().with_message(format!("Building {worker}..."));
                spinner.enable_steady_tick(Duration::from_millis(120));
                *self.spinner.lock().unwrap_or_else(|e| e.into_inner()) = Some(spinner);
            }
            Event::Built {
                worker,
                elapsed,
                packages,
            } => {
                self.stop_spinner();
                println!("Built {worker} in {}", fmt_duration(elapsed));
                if !packages.is_empty() {
                    println!("Packages: {}", packages.join(", "));
                }
            }
            Event::BuildFailed => self.stop_spinner(),
            Event::Warning(warning) => println!("warning: {warning}"),
            Event::Output {
                worker,
                request,
                stderr,
                line,
            } => {
                let stream = if stderr { "!" } else { " " };
                println!("[{worker}] {request}{stream}| {line}");
            }
            Event::Request {
                worker,
                line,
                status,
                elapsed,
            } => println!(
                "[{worker}] {line} {status} ({:.1}ms)",
                elapsed.as_secs_f64() * 1e3
            ),
            Event::Ready { url, scheduled } => {
                if let Some(scheduled) = scheduled {
                    println!("Scheduled events: {scheduled}");
                }
                println!("Ready on {url}");
            }
            Event::Changed(path) => println!("Change in {}; rebuilding...", path.display()),
            Event::Reloaded { worker, elapsed } => {
                println!("Reloaded {worker} in {}", fmt_duration(elapsed))
            }
            Event::ReloadFailed(error) => {
                println!("error: {error}\nThe previous build keeps serving.")
            }
            Event::Serving {
                workers,
                public,
                admin,
            } => {
                println!("Serving {workers} worker(s) on {public}");
                println!("Admin API on {admin}");
            }
            Event::ShuttingDown => println!("Shutting down: finishing requests in flight..."),
            Event::Stopped => println!("Stopped."),
        }
    }
}
