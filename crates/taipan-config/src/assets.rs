//! `[assets]`: a folder of static files served by the host, as Workers
//! Static Assets (`directory`, `binding`, `run_worker_first`,
//! `not_found_handling`, `html_handling`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ConfigError;
use crate::raw::RawConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetsConfig {
    /// As written, relative to the project folder.
    pub directory: String,
    /// `env.NAME` for `await env.ASSETS.fetch(request)`.
    pub binding: Option<String>,
    /// Paths where the worker runs before assets are looked at: `true` is
    /// `["/*"]`; `!` patterns exclude.
    pub run_worker_first: Vec<String>,
    pub not_found_handling: NotFoundHandling,
    pub html_handling: HtmlHandling,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotFoundHandling {
    /// A plain 404 (or the worker, when there is one).
    #[default]
    None,
    /// The nearest `404.html` up the path, with status 404.
    #[serde(rename = "404-page")]
    NotFoundPage,
    /// `/index.html` with status 200 for navigation requests.
    SinglePageApplication,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HtmlHandling {
    /// `/page` serves `page.html`, `/dir/` serves `dir/index.html`; the other
    /// spellings redirect to those.
    #[default]
    AutoTrailingSlash,
    /// Like auto, but every HTML page is served at a path ending in `/`.
    ForceTrailingSlash,
    /// Like auto, but no HTML page is served at a path ending in `/`.
    DropTrailingSlash,
    /// Only exact file paths.
    None,
}

/// Read `[assets]`, if present; `directory` must exist under `project_dir`.
pub fn parse(raw: &RawConfig, project_dir: &Path) -> Result<Option<AssetsConfig>, ConfigError> {
    let Some(value) = raw.get("assets") else {
        return Ok(None);
    };
    let Value::Object(table) = value else {
        return Err(raw
            .error("assets", "`assets` must be a table")
            .hint("write [assets] with directory = \"./public\""));
    };
    let field = |name: &str| table.get(name);
    let directory = match field("directory") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None => {
            return Err(raw
                .error("assets", "`assets` has no `directory`")
                .hint("name the folder of static files: directory = \"./public\""));
        }
        Some(_) => return Err(raw.error("assets", "`assets.directory` must be a path")),
    };
    let dir = project_dir.join(&directory);
    if !dir.is_dir() {
        return Err(raw
            .error(
                "assets",
                format!("`assets.directory` points to \"{directory}\", which is not a folder"),
            )
            .hint(format!("create \"{}\" or fix the path", dir.display())));
    }
    let binding = match field("binding") {
        None => None,
        Some(Value::String(s)) if crate::bindings::is_identifier(s) => Some(s.clone()),
        Some(_) => {
            return Err(raw
                .error(
                    "assets",
                    "`assets.binding` must be a name such as \"ASSETS\"",
                )
                .hint("use letters, digits and underscores"));
        }
    };
    let run_worker_first = match field("run_worker_first") {
        None | Some(Value::Bool(false)) => Vec::new(),
        Some(Value::Bool(true)) => vec!["/*".to_string()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item.as_str() {
                Some(p) if p.starts_with('/') || p.starts_with("!/") => Ok(p.to_string()),
                _ => Err(raw
                    .error(
                        "assets",
                        format!("`assets.run_worker_first` has the pattern {item}, which does not start with \"/\" or \"!/\""),
                    )
                    .hint("write paths such as \"/api/*\", or \"!/api/docs/*\" to exclude")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(raw.error(
                "assets",
                "`assets.run_worker_first` must be true, false or a list of path patterns",
            ));
        }
    };
    Ok(Some(AssetsConfig {
        directory,
        binding,
        run_worker_first,
        not_found_handling: choice(raw, field("not_found_handling"), "not_found_handling")?,
        html_handling: choice(raw, field("html_handling"), "html_handling")?,
    }))
}

fn choice<T: Default + for<'de> Deserialize<'de>>(
    raw: &RawConfig,
    value: Option<&Value>,
    name: &str,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            let allowed = match name {
                "not_found_handling" => "\"none\", \"404-page\" or \"single-page-application\"",
                _ => {
                    "\"auto-trailing-slash\", \"force-trailing-slash\", \"drop-trailing-slash\" or \"none\""
                }
            };
            raw.error("assets", format!("`assets.{name}` is {v}; it must be {allowed}"))
        }),
    }
}

impl AssetsConfig {
    /// Whether the worker runs before assets for `path` (`!` patterns win).
    pub fn worker_first(&self, path: &str) -> bool {
        let mut include = false;
        for pattern in &self.run_worker_first {
            if let Some(excluded) = pattern.strip_prefix('!') {
                if glob(excluded, path) {
                    return false;
                }
            } else if glob(pattern, path) {
                include = true;
            }
        }
        include
    }
}

/// `*` matches any run of characters, `/` included, as in wrangler's patterns.
fn glob(pattern: &str, path: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == path;
    };
    let Some(mut tail) = path.strip_prefix(head) else {
        return false;
    };
    loop {
        if glob(rest, tail) {
            return true;
        }
        let mut chars = tail.chars();
        if chars.next().is_none() {
            return false;
        }
        tail = chars.as_str();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_toml(text: &str) -> Result<Option<AssetsConfig>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("public")).unwrap();
        let raw = RawConfig::parse(&dir.path().join("wrangler.toml"), text.into()).unwrap();
        parse(&raw, dir.path())
    }

    #[test]
    fn reads_the_table() {
        let assets = parse_toml(
            "[assets]\ndirectory = \"./public\"\nbinding = \"ASSETS\"\nnot_found_handling = \"404-page\"\nrun_worker_first = [\"/api/*\", \"!/api/docs/*\"]\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(assets.binding.as_deref(), Some("ASSETS"));
        assert_eq!(assets.not_found_handling, NotFoundHandling::NotFoundPage);
        assert_eq!(assets.html_handling, HtmlHandling::AutoTrailingSlash);
        assert!(assets.worker_first("/api/users/1"));
        assert!(!assets.worker_first("/api/docs/x"));
        assert!(!assets.worker_first("/index.html"));
        let all = parse_toml("[assets]\ndirectory = \"public\"\nrun_worker_first = true\n")
            .unwrap()
            .unwrap();
        assert!(all.worker_first("/"));
    }

    #[test]
    fn clear_errors() {
        let missing = parse_toml("[assets]\ndirectory = \"./dist\"\n").unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("\"./dist\", which is not a folder")
        );
        let bad = parse_toml("[assets]\ndirectory = \"public\"\nnot_found_handling = \"spa\"\n")
            .unwrap_err();
        assert!(bad.to_string().contains("single-page-application"), "{bad}");
        let pattern =
            parse_toml("[assets]\ndirectory = \"public\"\nrun_worker_first = [\"api\"]\n")
                .unwrap_err();
        assert!(pattern.to_string().contains("\"/api/*\""), "{pattern}");
    }

    #[test]
    fn globs() {
        assert!(glob("/*", "/"));
        assert!(glob("/*.js", "/a/b.js"));
        assert!(!glob("/*.js", "/a/b.css"));
        assert!(glob("/api/*/x", "/api/1/2/x"));
    }
}
