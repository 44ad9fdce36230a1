//! Static assets (`[assets]`): files served by the host before (or instead
//! of) the worker, and `env.ASSETS.fetch(request)` from inside it.
//!
//! Routing follows Workers Static Assets: a GET/HEAD that matches a file is
//! answered here unless `run_worker_first` covers its path; a miss runs the
//! worker, except navigation requests under `single-page-application`, which
//! get `/index.html`. `html_handling` decides which spelling of a page's URL
//! is canonical; the others redirect (307) to it.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};
use taipan_config::assets::{AssetsConfig, HtmlHandling, NotFoundHandling};
use taipan_runtime::host::{HostFuture, HostResponse, full_body};

use crate::protocol::stream_body;

/// Worker-lifetime: one worker's asset folder and its routing rules.
pub struct Assets {
    root: PathBuf,
    config: AssetsConfig,
    /// Content hashes by file, valid while the file's (mtime, size) holds.
    etags: Mutex<HashMap<PathBuf, (SystemTime, u64, String)>>,
}

/// Where a request path leads inside the folder.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    File(PathBuf),
    /// The canonical path of the page (307).
    Redirect(String),
    Missing,
}

impl Assets {
    pub fn open(root: &Path, config: AssetsConfig) -> anyhow::Result<Arc<Self>> {
        let root = root
            .canonicalize()
            .with_context(|| format!("opening the assets folder \"{}\"", root.display()))?;
        Ok(Arc::new(Self {
            root,
            config,
            etags: Mutex::default(),
        }))
    }

    /// The front door: an asset response, or `None` to run the worker.
    pub fn before_worker(self: &Arc<Self>, request: &http::request::Parts) -> Option<HostFuture> {
        if !matches!(request.method, Method::GET | Method::HEAD) {
            return None;
        }
        let path = request.uri.path();
        if self.config.worker_first(path) {
            return None;
        }
        match self.lookup(path) {
            Lookup::Missing => {
                let navigate = request
                    .headers
                    .get("sec-fetch-mode")
                    .is_some_and(|v| v == "navigate");
                if navigate
                    && self.config.not_found_handling == NotFoundHandling::SinglePageApplication
                {
                    Some(self.respond(Lookup::Missing, request))
                } else {
                    None
                }
            }
            found => Some(self.respond(found, request)),
        }
    }

    /// `env.ASSETS.fetch(request)`: always an asset answer, with the
    /// not-found handling applied to misses.
    pub fn fetch(self: &Arc<Self>, request: &http::request::Parts) -> HostFuture {
        if !matches!(request.method, Method::GET | Method::HEAD) {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Box::pin(async move { Ok(response) });
        }
        let found = self.lookup(request.uri.path());
        self.respond(found, request)
    }

    fn respond(self: &Arc<Self>, found: Lookup, request: &http::request::Parts) -> HostFuture {
        let (file, status) = match found {
            Lookup::File(file) => (file, StatusCode::OK),
            Lookup::Redirect(to) => {
                let location = match request.uri.query() {
                    Some(q) => format!("{to}?{q}"),
                    None => to,
                };
                let mut response = plain(StatusCode::TEMPORARY_REDIRECT, "");
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return Box::pin(async move { Ok(response) });
            }
            Lookup::Missing => match self.not_found_page(request.uri.path()) {
                Some(page) => page,
                None => {
                    let response = plain(StatusCode::NOT_FOUND, "Not Found\n");
                    return Box::pin(async move { Ok(response) });
                }
            },
        };
        let this = self.clone();
        let head = request.method == Method::HEAD;
        let if_none_match = request.headers.get(header::IF_NONE_MATCH).cloned();
        Box::pin(async move {
            match this.file_response(file, status, head, if_none_match).await {
                Ok(response) => Ok(response),
                Err(e) => {
                    tracing::warn!("serving an asset failed: {e:#}");
                    Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"))
                }
            }
        })
    }

    async fn file_response(
        self: Arc<Self>,
        file: PathBuf,
        status: StatusCode,
        head: bool,
        if_none_match: Option<HeaderValue>,
    ) -> anyhow::Result<HostResponse> {
        let this = self.clone();
        let hashed = file.clone();
        let (etag, length) = tokio::task::spawn_blocking(move || this.etag(&hashed)).await??;
        let mut response = if status == StatusCode::OK
            && if_none_match.is_some_and(|v| etag_matches(v.as_bytes(), &etag))
        {
            plain(StatusCode::NOT_MODIFIED, "")
        } else if head {
            let mut response = plain(status, "");
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, length.into());
            response
        } else {
            let reader = tokio::fs::File::open(&file).await?;
            let mut response =
                http::Response::new(stream_body(tokio_util::io::ReaderStream::new(reader)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, length.into());
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, HeaderValue::from_str(&etag)?);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=0, must-revalidate"),
        );
        if response.status() != StatusCode::NOT_MODIFIED
            && let Some(content_type) = crate::content_type::for_path(&file)
        {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type)?);
        }
        Ok(response)
    }

    /// A strong ETag from the content (cached while the file is unchanged) and the size.
    fn etag(&self, file: &Path) -> anyhow::Result<(String, u64)> {
        let meta = std::fs::metadata(file)?;
        let (modified, length) = (meta.modified()?, meta.len());
        let etags = self.etags.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((m, l, tag)) = etags.get(file)
            && *m == modified
            && *l == length
        {
            return Ok((tag.clone(), length));
        }
        drop(etags);
        let mut hasher = Sha256::new();
        let mut reader = std::fs::File::open(file)?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let digest = hasher.finalize();
        let tag = format!(
            "\"{}\"",
            digest[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        self.etags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(file.to_path_buf(), (modified, length, tag.clone()));
        Ok((tag, length))
    }

    /// The page served for a miss under `not_found_handling`, and its status.
    fn not_found_page(&self, path: &str) -> Option<(PathBuf, StatusCode)> {
        match self.config.not_found_handling {
            NotFoundHandling::None => None,
            NotFoundHandling::SinglePageApplication => {
                self.file("/index.html").map(|f| (f, StatusCode::OK))
            }
            NotFoundHandling::NotFoundPage => {
                let decoded = decode(path)?;
                let mut dir = decoded.as_str();
                loop {
                    dir = &dir[..dir.rfind('/')?];
                    if let Some(page) = self.file(&format!("{dir}/404.html")) {
                        return Some((page, StatusCode::NOT_FOUND));
                    }
                }
            }
        }
    }

    /// Resolve a request path under `html_handling`.
    fn lookup(&self, path: &str) -> Lookup {
        let Some(path) = decode(path) else {
            return Lookup::Missing;
        };
        if !path.ends_with(".html")
            && !path.ends_with('/')
            && let Some(file) = self.file(&path)
        {
            return Lookup::File(file);
        }
        let html = self.config.html_handling;
        if html == HtmlHandling::None {
            let exact = if path.ends_with('/') {
                format!("{path}index.html")
            } else {
                path.clone()
            };
            return self.file(&exact).map_or(Lookup::Missing, Lookup::File);
        }
        // The page's base name: "/a" for "/a", "/a/", "/a.html" and "/a/index.html".
        let base = path
            .strip_suffix("/index.html")
            .or_else(|| path.strip_suffix(".html"))
            .or_else(|| path.strip_suffix('/'))
            .unwrap_or(&path);
        let as_file = (!base.is_empty()).then(|| (format!("{base}.html"), base.to_string()));
        let as_index = (format!("{base}/index.html"), format!("{base}/"));
        let candidates = if path.ends_with('/') || path.ends_with("/index.html") {
            [Some(as_index), as_file]
        } else {
            [as_file, Some(as_index)]
        };
        for (file_path, mut canonical) in candidates.into_iter().flatten() {
            let Some(file) = self.file(&file_path) else {
                continue;
            };
            match html {
                HtmlHandling::ForceTrailingSlash if !canonical.ends_with('/') => {
                    canonical.push('/')
                }
                HtmlHandling::DropTrailingSlash if canonical.len() > 1 => {
                    canonical = canonical.trim_end_matches('/').to_string()
                }
                _ => {}
            }
            return if canonical == path {
                Lookup::File(file)
            } else {
                Lookup::Redirect(canonical)
            };
        }
        Lookup::Missing
    }

    /// The file at `/`-rooted `path`, if it exists inside the folder and no
    /// segment is hidden (dotfiles stay private, `.well-known` aside).
    fn file(&self, path: &str) -> Option<PathBuf> {
        let mut file = self.root.clone();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            let hidden = segment.starts_with('.') && segment != ".well-known";
            if hidden || segment.contains('\\') {
                return None;
            }
            file.push(segment);
        }
        let real = file.canonicalize().ok()?;
        (real.starts_with(&self.root) && real.is_file()).then_some(real)
    }
}

/// The percent-decoded path, or `None` when it cannot name a file.
fn decode(path: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?
        .into_owned();
    let bad = decoded.contains('\0') || decoded.split('/').any(|s| s == "..");
    (!bad && decoded.starts_with('/')).then_some(decoded)
}

/// `If-None-Match`: `*`, or a list of tags (weak ones compare equal too).
fn etag_matches(header: &[u8], etag: &str) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    header
        .split(',')
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

fn plain(status: StatusCode, text: &'static str) -> HostResponse {
    let mut response = http::Response::new(full_body(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    if !text.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(html: HtmlHandling, not_found: NotFoundHandling) -> (tempfile::TempDir, Arc<Assets>) {
        let dir = tempfile::tempdir().unwrap();
        for (path, body) in [
            ("index.html", "home"),
            ("file.html", "file"),
            ("folder/index.html", "folder"),
            ("folder/deep/x.txt", "x"),
            ("404.html", "not found"),
            ("folder/404.html", "folder not found"),
            (".secret", "no"),
            ("app.js", "js"),
        ] {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let config = AssetsConfig {
            directory: ".".into(),
            binding: None,
            run_worker_first: vec![],
            not_found_handling: not_found,
            html_handling: html,
        };
        let assets = Assets::open(dir.path(), config).unwrap();
        (dir, assets)
    }

    fn name(lookup: Lookup, root: &Path) -> String {
        match lookup {
            Lookup::File(f) => f
                .strip_prefix(root.canonicalize().unwrap())
                .unwrap()
                .display()
                .to_string(),
            Lookup::Redirect(to) => format!("-> {to}"),
            Lookup::Missing => "missing".into(),
        }
    }

    #[test]
    fn auto_trailing_slash() {
        let (dir, assets) = site(HtmlHandling::AutoTrailingSlash, NotFoundHandling::None);
        let cases = [
            ("/", "index.html"),
            ("/index.html", "-> /"),
            ("/file", "file.html"),
            ("/file.html", "-> /file"),
            ("/file/", "-> /file"),
            ("/folder", "-> /folder/"),
            ("/folder/", "folder/index.html"),
            ("/folder/index.html", "-> /folder/"),
            ("/folder/deep/x.txt", "folder/deep/x.txt"),
            ("/app.js", "app.js"),
            ("/%61pp.js", "app.js"),
            ("/nope", "missing"),
            ("/.secret", "missing"),
            ("/folder/../.secret", "missing"),
            ("/../etc/passwd", "missing"),
        ];
        for (path, want) in cases {
            assert_eq!(name(assets.lookup(path), dir.path()), want, "{path}");
        }
    }

    #[test]
    fn other_html_handling() {
        let (dir, force) = site(HtmlHandling::ForceTrailingSlash, NotFoundHandling::None);
        assert_eq!(name(force.lookup("/file"), dir.path()), "-> /file/");
        assert_eq!(name(force.lookup("/file/"), dir.path()), "file.html");
        let (dir, drop) = site(HtmlHandling::DropTrailingSlash, NotFoundHandling::None);
        assert_eq!(name(drop.lookup("/folder/"), dir.path()), "-> /folder");
        assert_eq!(
            name(drop.lookup("/folder"), dir.path()),
            "folder/index.html"
        );
        assert_eq!(name(drop.lookup("/"), dir.path()), "index.html");
        let (dir, none) = site(HtmlHandling::None, NotFoundHandling::None);
        assert_eq!(name(none.lookup("/file"), dir.path()), "missing");
        assert_eq!(name(none.lookup("/file.html"), dir.path()), "file.html");
        assert_eq!(name(none.lookup("/"), dir.path()), "index.html");
    }

    #[test]
    fn not_found_pages() {
        let (dir, assets) = site(
            HtmlHandling::AutoTrailingSlash,
            NotFoundHandling::NotFoundPage,
        );
        let root = dir.path().canonicalize().unwrap();
        let (page, status) = assets.not_found_page("/folder/deep/nope").unwrap();
        assert_eq!(
            (page, status),
            (root.join("folder/404.html"), StatusCode::NOT_FOUND)
        );
        let (page, _) = assets.not_found_page("/nope").unwrap();
        assert_eq!(page, root.join("404.html"));
        let (_spa_dir, spa) = site(
            HtmlHandling::AutoTrailingSlash,
            NotFoundHandling::SinglePageApplication,
        );
        assert_eq!(spa.not_found_page("/x/y").unwrap().1, StatusCode::OK);
    }

    #[test]
    fn etags_match_lists_and_weak_tags() {
        assert!(etag_matches(b"\"a\", W/\"b\"", "\"b\""));
        assert!(etag_matches(b"*", "\"b\""));
        assert!(!etag_matches(b"\"a\"", "\"b\""));
    }
}
