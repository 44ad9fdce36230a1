//! One guest call: driving it to its end whoever is waiting, its deadline
//! while it waits in the host, and what its failure means (which limit, what
//! status). The worker (`worker.rs`) decides where the sandbox goes after.

use std::time::Duration;

use http::StatusCode;

pub type GuestCall = std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

/// A guest call that must run to completion: if whoever polls it goes away
/// (the client disconnected), the rest of it is spawned rather than dropped
/// mid-instruction, so the handler and its `waitUntil` work still finish.
pub struct Detached(pub Option<GuestCall>);

impl Detached {
    /// Drive the call to its end (cancel-safe: dropping this future leaves
    /// the call in place, to be resumed or detached).
    pub async fn run(&mut self) -> wasmtime::Result<()> {
        let Some(call) = self.0.as_mut() else {
            return Ok(());
        };
        let outcome = call.await;
        self.0 = None;
        outcome
    }

    /// Finish the call in the background, then `then(outcome)`.
    pub fn detach(mut self, then: impl FnOnce(wasmtime::Result<()>) + Send + 'static) {
        if let Some(call) = self.0.take() {
            tokio::spawn(async move { then(call.await) });
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(call) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            tokio::spawn(call);
        }
    }
}

/// How long past `cpu_time` a guest call waiting in the host may go on
/// before it is ended (the epoch trap ends a running one first).
pub const WAIT_GRACE: Duration = Duration::from_secs(1);

/// A guest call ended at its time limit while it waited in the host.
#[derive(Debug)]
pub struct WaitedPastLimit;

impl std::fmt::Display for WaitedPastLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the guest call was still waiting when its time limit ran out")
    }
}

impl std::error::Error for WaitedPastLimit {}

/// Which limit (if any) a guest failure means, and the status it gets.
pub fn classify_trap(error: &wasmtime::Error) -> (StatusCode, Option<&'static str>) {
    if error.downcast_ref::<WaitedPastLimit>().is_some() {
        return (StatusCode::SERVICE_UNAVAILABLE, Some("cpu_time"));
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => (StatusCode::SERVICE_UNAVAILABLE, Some("cpu_time")),
        Some(wasmtime::Trap::StackOverflow) => (StatusCode::INTERNAL_SERVER_ERROR, Some("stack")),
        _ if format!("{error:?}").contains("memory") && format!("{error:?}").contains("limit") => {
            (StatusCode::SERVICE_UNAVAILABLE, Some("memory"))
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn failures_map_to_limits_and_statuses() {
        let cases = [
            (
                wasmtime::Error::new(WaitedPastLimit),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("cpu_time"),
            ),
            (
                wasmtime::Error::new(wasmtime::Trap::Interrupt),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("cpu_time"),
            ),
            (
                wasmtime::Error::new(wasmtime::Trap::StackOverflow),
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("stack"),
            ),
            (
                wasmtime::Error::msg("memory limit exceeded"),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("memory"),
            ),
            (
                wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ),
        ];
        for (error, status, limit) in cases {
            assert_eq!(classify_trap(&error), (status, limit), "{error:?}");
        }
    }

    /// A call whose caller goes away still runs to its end.
    #[tokio::test]
    async fn a_dropped_call_finishes_in_the_background() {
        let finished = Arc::new(AtomicBool::new(false));
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let flag = finished.clone();
        let mut call = Detached(Some(Box::pin(async move {
            let _ = wait.await;
            flag.store(true, Ordering::Release);
            Ok(())
        })));
        // The caller polls once, then gives up (a client disconnecting).
        let _ = tokio::time::timeout(Duration::from_millis(1), call.run()).await;
        drop(call);
        go.send(()).unwrap();
        for _ in 0..100 {
            if finished.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the detached call never finished");
    }
}
