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
