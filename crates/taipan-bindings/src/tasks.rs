//! Background tasks that live as long as a worker version's bindings (queue
//! consumers, workflow engines): aborted when their owner is dropped.

use tokio::task::AbortHandle;

#[derive(Default)]
pub struct Tasks(Vec<AbortHandle>);

impl Tasks {
    /// Spawn each future on the current tokio runtime; none without one
    /// (the CLI opens bindings but runs nothing in the background).
    pub fn spawn_all<F>(futures: impl IntoIterator<Item = F>) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self::default();
        };
        Self(
            futures
                .into_iter()
                .map(|f| runtime.spawn(f).abort_handle())
                .collect(),
        )
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
