//! How a hit answers its request: the stored response with its `age` and
//! `cf-cache-status: HIT`; a 304 when the request's `If-None-Match` or
//! `If-Modified-Since` matches a stored 2xx; a 206 (or 416) for its `Range`
//! on a stored 200, unless its `If-Range` names another response.

use bytes::Bytes;

use super::headers::{Headers, header, http_date};
use super::store::Hit;

/// The status, headers and body a hit answers `request` with: the stored
/// response with its `age` and `cf-cache-status: HIT`; a 304 when the
/// request's validators match a stored 2xx; a 206 (or 416) for a single
/// byte range of a stored 200 that its `If-Range`, if any, names.
pub fn answer(hit: Hit, request: &[(String, String)], now: i64) -> (u16, Headers, Bytes) {
    let mut headers = hit.headers;
    let age = hit.age + (now - hit.stored).max(0) / 1000;
    headers.push(("age".into(), age.to_string()));
    headers.push(("cf-cache-status".into(), "HIT".into()));
    // Preconditions only apply where the answer would be a 2xx (RFC 9110
    // §13.2.1): a stored 404's validators say nothing of the client's copy.
    if (200..300).contains(&hit.status) && not_modified(request, &headers) {
        return (304, headers, Bytes::new());
    }
    let length = hit.body.len() as u64;
    if hit.status == 200
        && let Some(range) = header(request, "range")
        && range_applies(request, &headers)
        && let Some(range) = byte_range(&range, length)
    {
        return match range {
            Some((start, end)) => {
                headers.push((
                    "content-range".into(),
                    format!("bytes {start}-{end}/{length}"),
                ));
                headers.push(("content-length".into(), (end - start + 1).to_string()));
                let body = hit.body.slice(start as usize..=end as usize);
                (206, headers, body)
            }
            None => {
                headers.push(("content-range".into(), format!("bytes */{length}")));
                headers.push(("content-length".into(), "0".into()));
                (416, headers, Bytes::new())
            }
        };
    }
    headers.push(("content-length".into(), length.to_string()));
    (hit.status, headers, hit.body)
}

/// `If-None-Match` against the `ETag` (weak comparison, `*` any); failing
/// that header, `If-Modified-Since` against `Last-Modified`.
fn not_modified(request: &[(String, String)], response: &[(String, String)]) -> bool {
    if let Some(wanted) = header(request, "if-none-match") {
        let Some(etag) = header(response, "etag") else {
            return false;
        };
        let etag = opaque_tag(&etag);
        return wanted.trim() == "*" || wanted.split(',').any(|tag| opaque_tag(tag) == etag);
    }
    if let Some(since) = header(request, "if-modified-since") {
        let modified = header(response, "last-modified").and_then(|m| http_date(&m));
        return matches!((modified, http_date(&since)), (Some(m), Some(s)) if m <= s);
    }
    false
}

/// Whether a `Range` applies: without `If-Range`, or with one naming the
/// stored response by its ETag (strong comparison: a weak tag never
/// matches) or its exact `Last-Modified` (RFC 9110 §13.1.5).
fn range_applies(request: &[(String, String)], response: &[(String, String)]) -> bool {
    let Some(condition) = header(request, "if-range") else {
        return true;
    };
    let condition = condition.trim();
    if condition.starts_with('"') || condition.starts_with("W/") {
        return !condition.starts_with("W/")
            && header(response, "etag").is_some_and(|etag| etag.trim() == condition);
    }
    let modified = header(response, "last-modified").and_then(|m| http_date(&m));
    matches!((modified, http_date(condition)), (Some(m), Some(c)) if m == c)
}

fn opaque_tag(tag: &str) -> &str {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag)
}

/// A `Range: bytes=…` of one range: `Some(Some((first, last)))`, or
/// `Some(None)` if it cannot be satisfied; `None` (answer the whole body)
/// for anything else, several ranges included.
fn byte_range(range: &str, length: u64) -> Option<Option<(u64, u64)>> {
    let (unit, spec) = range.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let number = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            return Some(None);
        }
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
            .map(Some)
    };
    Some(match (number(first)?, number(last)?) {
        (Some(first), last) => {
            if last.is_some_and(|last| last < first) {
                return None;
            }
            (first < length).then(|| (first, last.unwrap_or(u64::MAX).min(length - 1)))
        }
        (None, Some(suffix)) => {
            (suffix > 0 && length > 0).then(|| (length - suffix.min(length), length - 1))
        }
        (None, None) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::{NOW, h};

    fn hit(headers: &[(&str, &str)], body: &'static [u8]) -> Hit {
        Hit {
            status: 200,
            headers: h(headers),
            body: Bytes::from_static(body),
            stored: NOW,
            age: 3,
        }
    }

    #[test]
    fn a_hit_carries_its_age_its_length_and_hit() {
        let (status, headers, body) = answer(
            hit(&[("cache-control", "max-age=10")], b"hi"),
            &[],
            NOW + 4_000,
        );
        assert_eq!((status, &body[..]), (200, &b"hi"[..]));
        assert_eq!(
            headers,
            h(&[
                ("cache-control", "max-age=10"),
                ("age", "7"),
                ("cf-cache-status", "HIT"),
                ("content-length", "2")
            ])
        );
    }

    /// Preconditions apply only where the answer would be a 2xx (RFC 9110
    /// §13.2.1): a cached 404's ETag says nothing of the client's copy.
    #[test]
    fn a_stored_error_ignores_the_requests_validators() {
        let mut not_found = hit(
            &[
                ("etag", "\"v1\""),
                ("last-modified", "Wed, 10 Jan 2024 10:00:00 GMT"),
            ],
            b"gone",
        );
        not_found.status = 404;
        for request in [
            ("if-none-match", "\"v1\""),
            ("if-modified-since", "Wed, 10 Jan 2024 10:00:00 GMT"),
        ] {
            let (status, _, body) = answer(not_found.clone(), &h(&[request]), NOW);
            assert_eq!((status, &body[..]), (404, &b"gone"[..]), "{request:?}");
        }
    }

    /// A `Range` under an `If-Range` that does not name the stored response
    /// (its strong ETag, or its exact Last-Modified) gets the whole body
    /// (RFC 9110 §13.1.5): its bytes would not splice onto the client's.
    #[test]
    fn a_range_applies_only_when_if_range_names_the_stored_response() {
        let stored = [
            ("etag", "\"v1\""),
            ("last-modified", "Wed, 10 Jan 2024 10:00:00 GMT"),
        ];
        let status = |if_range: &str| {
            let request = h(&[("range", "bytes=0-1"), ("if-range", if_range)]);
            answer(hit(&stored, b"0123456789"), &request, NOW).0
        };
        assert_eq!(status("\"v1\""), 206);
        assert_eq!(status("Wed, 10 Jan 2024 10:00:00 GMT"), 206);
        for stale in [
            "\"v0\"",
            "W/\"v1\"",
            "Wed, 10 Jan 2024 10:00:01 GMT",
            "soon",
        ] {
            assert_eq!(status(stale), 200, "{stale}");
        }
        // A weak ETag never matches.
        let weak = hit(&[("etag", "W/\"v1\"")], b"0123456789");
        let request = h(&[("range", "bytes=0-1"), ("if-range", "W/\"v1\"")]);
        assert_eq!(answer(weak, &request, NOW).0, 200);
    }

    #[test]
    fn validators_make_a_304_and_a_range_a_206() {
        let stored = [
            ("etag", "W/\"v1\""),
            ("last-modified", "Wed, 10 Jan 2024 10:00:00 GMT"),
        ];
        let status = |request: &[(&str, &str)]| {
            answer(hit(&stored, b"0123456789"), &h(request), NOW + 2_500).0
        };
        assert_eq!(status(&[]), 200);
        assert_eq!(status(&[("if-none-match", "\"v0\", \"v1\"")]), 304);
        assert_eq!(status(&[("if-none-match", "*")]), 304);
        assert_eq!(status(&[("if-none-match", "\"v2\"")]), 200);
        assert_eq!(
            status(&[("if-modified-since", "Wed, 10 Jan 2024 10:00:00 GMT")]),
            304
        );
        assert_eq!(
            status(&[("if-modified-since", "Wed, 10 Jan 2024 09:59:59 GMT")]),
            200
        );
        // If-None-Match, when sent, decides alone.
        assert_eq!(
            status(&[
                ("if-none-match", "\"v2\""),
                ("if-modified-since", "Wed, 10 Jan 2024 11:00:00 GMT")
            ]),
            200
        );
        let (code, headers, body) = answer(
            hit(&stored, b"0123456789"),
            &h(&[("if-none-match", "W/\"v1\"")]),
            NOW + 2_500,
        );
        assert_eq!((code, &body[..]), (304, &b""[..]));
        assert!(headers.contains(&("age".into(), "5".into())));
        assert!(!headers.iter().any(|(n, _)| n == "content-length"));

        let range = |spec: &str| {
            let (code, headers, body) =
                answer(hit(&[], b"0123456789"), &h(&[("range", spec)]), NOW);
            (
                code,
                header(&headers, "content-range"),
                String::from_utf8(body.to_vec()).unwrap(),
            )
        };
        assert_eq!(
            range("bytes=2-4"),
            (206, Some("bytes 2-4/10".into()), "234".into())
        );
        assert_eq!(
            range("bytes=7-"),
            (206, Some("bytes 7-9/10".into()), "789".into())
        );
        assert_eq!(
            range("bytes=-3"),
            (206, Some("bytes 7-9/10".into()), "789".into())
        );
        assert_eq!(
            range("bytes=5-100"),
            (206, Some("bytes 5-9/10".into()), "56789".into())
        );
        assert_eq!(
            range("bytes=10-"),
            (416, Some("bytes */10".into()), String::new())
        );
        for whole in ["bytes=0-1,4-5", "items=0-1", "bytes=4-2", "bytes=x-"] {
            assert_eq!(range(whole).0, 200, "{whole}");
        }
    }
}
