//! Where distributions come from: `--find-links` folders and a package index
//! (the PEP 691 JSON simple API, PyPI by default), with a content-addressed
//! download cache so a rebuild needs no network.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::dist::{DistFile, normalize};
use crate::lock::hex;

pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// None: no index (`--no-index`), only `find_links`.
    pub index_url: Option<String>,
    pub find_links: Vec<PathBuf>,
    /// Downloads and installed sets (`<cache>/files`, `<cache>/sites`).
    pub cache: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Location {
    Path(PathBuf),
    Url(String),
}

#[derive(Debug, Clone)]
pub struct Candidate {
    pub file: DistFile,
    pub location: Location,
    /// Known before download (from the index), else computed on fetch.
    pub sha256: Option<String>,
    pub requires_python: Option<String>,
    /// A PEP 658 metadata file next to the distribution.
    pub metadata_url: Option<String>,
}

/// What resolution needs from a distribution's metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub requires_dist: Vec<String>,
    pub requires_python: Option<String>,
}

pub struct Sources {
    options: SourceOptions,
    client: Option<reqwest::blocking::Client>,
    listed: Mutex<HashMap<String, Vec<Candidate>>>,
    hashes: Mutex<HashMap<PathBuf, String>>,
}

impl Sources {
    pub fn new(options: &SourceOptions) -> Result<Self> {
        for dir in &options.find_links {
            if !dir.is_dir() {
                bail!(
                    "--find-links \"{}\" is not a folder\nhint: pass a folder of .whl / .tar.gz files",
                    dir.display()
                );
            }
        }
        // The WASI wheels Taipan ships are always a source, offline or not.
        let mut options = options.clone();
        if let Some(shipped) = crate::shipped::folder(&options.cache)? {
            options.find_links.push(shipped);
        }
        let client = match &options.index_url {
            Some(_) => Some(
                reqwest::blocking::Client::builder()
                    .user_agent(concat!("taipan/", env!("CARGO_PKG_VERSION")))
                    .timeout(std::time::Duration::from_secs(120))
                    .build()?,
            ),
            None => None,
        };
        Ok(Self {
            options,
            client,
            listed: Mutex::default(),
            hashes: Mutex::default(),
        })
    }

    /// Every distribution file of `name` (normalized) the sources offer.
    pub fn candidates(&self, name: &str) -> Result<Vec<Candidate>> {
        if let Some(found) = self
            .listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(found.clone());
        }
        let mut found = Vec::new();
        for dir in &self.options.find_links {
            for entry in std::fs::read_dir(dir)?.flatten() {
                let filename = entry.file_name().to_string_lossy().into_owned();
                if let Some(file) = DistFile::parse(&filename).filter(|f| f.name == name) {
                    found.push(Candidate {
                        file,
                        location: Location::Path(entry.path()),
                        sha256: None,
                        requires_python: None,
                        metadata_url: None,
                    });
                }
            }
        }
        if let (Some(index), Some(client)) = (&self.options.index_url, &self.client) {
            found.extend(index_candidates(client, index, name)?);
        }
        self.listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// A local copy of `candidate`, its sha256 checked when one is known.
    pub fn fetch(&self, candidate: &Candidate) -> Result<(PathBuf, String)> {
        match &candidate.location {
            Location::Path(path) => {
                let sha = self.hash_of(path)?;
                if let Some(expected) = &candidate.sha256
                    && expected != &sha
                {
                    bail!("\"{}\" does not match its expected sha256", path.display());
                }
                Ok((path.clone(), sha))
            }
            Location::Url(url) => {
                if let Some(sha) = &candidate.sha256 {
                    let cached = self.cached(sha, &candidate.file.filename);
                    if cached.is_file() {
                        return Ok((cached, sha.clone()));
                    }
                }
                let client = self
                    .client
                    .as_ref()
                    .context("no package index is configured")?;
                let bytes = get(client, url)?;
                let sha = hex(&Sha256::digest(&bytes));
                if let Some(expected) = &candidate.sha256
                    && expected != &sha
                {
                    bail!(
                        "{} downloaded from {url} does not match the index's sha256",
                        candidate.file.filename
                    );
                }
                let path = self.cached(&sha, &candidate.file.filename);
                std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                let tmp = path.with_extension("partial");
                std::fs::write(&tmp, &bytes)?;
                std::fs::rename(&tmp, &path)?;
                Ok((path, sha))
            }
        }
    }

    /// A locked file: from the cache, a find-links folder or the index, verified.
    pub fn fetch_locked(&self, locked: &crate::Locked) -> Result<PathBuf> {
        let cached = self.cached(&locked.sha256, &locked.filename);
        if cached.is_file() {
            return Ok(cached);
        }
        let candidate = self
            .candidates(&locked.name)?
            .into_iter()
            .find(|c| c.file.filename == locked.filename)
            .with_context(|| {
                format!(
                    "{} (locked in taipan.lock) is in none of the package sources\nhint: pass --find-links or --index-url where it is, or delete taipan.lock to resolve again",
                    locked.filename
                )
            })?;
        let (path, sha) = self.fetch(&candidate)?;
        if sha != locked.sha256 {
            bail!(
                "{} does not match the sha256 in taipan.lock (expected {}, got {sha})\nhint: the file changed since it was locked; delete taipan.lock to accept the new one",
                locked.filename,
                locked.sha256
            );
        }
        Ok(path)
    }

    /// Requires-Dist and Requires-Python of a candidate.
    pub fn metadata(&self, candidate: &Candidate) -> Result<Metadata> {
        if let (Some(url), Some(client)) = (&candidate.metadata_url, &self.client) {
            let bytes = get(client, url)?;
            return Ok(parse_metadata(&String::from_utf8_lossy(&bytes)));
        }
        let (path, _) = self.fetch(candidate)?;
        let text = crate::install::read_metadata(&path, &candidate.file)?;
        Ok(parse_metadata(&text))
    }

    fn cached(&self, sha: &str, filename: &str) -> PathBuf {
        self.options.cache.join("files").join(sha).join(filename)
    }

    pub fn sites_dir(&self) -> PathBuf {
        self.options.cache.join("sites")
    }

    fn hash_of(&self, path: &Path) -> Result<String> {
        if let Some(sha) = self
            .hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
        {
            return Ok(sha.clone());
        }
        let mut file =
            std::fs::File::open(path).with_context(|| format!("reading \"{}\"", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let sha = hex(&hasher.finalize());
        self.hashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf(), sha.clone());
        Ok(sha)
    }
}

fn get(client: &reqwest::blocking::Client, url: &str) -> Result<Vec<u8>> {
    let response = client
        .get(url)
        .send()
        .map_err(|e| anyhow::anyhow!("downloading {url}: {}{}", error_chain(&e), tls_hint(&e)))?;
    if !response.status().is_success() {
        bail!("downloading {url}: HTTP {}", response.status());
    }
    Ok(response.bytes()?.to_vec())
}

/// The project's files from a PEP 691 JSON simple index.
fn index_candidates(
    client: &reqwest::blocking::Client,
    index: &str,
    name: &str,
) -> Result<Vec<Candidate>> {
    let base = format!("{}/{}/", index.trim_end_matches('/'), normalize(name));
    let response = client
        .get(&base)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .map_err(|e| {
            let hint = match tls_hint(&e) {
                "" => "\nhint: pass --no-index --find-links DIR to install offline",
                tls => tls,
            };
            anyhow::anyhow!(
                "asking the package index {index} for {name}: {}{hint}",
                error_chain(&e)
            )
        })?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(Vec::new());
    }
    if !response.status().is_success() {
        bail!(
            "the package index answered {} for {base}",
            response.status()
        );
    }
    let page: serde_json::Value = response
        .json()
        .with_context(|| format!("the package index's answer for {name} is not JSON (PEP 691)"))?;
    let base_url = url::Url::parse(&base)?;
    let mut out = Vec::new();
    for file in page["files"].as_array().into_iter().flatten() {
        let Some(filename) = file["filename"].as_str() else {
            continue;
        };
        let Some(parsed) = DistFile::parse(filename) else {
            continue;
        };
        let yanked = file["yanked"].as_bool().unwrap_or(false) || file["yanked"].is_string();
        if yanked {
            continue;
        }
        let Some(href) = file["url"].as_str() else {
            continue;
        };
        let url = base_url.join(href)?.to_string();
        let has_metadata = !file["core-metadata"].is_null() && file["core-metadata"] != false
            || !file["dist-info-metadata"].is_null() && file["dist-info-metadata"] != false;
        out.push(Candidate {
            metadata_url: has_metadata
                .then(|| format!("{}.metadata", url.split('#').next().unwrap_or(&url))),
            location: Location::Url(url),
            file: parsed,
            sha256: file["hashes"]["sha256"].as_str().map(str::to_string),
            requires_python: file["requires-python"].as_str().map(str::to_string),
        });
    }
    Ok(out)
}

/// `Requires-Dist` and `Requires-Python` from METADATA / PKG-INFO headers.
pub fn parse_metadata(text: &str) -> Metadata {
    let mut meta = Metadata::default();
    for line in text.lines() {
        if line.is_empty() {
            break; // the headers end; the description follows
        }
        if let Some((key, value)) = line.split_once(':') {
            match key.trim().to_ascii_lowercase().as_str() {
                "requires-dist" => meta.requires_dist.push(value.trim().to_string()),
                "requires-python" => meta.requires_python = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    meta
}

/// An error and its causes on one line: reqwest's own message alone
/// ("error sending request") hides what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What to do when the index's certificate is not trusted: the usual cause
/// is a TLS-intercepting proxy whose CA is not where Taipan looks.
fn tls_hint(e: &reqwest::Error) -> &'static str {
    // The causes only: the top-level message holds the URL, which may say anything.
    let causes = std::error::Error::source(e)
        .map(error_chain)
        .unwrap_or_default();
    if causes.contains("certificate") {
        "\nhint: Taipan trusts the system's certificate store; if a proxy intercepts TLS, add its CA there or point SSL_CERT_FILE (or SSL_CERT_DIR) at it"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_headers() {
        let meta = parse_metadata(
            "Metadata-Version: 2.1\nName: x\nRequires-Python: >=3.9\nRequires-Dist: idna>=2.5\nRequires-Dist: socksio==1.*; extra == \"socks\"\n\nRequires-Dist: not-a-header\n",
        );
        assert_eq!(meta.requires_python.as_deref(), Some(">=3.9"));
        assert_eq!(meta.requires_dist.len(), 2);
    }
}
