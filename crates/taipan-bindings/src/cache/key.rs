//! What names an entry: its cache (the default one or a named one) and its
//! request's URL, both checked as Workers checks them.

use serde_json::Value;

use crate::protocol::BindingError;

/// `caches.open(name)` refuses names this long or longer (workerd: 1024).
pub const MAX_CACHE_NAME_BYTES: usize = 1024;
/// A key's URL, as Workers bounds a request's URL (16 KB).
pub const MAX_URL_BYTES: usize = 16 << 10;

/// How a cache is stored: the default one as "", `open(name)` as
/// "named:<name>" (so no name, "" included, is the default's).
pub(super) fn cache_name(args: &Value) -> Result<String, BindingError> {
    match args.get("cache") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(name)) if name.len() >= MAX_CACHE_NAME_BYTES => {
            Err(BindingError::type_error("Cache name is too long."))
        }
        Some(Value::String(name)) => Ok(format!("named:{name}")),
        Some(_) => Err(BindingError::type_error("`cache` must be a string or null")),
    }
}

/// A key as stored: the full URL, normalized (WHATWG URL: lowercase scheme
/// and host, no default port, `/` for an empty path), without its fragment.
pub fn cache_key(url: &str) -> Result<String, BindingError> {
    let invalid = || {
        BindingError::type_error("Invalid URL. Cache API keys must be fully-qualified, valid URLs.")
    };
    let mut parsed = url::Url::parse(url).map_err(|_| invalid())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    parsed.set_fragment(None);
    let key = String::from(parsed);
    if key.len() > MAX_URL_BYTES {
        return Err(BindingError::range_error(format!(
            "the cache key's URL is {} bytes; the limit is {MAX_URL_BYTES}",
            key.len()
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_normalized_full_urls() {
        assert_eq!(
            cache_key("HTTPS://Example.COM:443?q=1#frag").unwrap(),
            "https://example.com/?q=1"
        );
        assert_eq!(
            cache_key("http://a.test/a b").unwrap(),
            "http://a.test/a%20b"
        );
        for bad in [
            "/relative",
            "ftp://a.test/",
            "not a url",
            "data:text/plain,x",
        ] {
            assert_eq!(cache_key(bad).unwrap_err().name, "TypeError", "{bad}");
        }
        assert!(cache_key(&format!("https://a.test/{}", "x".repeat(MAX_URL_BYTES))).is_err());
        assert_eq!(cache_name(&json!({})).unwrap(), "");
        assert_eq!(cache_name(&json!({"cache": ""})).unwrap(), "named:");
        let long = "n".repeat(MAX_CACHE_NAME_BYTES);
        assert_eq!(
            cache_name(&json!({"cache": long})).unwrap_err().message,
            "Cache name is too long."
        );
    }
}
