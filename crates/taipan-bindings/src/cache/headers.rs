//! Header fields as the wire carries them (`[[name, value]…]`) and the
//! HTTP dates some of them hold.

/// Headers as the wire carries them: `[[name, value]…]`, names lowercase.
pub type Headers = Vec<(String, String)>;

/// A header's values, in order (names compared without case).
pub(super) fn values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

/// A header's values joined with ", ", as `Headers.get` does; None if absent.
pub(super) fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    let values = values(headers, name);
    (!values.is_empty()).then(|| values.join(", "))
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) in ms since the epoch.
pub(super) fn http_date(value: &str) -> Option<i64> {
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    PARSER
        .parse_timestamp(value.trim())
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_support::h;

    #[test]
    fn a_header_is_found_without_case_and_its_values_joined() {
        let headers = h(&[("Vary", "a"), ("x", "1"), ("vary", "b")]);
        assert_eq!(values(&headers, "VARY"), ["a", "b"]);
        assert_eq!(header(&headers, "vary").as_deref(), Some("a, b"));
        assert_eq!(header(&headers, "etag"), None);
        assert_eq!(
            http_date(" Wed, 10 Jan 2024 10:34:45 GMT "),
            Some(1_704_882_885_000)
        );
        assert_eq!(http_date("0"), None);
    }
}
