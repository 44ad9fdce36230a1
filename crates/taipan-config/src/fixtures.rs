//! A throwaway worker project on disk, for tests that load a whole config.

use jiff::civil::{Date, date};

/// A temporary project with `src/entry.py` and a config file `config_name`.
pub(crate) fn project(config_name: &str, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/entry.py"), "").unwrap();
    std::fs::write(dir.path().join(config_name), config).unwrap();
    dir
}

/// The "today" tests resolve configs against.
pub(crate) const TODAY: Date = date(2026, 11, 25);

/// Load a `wrangler.toml` of a Python worker with `body` appended.
pub(crate) fn load_toml(body: &str) -> Result<crate::WorkerConfig, crate::ConfigError> {
    let dir = project(
        "wrangler.toml",
        &format!(
            "name = \"w\"\nmain = \"src/entry.py\"\ncompatibility_date = \"2025-11-01\"\ncompatibility_flags = [\"python_workers\"]\n{body}"
        ),
    );
    crate::load_at(dir.path(), TODAY)
}
