//! Workflows: durable multi-step runs. An instance's `run` is replayed from
//! the start each time it resumes; each step's result is stored the moment
//! it completes (by the guest, through [`store::STEPS_OP`]), so a replay
//! returns it without running the step again, and a restart (or a crash
//! mid-run) resumes after the last completed step. Sleeps, retry delays and
//! waits for events suspend the instance with no sandbox held; the
//! [`engine`] wakes it at its time, or when its event arrives.
//!
//! Where instances live is a [`store::WorkflowStore`]: a SQLite file on a
//! single node ([`sqlite`]), the cluster database in cluster mode
//! ([`postgres`]).
//!
//! Statuses, as on Workers: `queued` (created, not yet run), `running`,
//! `waiting` (sleeping or waiting for an event), `paused`, `complete`,
//! `errored`, `terminated`.

pub mod binding;
pub mod engine;
pub mod postgres;
pub mod sqlite;
pub mod store;
#[cfg(test)]
mod tests;

/// The longest instance id.
pub const MAX_ID_BYTES: usize = 100;
/// The largest step result or event payload, as JSON.
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// Instances of one workflow run at once on a node.
pub const MAX_CONCURRENT_RUNS: usize = 8;

/// Whether `id` may name an instance (letters, digits, `-`, `_`).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
