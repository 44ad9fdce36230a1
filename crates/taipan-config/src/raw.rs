//! The config exactly as written: a JSON value tree plus where each key sits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

/// A parsed config file: its top-level table and its source, for locating keys.
#[derive(Debug, Clone)]
pub struct RawConfig {
    pub path: PathBuf,
    pub format: Format,
    pub source: String,
    pub root: serde_json::Map<String, Value>,
    /// The environment (`--env`) this config was selected for, and the keys
    /// whose values come from its `[env.NAME]` section (for line numbers).
    pub env: Option<String>,
    env_keys: BTreeSet<String>,
}

impl RawConfig {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path, format!("could not read the config file: {e}"))
                .hint("run `taipan dev` in a folder with a wrangler.toml, or pass --config PATH")
        })?;
        Self::parse(path, source)
    }

    pub fn parse(path: &Path, source: String) -> Result<Self, ConfigError> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("json") | Some("jsonc") => Format::Json,
            _ => Format::Toml,
        };
        let value = match format {
            Format::Toml => parse_toml(path, &source)?,
            Format::Json => parse_jsonc(path, &source)?,
        };
        let Value::Object(root) = value else {
            return Err(ConfigError::new(
                path,
                "the config must be a table of keys at the top level",
            ));
        };
        Ok(Self {
            path: path.to_path_buf(),
            format,
            source,
            root,
            env: None,
            env_keys: BTreeSet::new(),
        })
    }

    /// This config with `root` as environment `env` sees it (see
    /// [`crate::environments`]); `from_env` are the keys its section set.
    pub fn with_environment(
        self,
        env: &str,
        root: serde_json::Map<String, Value>,
        from_env: BTreeSet<String>,
    ) -> Self {
        Self {
            root,
            env: Some(env.to_string()),
            env_keys: from_env,
            ..self
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.root.get(key)
    }

    /// Whether `key`'s value comes from the selected environment's section.
    pub fn env_sets(&self, key: &str) -> bool {
        self.env_keys.contains(key)
    }

    /// The 1-based line where top-level `key` is written, if it can be found.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        if let Some(env) = self.env.as_deref().filter(|_| self.env_keys.contains(key)) {
            return self.env_line_of(env, key);
        }
        self.source
            .lines()
            .position(|line| self.defines(line.trim_start(), key))
            .map(|i| i + 1)
    }

    /// Where `key` is written inside environment `env`'s section: a
    /// `[env.NAME.key]` table, or a `key` line after the section starts.
    fn env_line_of(&self, env: &str, key: &str) -> Option<usize> {
        let lines: Vec<&str> = self.source.lines().map(str::trim_start).collect();
        let (start, own_table) = match self.format {
            Format::Toml => {
                let nested = format!("env.{env}.{key}");
                if let Some(i) = lines.iter().position(|l| {
                    let l = l.trim_start_matches('[');
                    l.strip_prefix(&nested)
                        .is_some_and(|r| r.trim_start().starts_with(']'))
                }) {
                    return Some(i + 1);
                }
                let header = format!("env.{env}");
                let start = lines.iter().position(|l| {
                    l.trim_start_matches('[')
                        .strip_prefix(&header)
                        .is_some_and(|r| r.trim_start().starts_with(']'))
                })?;
                (start, true)
            }
            Format::Json => {
                let env_line = lines.iter().position(|l| self.defines(l, "env"))?;
                let start = env_line
                    + lines[env_line..]
                        .iter()
                        .position(|l| self.defines(l, env))?;
                (start, false)
            }
        };
        lines[start + 1..]
            .iter()
            // TOML: the section's own keys end at the next table header.
            .take_while(|l| !own_table || !l.starts_with('['))
            .position(|l| self.defines(l, key))
            .map(|i| start + 2 + i)
    }

    fn defines(&self, line: &str, key: &str) -> bool {
        match self.format {
            Format::Toml => {
                let rest = line
                    .strip_prefix(key)
                    .or_else(|| line.strip_prefix(&format!("\"{key}\"")))
                    .or_else(|| line.strip_prefix("[[").and_then(|l| l.strip_prefix(key)))
                    .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_prefix(key)));
                rest.is_some_and(|r| {
                    let r = r.trim_start();
                    r.starts_with('=') || r.starts_with(']') || r.starts_with('.')
                })
            }
            Format::Json => line
                .strip_prefix(&format!("\"{key}\""))
                .is_some_and(|r| r.trim_start().starts_with(':')),
        }
    }

    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.path, message).at(key, self.line_of(key))
    }
}

fn parse_toml(path: &Path, source: &str) -> Result<Value, ConfigError> {
    let table: toml::Table = toml::from_str(source).map_err(|e| {
        let line = e.span().map(|span| line_at(source, span.start));
        let mut err = ConfigError::new(
            path,
            format!("the config is not valid TOML: {}", e.message()),
        );
        err.line = line;
        err.hint("check the quoting and the `key = value` syntax around that line")
    })?;
    serde_json::to_value(toml::Value::Table(table)).map_err(|e| {
        ConfigError::new(
            path,
            format!("the config has a value Taipan cannot read: {e}"),
        )
    })
}

fn parse_jsonc(path: &Path, source: &str) -> Result<Value, ConfigError> {
    let options = jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: false,
        allow_trailing_commas: true,
    };
    match jsonc_parser::parse_to_serde_value(source, &options) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(ConfigError::new(path, "the config file is empty")),
        Err(e) => {
            let mut err =
                ConfigError::new(path, format!("the config is not valid JSON: {}", e.kind()));
            err.line = Some(line_at(source, e.range().start));
            Err(err.hint("comments and trailing commas are allowed; check the brackets and quotes"))
        }
    }
}

fn line_at(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_have_lines() {
        let raw = RawConfig::parse(
            Path::new("wrangler.toml"),
            "name = \"a\"\n\nmain = \"src/entry.py\"\n[vars]\nX = \"1\"\n".into(),
        )
        .unwrap();
        assert_eq!(raw.line_of("main"), Some(3));
        assert_eq!(raw.line_of("vars"), Some(4));
        assert_eq!(raw.line_of("missing"), None);
    }

    #[test]
    fn jsonc_allows_comments_and_trailing_commas() {
        let raw = RawConfig::parse(
            Path::new("wrangler.jsonc"),
            "{\n  // a comment\n  \"name\": \"a\",\n  \"main\": \"src/entry.py\",\n}\n".into(),
        )
        .unwrap();
        assert_eq!(raw.get("name").unwrap(), "a");
        assert_eq!(raw.line_of("main"), Some(4));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = RawConfig::parse(Path::new("wrangler.toml"), "name = \"a\"\nmain = \n".into())
            .unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        let err = RawConfig::parse(
            Path::new("wrangler.json"),
            "{\n\"name\": \"a\",\n\"main\": }".into(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
    }
}
