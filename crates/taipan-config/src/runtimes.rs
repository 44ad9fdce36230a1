//! Python runtimes and how a worker's compatibility date and flags pick one.
//!
//! Rules (modelled on Cloudflare's, see docs/config.md):
//! - a dated flag (`python_workers_YYYYMMDD`) that a runtime lists selects it;
//! - otherwise the newest runtime whose `default_from` is on or before the
//!   compatibility date; a date older than every runtime gets the oldest;
//! - a compatibility date in the future is an error;
//! - a runtime past its five-year support window moves forward to the next
//!   oldest supported runtime, with a warning.

use jiff::civil::Date;
use jiff::{Span, ToSpan};

#[derive(Debug, PartialEq, Eq)]
pub struct PythonRuntime {
    /// Stable identifier, part of every build's cache key.
    pub id: &'static str,
    pub python_version: &'static str,
    /// Where the interpreter comes from.
    pub source: &'static str,
    /// The Python release date: the support window counts from here.
    pub released: Date,
    /// Compatibility dates on or after this get this runtime by default.
    pub default_from: Date,
    /// Compatibility flags that select this runtime explicitly.
    pub flags: &'static [&'static str],
}

/// How long a Python release is supported after its release.
pub fn support_window() -> Span {
    5.years()
}

impl PythonRuntime {
    pub fn supported_until(&self) -> Date {
        self.released
            .checked_add(support_window())
            .expect("support window fits in a date")
    }
}

/// Taipan's runtimes, oldest first.
pub static RUNTIMES: &[PythonRuntime] = &[PythonRuntime {
    id: "cpython-3.14",
    python_version: "3.14",
    source: "CPython 3.14 for WASI, from the componentize-py 0.25 crate",
    released: jiff::civil::date(2025, 10, 7),
    default_from: jiff::civil::date(2024, 4, 1),
    // Cloudflare's dated Python flag; Taipan serves it with its oldest runtime.
    flags: &["python_workers_20250116"],
}];

/// The generic flag that marks a Python worker (no runtime choice of its own).
pub const PYTHON_WORKERS_FLAG: &str = "python_workers";

#[derive(Debug, PartialEq, Eq)]
pub struct RuntimeChoice {
    pub runtime: &'static PythonRuntime,
    pub warnings: Vec<String>,
}

/// Pick the runtime for a worker. `today` is passed in so tests can fix it.
pub fn choose(
    runtimes: &'static [PythonRuntime],
    compatibility_date: Date,
    flags: &[String],
    today: Date,
) -> Result<RuntimeChoice, String> {
    if compatibility_date > today {
        return Err(format!(
            "the compatibility date {compatibility_date} is in the future (today is {today})"
        ));
    }
    let oldest = runtimes.first().ok_or("no Python runtimes are built in")?;
    let mut warnings = Vec::new();
    let dated: Vec<&String> = flags
        .iter()
        .filter(|f| f.starts_with("python_workers_"))
        .collect();
    let mut chosen = match dated.as_slice() {
        [] => runtimes
            .iter()
            .rev()
            .find(|r| r.default_from <= compatibility_date)
            .unwrap_or(oldest),
        [flag] => runtimes
            .iter()
            .find(|r| r.flags.contains(&flag.as_str()))
            .ok_or_else(|| {
                let known: Vec<&str> = runtimes
                    .iter()
                    .flat_map(|r| r.flags.iter().copied())
                    .collect();
                format!(
                    "unknown Python runtime flag `{flag}`; known flags: {}",
                    known.join(", ")
                )
            })?,
        _ => {
            return Err(format!(
                "several Python runtime flags are set ({}); keep one",
                dated
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    if chosen.supported_until() < today {
        let next = runtimes
            .iter()
            .find(|r| r.released > chosen.released && r.supported_until() >= today);
        match next {
            Some(next) => {
                warnings.push(format!(
                    "Python {} left its support window on {}; this worker runs on Python {} instead. \
                     Update compatibility_date to stay on a supported runtime.",
                    chosen.python_version,
                    chosen.supported_until(),
                    next.python_version
                ));
                chosen = next;
            }
            None => warnings.push(format!(
                "Python {} left its support window on {} and no newer runtime is built in",
                chosen.python_version,
                chosen.supported_until()
            )),
        }
    }
    Ok(RuntimeChoice {
        runtime: chosen,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    static TABLE: &[PythonRuntime] = &[
        PythonRuntime {
            id: "py-a",
            python_version: "3.12",
            source: "test",
            released: date(2023, 10, 2),
            default_from: date(2024, 4, 1),
            flags: &["python_workers_20240401"],
        },
        PythonRuntime {
            id: "py-b",
            python_version: "3.13",
            source: "test",
            released: date(2024, 10, 7),
            default_from: date(2025, 1, 16),
            flags: &["python_workers_20250116"],
        },
        PythonRuntime {
            id: "py-c",
            python_version: "3.14",
            source: "test",
            released: date(2025, 10, 7),
            default_from: date(2025, 11, 1),
            flags: &["python_workers_20251101"],
        },
    ];

    fn pick(d: Date, flags: &[&str], today: Date) -> Result<RuntimeChoice, String> {
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        choose(TABLE, d, &flags, today)
    }

    #[test]
    fn date_picks_newest_default() {
        let today = date(2026, 1, 1);
        assert_eq!(
            pick(date(2024, 6, 1), &[], today).unwrap().runtime.id,
            "py-a"
        );
        assert_eq!(
            pick(date(2025, 1, 16), &[], today).unwrap().runtime.id,
            "py-b"
        );
        assert_eq!(
            pick(date(2025, 12, 1), &[], today).unwrap().runtime.id,
            "py-c"
        );
    }

    #[test]
    fn old_dates_get_the_oldest_runtime() {
        assert_eq!(
            pick(date(2019, 1, 1), &[], date(2026, 1, 1))
                .unwrap()
                .runtime
                .id,
            "py-a"
        );
    }

    #[test]
    fn future_dates_are_errors() {
        assert!(
            pick(date(2026, 1, 2), &[], date(2026, 1, 1))
                .unwrap_err()
                .contains("future")
        );
    }

    #[test]
    fn dated_flags_select_a_runtime() {
        let today = date(2026, 1, 1);
        let choice = pick(
            date(2024, 6, 1),
            &["python_workers", "python_workers_20250116"],
            today,
        )
        .unwrap();
        assert_eq!(choice.runtime.id, "py-b");
        assert!(
            pick(date(2024, 6, 1), &["python_workers_20990101"], today)
                .unwrap_err()
                .contains("unknown")
        );
    }

    #[test]
    fn expired_runtimes_move_forward_with_a_warning() {
        // py-a (released 2023-10-02) is out of support after 2028-10-02.
        let choice = pick(date(2024, 6, 1), &[], date(2028, 10, 3)).unwrap();
        assert_eq!(choice.runtime.id, "py-b");
        assert_eq!(choice.warnings.len(), 1);
        assert!(choice.warnings[0].contains("support window"));
        // The day before, it stays.
        assert_eq!(
            pick(date(2024, 6, 1), &[], date(2028, 10, 2))
                .unwrap()
                .runtime
                .id,
            "py-a"
        );
    }

    #[test]
    fn builtin_table_is_ordered_and_valid() {
        assert!(RUNTIMES.windows(2).all(|w| w[0].released < w[1].released));
        let today = date(2026, 11, 25);
        let flags = vec![PYTHON_WORKERS_FLAG.to_string()];
        assert_eq!(
            choose(RUNTIMES, date(2024, 4, 1), &flags, today)
                .unwrap()
                .runtime
                .id,
            "cpython-3.14"
        );
    }
}
