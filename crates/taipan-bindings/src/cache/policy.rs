//! What `put` may store, for how long, and which of its header fields.
//!
//! Decided once, at `put` ([`freshness`]): `s-maxage` wins over `max-age`,
//! then `Expires` (against the response's `Date`), then Cloudflare's default
//! edge TTL by status ([`default_ttl`]); the response's `Age` counts against
//! it. `no-store`, `private`, `no-cache`, a `Set-Cookie` (unless
//! `private=Set-Cookie` drops it) and a 304 are not stored; `put` still
//! resolves, as on Cloudflare (whose cache answers those with a 413).

use super::headers::{Headers, header, http_date, values};
use crate::protocol::BindingError;

/// Longer lifetimes count as this (RFC 9111 §1.2.2: 2^31 seconds).
const MAX_LIFETIME_SECONDS: i64 = 1 << 31;

/// Headers a stored response never keeps besides the hop-by-hop ones
/// (`taipan_runtime::host::HOP_BY_HOP`): `trailer`, and those a hit sets
/// itself (`content-length`, `age`, `cf-cache-status`).
const NOT_STORED: &[&str] = &["trailer", "content-length", "age", "cf-cache-status"];

/// What `put` does with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored, fresh for `ttl_ms` from now, `age` seconds old already (its
    /// `Age`), without the header fields `omit` names (`private=` and
    /// `no-cache=` fields, such as `Set-Cookie`).
    Store {
        ttl_ms: i64,
        age: i64,
        omit: Vec<String>,
    },
    /// Not stored, and why (`put` still resolves, as on Cloudflare).
    Skip(String),
}

/// Whether and for how long a response with `status` and `headers` is
/// stored at `now` (ms since the epoch). A 206, a 101 and `Vary: *` are
/// errors (`put` throws on Cloudflare); the rest is a [`Verdict`].
pub fn freshness(
    status: u16,
    headers: &[(String, String)],
    now: i64,
) -> Result<Verdict, BindingError> {
    if status == 206 {
        return Err(BindingError::type_error(
            "Cannot cache response to a range request (206 Partial Content).",
        ));
    }
    if status == 101 {
        return Err(BindingError::type_error(
            "Cannot cache WebSocket upgrade response.",
        ));
    }
    if values(headers, "vary").iter().any(|v| v.contains('*')) {
        return Err(BindingError::type_error(
            "Cannot cache response with 'Vary: *' header.",
        ));
    }
    let skip = |reason: &str| Ok(Verdict::Skip(reason.to_string()));
    if status == 304 {
        return skip("a 304 response is not cached");
    }
    let directives = cache_control(headers);
    let directive = |name: &str| {
        directives
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
    };
    if directive("no-store").is_some() {
        return skip("Cache-Control: no-store");
    }
    let mut omit = Vec::new();
    for name in ["private", "no-cache"] {
        match directive(name) {
            None => {}
            // It may not be served without revalidation, which a cache that
            // never asks the origin cannot do.
            Some(None) => return skip(&format!("Cache-Control: {name}")),
            // Only those fields are withheld (RFC 9111 §5.2.2.4, §5.2.2.7).
            Some(Some(fields)) => omit.extend(
                fields
                    .split(',')
                    .map(|f| f.trim().to_ascii_lowercase())
                    .filter(|f| !f.is_empty()),
            ),
        }
    }
    if !values(headers, "set-cookie").is_empty() && !omit.iter().any(|f| f == "set-cookie") {
        return skip(
            "a response with Set-Cookie is not cached (Cache-Control: private=Set-Cookie stores it without)",
        );
    }
    let lifetime_ms = if let Some(value) = directive("s-maxage").or_else(|| directive("max-age")) {
        // An invalid value makes the response stale (RFC 9111 §4.2.1).
        seconds(value.as_deref()).unwrap_or(0) * 1000
    } else if let Some(expires) = header(headers, "expires") {
        match http_date(&expires) {
            Some(at) => {
                at - header(headers, "date")
                    .and_then(|d| http_date(&d))
                    .unwrap_or(now)
            }
            None => 0,
        }
    } else if let Some(ttl) = default_ttl(status) {
        ttl * 1000
    } else {
        return skip(&format!(
            "a {status} response without Cache-Control max-age or Expires is not cached"
        ));
    };
    let age = header(headers, "age")
        .and_then(|a| seconds(Some(&a)))
        .unwrap_or(0);
    let ttl_ms = lifetime_ms - age * 1000;
    if ttl_ms <= 0 {
        return skip("the response is already stale");
    }
    Ok(Verdict::Store { ttl_ms, age, omit })
}

/// Cloudflare's edge TTL when a response has neither a `Cache-Control`
/// lifetime nor `Expires` (seconds); other statuses are not cached.
pub fn default_ttl(status: u16) -> Option<i64> {
    match status {
        200 | 206 | 301 => Some(120 * 60),
        302 | 303 => Some(20 * 60),
        404 | 410 => Some(3 * 60),
        _ => None,
    }
}

/// The header fields of a response that are stored: not [`NOT_STORED`],
/// nor named by its `Connection`, nor in `omit` ([`Verdict::Store`]).
pub(super) fn stored_headers(headers: &[(String, String)], omit: &[String]) -> Headers {
    let connection = values(headers, "connection").join(",");
    let dropped: Vec<String> = connection
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .chain(omit.iter().cloned())
        .collect();
    headers
        .iter()
        .filter(|(name, _)| {
            !NOT_STORED.contains(&name.as_str())
                && !taipan_runtime::host::HOP_BY_HOP.contains(&name.as_str())
                && !dropped.iter().any(|d| d == name)
        })
        .cloned()
        .collect()
}

/// `Cache-Control` directives in order: (lowercase name, unquoted value).
fn cache_control(headers: &[(String, String)]) -> Vec<(String, Option<String>)> {
    let joined = values(headers, "cache-control").join(",");
    let mut items = Vec::new();
    let (mut item, mut quoted) = (String::new(), false);
    for c in joined.chars().chain([',']) {
        match c {
            '"' => {
                quoted = !quoted;
                item.push(c);
            }
            ',' if !quoted => items.push(std::mem::take(&mut item)),
            c => item.push(c),
        }
    }
    items
        .iter()
        .filter_map(|item| {
            let (name, value) = match item.split_once('=') {
                Some((name, value)) => (name, Some(value.trim())),
                None => (item.as_str(), None),
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.map(|v| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
                    .to_string()
            });
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

/// A delta-seconds value (digits only), capped at 2^31.
fn seconds(value: Option<&str>) -> Option<i64> {
    let value = value?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        value
            .parse::<i64>()
            .unwrap_or(i64::MAX)
            .min(MAX_LIFETIME_SECONDS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::{NOW, h};

    fn ttl(status: u16, headers: &[(&str, &str)]) -> Option<i64> {
        match freshness(status, &h(headers), NOW).unwrap() {
            Verdict::Store { ttl_ms, .. } => Some(ttl_ms / 1000),
            Verdict::Skip(_) => None,
        }
    }

    #[test]
    fn freshness_follows_cache_control_then_expires_then_the_status() {
        assert_eq!(ttl(200, &[("cache-control", "max-age=60")]), Some(60));
        // s-maxage wins over max-age, wherever it is.
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=60, s-maxage=600")]),
            Some(600)
        );
        assert_eq!(
            ttl(
                200,
                &[
                    ("Cache-Control", "public"),
                    ("cache-control", "S-MAXAGE=\"5\"")
                ]
            ),
            Some(5)
        );
        // Age counts against the lifetime; a stale response is not stored.
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=60"), ("age", "50")]),
            Some(10)
        );
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=60"), ("age", "60")]),
            None
        );
        assert_eq!(ttl(200, &[("cache-control", "max-age=0")]), None);
        assert_eq!(ttl(200, &[("cache-control", "max-age=soon")]), None);
        // Expires, against Date when there is one, else now.
        let expires = [
            ("expires", "Wed, 10 Jan 2024 11:34:45 GMT"),
            ("date", "Wed, 10 Jan 2024 11:00:45 GMT"),
        ];
        assert_eq!(ttl(200, &expires), Some(34 * 60));
        assert_eq!(ttl(200, &expires[..1]), Some(3600));
        assert_eq!(ttl(200, &[("expires", "0")]), None);
        assert_eq!(
            ttl(200, &[("expires", "Wed, 10 Jan 2024 09:00:00 GMT")]),
            None
        );
        // max-age wins over Expires.
        assert_eq!(
            ttl(
                200,
                &[
                    ("expires", "Wed, 10 Jan 2024 09:00:00 GMT"),
                    ("cache-control", "max-age=9")
                ]
            ),
            Some(9)
        );
        // Neither: Cloudflare's edge TTL by status, or not cached.
        assert_eq!(ttl(200, &[]), Some(7200));
        assert_eq!(ttl(301, &[("cache-control", "public")]), Some(7200));
        assert_eq!(ttl(302, &[]), Some(1200));
        assert_eq!(ttl(404, &[]), Some(180));
        assert_eq!(ttl(500, &[]), None);
        assert_eq!(ttl(500, &[("cache-control", "max-age=30")]), Some(30));
        // Huge lifetimes are capped at 2^31 s.
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=99999999999999999999999")]),
            Some(1 << 31)
        );
    }

    #[test]
    fn what_is_never_stored_and_what_put_refuses() {
        for cc in [
            "no-store",
            "private",
            "no-cache",
            "max-age=60, no-store",
            "PRIVATE, max-age=9",
        ] {
            assert_eq!(ttl(200, &[("cache-control", cc)]), None, "{cc}");
        }
        assert_eq!(ttl(304, &[("cache-control", "max-age=60")]), None);
        // Set-Cookie: not stored, unless private=Set-Cookie drops it.
        let cookie = ("set-cookie", "id=1");
        assert_eq!(ttl(200, &[cookie, ("cache-control", "max-age=60")]), None);
        let Verdict::Store { omit, .. } = freshness(
            200,
            &h(&[
                cookie,
                (
                    "cache-control",
                    "private=\"Set-Cookie, X-User\", max-age=60",
                ),
            ]),
            NOW,
        )
        .unwrap() else {
            panic!("stored without the cookie")
        };
        assert_eq!(omit, ["set-cookie", "x-user"]);
        for (status, headers) in [
            (206, vec![]),
            (101, vec![]),
            (200, vec![("vary", "accept, *")]),
        ] {
            let error = freshness(status, &h(&headers), NOW).unwrap_err();
            assert_eq!(error.name, "TypeError", "{status}");
        }
    }

    #[test]
    fn hop_by_hop_fields_and_omitted_ones_are_not_stored() {
        let headers = h(&[
            ("content-type", "text/plain"),
            ("connection", "X-Hop"),
            ("x-hop", "1"),
            ("content-length", "2"),
            ("age", "3"),
            ("set-cookie", "id=1"),
            ("etag", "\"1\""),
        ]);
        assert_eq!(
            stored_headers(&headers, &["set-cookie".into()]),
            h(&[("content-type", "text/plain"), ("etag", "\"1\"")])
        );
    }
}
