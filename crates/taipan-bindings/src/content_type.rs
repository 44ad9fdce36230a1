//! The `Content-Type` of a static asset, as Cloudflare serves it.
//!
//! Cloudflare (workers-sdk `getContentType`) takes the type from the npm
//! `mime` package's table by extension and appends `; charset=utf-8` to
//! `text/*` types only; a file whose type is unknown is served with no
//! `Content-Type` at all. The common web types are listed here so they match
//! exactly (`mime_guess` differs on some, e.g. `.ico`); others fall back to
//! `mime_guess` under the same charset rule.

use std::path::Path;

/// Extension → type, where Cloudflare's answer is pinned (lowercase extensions).
const TYPES: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("shtml", "text/html"),
    ("css", "text/css"),
    ("js", "text/javascript"),
    ("mjs", "text/javascript"),
    ("cjs", "application/node"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("jsonld", "application/ld+json"),
    ("webmanifest", "application/manifest+json"),
    ("txt", "text/plain"),
    ("text", "text/plain"),
    ("xml", "application/xml"),
    ("rss", "application/rss+xml"),
    ("atom", "application/atom+xml"),
    ("csv", "text/csv"),
    ("md", "text/markdown"),
    ("markdown", "text/markdown"),
    ("svg", "image/svg+xml"),
    ("ico", "image/vnd.microsoft.icon"),
    ("png", "image/png"),
    ("apng", "image/apng"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("bmp", "image/bmp"),
    ("wasm", "application/wasm"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    ("pdf", "application/pdf"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("mp3", "audio/mpeg"),
    ("wav", "audio/wav"),
    ("ogg", "audio/ogg"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
];

/// The `Content-Type` header for the file at `path`, or `None` when its type
/// is unknown (Cloudflare then sends no header).
pub fn for_path(path: &Path) -> Option<String> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    let mime = match TYPES.iter().find(|(ext, _)| *ext == extension) {
        Some((_, mime)) => (*mime).to_string(),
        None => mime_guess::from_ext(&extension).first()?.to_string(),
    };
    Some(if mime.starts_with("text/") {
        format!("{mime}; charset=utf-8")
    } else {
        mime
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudflares_table_for_common_web_files() {
        let expected = [
            ("index.html", Some("text/html; charset=utf-8")),
            ("page.HTM", Some("text/html; charset=utf-8")),
            ("style.css", Some("text/css; charset=utf-8")),
            ("app.js", Some("text/javascript; charset=utf-8")),
            ("module.mjs", Some("text/javascript; charset=utf-8")),
            ("data.json", Some("application/json")),
            ("app.js.map", Some("application/json")),
            ("robots.txt", Some("text/plain; charset=utf-8")),
            ("feed.xml", Some("application/xml")),
            ("table.csv", Some("text/csv; charset=utf-8")),
            ("logo.svg", Some("image/svg+xml")),
            ("favicon.ico", Some("image/vnd.microsoft.icon")),
            ("a.png", Some("image/png")),
            ("a.jpg", Some("image/jpeg")),
            ("a.jpeg", Some("image/jpeg")),
            ("a.gif", Some("image/gif")),
            ("a.webp", Some("image/webp")),
            ("a.avif", Some("image/avif")),
            ("lib.wasm", Some("application/wasm")),
            ("f.woff", Some("font/woff")),
            ("f.woff2", Some("font/woff2")),
            ("f.ttf", Some("font/ttf")),
            ("f.otf", Some("font/otf")),
            ("doc.pdf", Some("application/pdf")),
            ("clip.mp4", Some("video/mp4")),
            ("site.webmanifest", Some("application/manifest+json")),
            ("archive.zip", Some("application/zip")),
            ("unknown.qqq", None),
            ("Makefile", None),
        ];
        for (file, want) in expected {
            assert_eq!(for_path(Path::new(file)).as_deref(), want, "{file}");
        }
    }
}
