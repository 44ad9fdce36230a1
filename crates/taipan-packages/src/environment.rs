//! The sandbox as package metadata sees it: PEP 508 markers, wheel tags, and
//! the distributions the runtime itself provides.

use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};

pub const PYTHON_VERSION: &str = "3.14";
pub const PYTHON_FULL_VERSION: &str = "3.14.0";

/// Markers evaluate as inside a sandbox: CPython 3.14 on WASI, wasm32.
pub fn markers() -> MarkerEnvironment {
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: PYTHON_FULL_VERSION,
        os_name: "posix",
        platform_machine: "wasm32",
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "WASI",
        platform_version: "",
        python_full_version: PYTHON_FULL_VERSION,
        python_version: PYTHON_VERSION,
        sys_platform: "wasi",
    })
    .expect("the sandbox's marker versions are valid")
}

/// Distributions the runtime provides itself (its `workers` SDK and the
/// Workers CLI): never installed over Taipan's own SDK.
pub const PROVIDED: &[&str] = &["workers-runtime-sdk", "workers-py", "webtypy", "pyodide-py"];

pub fn is_provided(name: &str) -> bool {
    PROVIDED.contains(&name)
}

/// Whether a wheel with these tags runs in the sandbox: pure Python only.
pub fn wheel_fits(python: &str, abi: &str, platform: &str) -> bool {
    let python_ok = python.split('.').any(|t| {
        t == "py3"
            || t == "py2.py3"
            || t.strip_prefix("py3")
                .is_some_and(|minor| minor.parse::<u32>().is_ok_and(|m| m <= 14))
    });
    let abi_ok = abi.split('.').any(|t| t == "none");
    let platform_ok = platform.split('.').any(|t| t == "any");
    python_ok && abi_ok && platform_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_wheels_only() {
        assert!(wheel_fits("py3", "none", "any"));
        assert!(wheel_fits("py2.py3", "none", "any"));
        assert!(wheel_fits("py314", "none", "any"));
        assert!(!wheel_fits("py315", "none", "any"));
        assert!(!wheel_fits("cp314", "cp314", "manylinux_2_17_x86_64"));
        assert!(!wheel_fits("py2", "none", "any"));
        assert!(!wheel_fits("py3", "none", "win_amd64"));
    }

    #[test]
    fn markers_see_wasi() {
        let req: pep508_rs::Requirement = "colorama; sys_platform == 'win32'".parse().unwrap();
        assert!(!req.evaluate_markers(&markers(), &[]));
        let req: pep508_rs::Requirement =
            "exceptiongroup; python_version < '3.11'".parse().unwrap();
        assert!(!req.evaluate_markers(&markers(), &[]));
        let req: pep508_rs::Requirement = "tzdata; python_version >= '3.9'".parse().unwrap();
        assert!(req.evaluate_markers(&markers(), &[]));
    }
}
