//! What `taipan dev` and `taipan serve` tell their operator, as events. The
//! library prints nothing: the CLI owns the terminal and turns each event
//! into its line (and the build spinner); tests or an embedding program can
//! collect them instead.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use taipan_runtime::log::LogSink;

pub enum Event<'a> {
    /// A build started (dev): it may take a while.
    Building {
        worker: &'a str,
    },
    /// The build that started finished (`packages` installed, "name version").
    Built {
        worker: &'a str,
        elapsed: Duration,
        packages: &'a [String],
    },
    /// The build that started failed; the error is returned to the caller.
    BuildFailed,
    /// Something in a config the worker runs without.
    Warning(&'a str),
    /// A line a worker printed (to stderr if `stderr`) while serving
    /// `request` ("GET /path").
    Output {
        worker: &'a str,
        request: &'a str,
        stderr: bool,
        line: &'a str,
    },
    /// A request answered (dev, with request logging on).
    Request {
        worker: &'a str,
        line: &'a str,
        status: u16,
        elapsed: Duration,
    },
    /// Dev listens on `url`; `scheduled` is the URL that fires cron handlers
    /// (`--test-scheduled`).
    Ready {
        url: &'a str,
        scheduled: Option<&'a str>,
    },
    /// A watched file changed: rebuilding.
    Changed(&'a Path),
    Reloaded {
        worker: &'a str,
        elapsed: Duration,
    },
    /// A rebuild failed; the previous build keeps serving.
    ReloadFailed(&'a str),
    /// Serve listens: its public and admin URLs, and the workers restored.
    Serving {
        workers: usize,
        public: &'a str,
        admin: &'a str,
    },
    /// Ctrl-C / SIGTERM: finishing requests in flight.
    ShuttingDown,
    Stopped,
}

/// Where events go.
pub trait Reporter: Send + Sync + 'static {
    fn report(&self, event: Event<'_>);
}

/// A worker's output as [`Event::Output`]s: the sink dev and serve hand the
/// runtime.
pub struct OutputEvents(pub Arc<dyn Reporter>);

impl LogSink for OutputEvents {
    fn line(&self, worker: &str, request: &str, stderr: bool, line: &str) {
        self.0.report(Event::Output {
            worker,
            request,
            stderr,
            line,
        });
    }
}

/// Reports nothing (tests, benchmarks).
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _: Event<'_>) {}
}
