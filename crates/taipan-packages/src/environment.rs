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

/// How well a wheel with these tags fits the sandbox, best first, or `None`
/// when it cannot run there.
///
/// WASI builds (`wasi_<version>_wasm32`, the platform tag CPython's WASI
/// packaging uses) come first: one built for CPython 3.14
/// (`cp314-cp314`), then the stable ABI (`cp3X-abi3`, X ≤ 14), then a
/// WASI-only wheel with no ABI; a pure-Python wheel (`py3-none-any`) after
/// them. Builds for other platforms (manylinux, macOS, Emscripten) never fit.
pub fn wheel_rank(python: &str, abi: &str, platform: &str) -> Option<u8> {
    let any = |tags: &str, ok: &dyn Fn(&str) -> bool| tags.split('.').any(ok);
    let minor_ok = |minor: &str| minor.parse::<u32>().is_ok_and(|m| m <= 14);
    let pure_python = any(python, &|t| {
        t == "py3" || t.strip_prefix("py3").is_some_and(minor_ok)
    });
    let wasi = any(platform, &|t| {
        t.strip_prefix("wasi_")
            .is_some_and(|rest| rest.ends_with("_wasm32"))
    });
    if wasi {
        if any(python, &|t| t == "cp314") && any(abi, &|t| t == "cp314") {
            return Some(0);
        }
        let cpython3 = any(python, &|t| t.strip_prefix("cp3").is_some_and(minor_ok));
        if cpython3 && any(abi, &|t| t == "abi3") {
            return Some(1);
        }
        if (pure_python || any(python, &|t| t == "cp314")) && any(abi, &|t| t == "none") {
            return Some(2);
        }
        return None;
    }
    (pure_python && any(abi, &|t| t == "none") && any(platform, &|t| t == "any")).then_some(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_builds_first_then_pure_python_and_nothing_else() {
        let rank = |tags: &str| {
            let [python, abi, platform]: [&str; 3] =
                tags.split('-').collect::<Vec<_>>().try_into().unwrap();
            wheel_rank(python, abi, platform)
        };
        assert_eq!(rank("cp314-cp314-wasi_0_0_0_wasm32"), Some(0));
        assert_eq!(rank("cp312-abi3-wasi_0_0_0_wasm32"), Some(1));
        assert_eq!(rank("py3-none-wasi_0_0_0_wasm32"), Some(2));
        assert_eq!(rank("py3-none-any"), Some(3));
        assert_eq!(rank("py2.py3-none-any"), Some(3));
        assert_eq!(rank("py314-none-any"), Some(3));
        // Not for this sandbox.
        assert_eq!(rank("cp313-cp313-wasi_0_0_0_wasm32"), None);
        assert_eq!(rank("cp315-abi3-wasi_0_0_0_wasm32"), None);
        assert_eq!(rank("cp314-cp314-manylinux_2_17_x86_64"), None);
        assert_eq!(rank("cp314-cp314-pyodide_2025_0_wasm32"), None);
        assert_eq!(rank("cp314-cp314-emscripten_4_0_9_wasm32"), None);
        assert_eq!(rank("py315-none-any"), None);
        assert_eq!(rank("py2-none-any"), None);
        assert_eq!(rank("py3-none-win_amd64"), None);
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
