//! Watching a project for edits, debounced, ignoring Taipan's own output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Edits closer together than this are one change.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// A running watcher; dropping it stops watching.
pub struct ProjectWatcher {
    _watcher: RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<PathBuf>,
}

impl ProjectWatcher {
    /// Watch `dir`, except under `live` (folders served as they are, such
    /// as `[assets]`: an edit there needs no rebuild).
    pub fn new(dir: &Path, live: Vec<PathBuf>) -> Result<Self> {
        let (sender, changes) = mpsc::unbounded_channel();
        let root = dir.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                for path in event.paths {
                    if is_relevant(&root, &path) && !live.iter().any(|l| path.starts_with(l)) {
                        let _ = sender.send(path);
                    }
                }
            })?;
        watcher.watch(dir, RecursiveMode::Recursive)?;
        Ok(Self {
            _watcher: watcher,
            changes,
        })
    }

    /// Wait for the next change, then for the edits to settle. None: watcher gone.
    pub async fn next_change(&mut self) -> Option<PathBuf> {
        let first = self.changes.recv().await?;
        loop {
            match tokio::time::timeout(DEBOUNCE, self.changes.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return Some(first),
            }
        }
    }
}

/// Changes under hidden folders (.taipan, .git), caches and editor temp files don't count.
fn is_relevant(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    // `.dev.vars` holds dev secrets: editing it reloads, like the code.
    if rel == Path::new(".dev.vars") {
        return true;
    }
    // Written by the build itself (`taipan.lock`): not an edit.
    if rel == Path::new("taipan.lock") {
        return false;
    }
    !rel.components().any(|c| {
        let name = c.as_os_str().to_string_lossy();
        name.starts_with('.')
            || name == "__pycache__"
            || name.ends_with('~')
            || name.ends_with(".swp")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_taipan_output_and_caches() {
        let root = Path::new("/p");
        assert!(is_relevant(root, Path::new("/p/src/entry.py")));
        assert!(is_relevant(root, Path::new("/p/wrangler.toml")));
        assert!(!is_relevant(root, Path::new("/p/.taipan/builds/x")));
        assert!(!is_relevant(root, Path::new("/p/src/__pycache__/a.pyc")));
        assert!(!is_relevant(root, Path::new("/p/src/.entry.py.swp")));
    }
}
