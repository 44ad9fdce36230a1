//! Outbound `fetch` through the host's HTTP client (reqwest, rustls).
//!
//! The SSRF rule: unless a worker's config allows private networks, `taipan
//! serve` refuses destinations in loopback, private, link-local, unique-local
//! and other non-public ranges. The check runs on the resolved addresses the
//! connection will use (a DNS name that points inside is refused too) and on
//! every redirect hop. `taipan dev` allows them (local APIs are normal there).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use taipan_guest::contract::{
    HEADER_PREFIX, HEADER_REDIRECT, REDIRECT_ERROR, REDIRECT_FOLLOW, REDIRECT_MANUAL,
};
use taipan_runtime::host::{HostFuture, HostResponse};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::OutgoingRequestConfig;

/// Limits on one outbound request.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub max_request_body: usize,
    pub max_response_body: u64,
    /// Upper bound on the guest's own timeouts.
    pub timeout: Duration,
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_request_body: 100 * 1000 * 1000,
            max_response_body: 512 * 1000 * 1000,
            // Cloudflare's origin timeout.
            timeout: Duration::from_secs(100),
            max_redirects: 20,
        }
    }
}

/// A client per policy: following redirects or not, private ranges or not.
pub struct Outbound {
    follow: reqwest::Client,
    manual: reqwest::Client,
    allow_private: bool,
    limits: FetchLimits,
}

impl Outbound {
    pub fn new(allow_private: bool, limits: FetchLimits) -> anyhow::Result<Arc<Self>> {
        let build = |follow: bool| {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(limits.timeout)
                .user_agent(concat!("taipan/", env!("CARGO_PKG_VERSION")))
                .no_proxy();
            if !allow_private {
                builder = builder.dns_resolver(Arc::new(PublicOnly));
            }
            builder = if follow {
                let max = limits.max_redirects;
                builder.redirect(reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() >= max {
                        attempt.error(format!("more than {max} redirects"))
                    } else if !allow_private && literal_ip_refused(attempt.url()) {
                        attempt.error("redirect to a private address refused")
                    } else {
                        attempt.follow()
                    }
                }))
            } else {
                builder.redirect(reqwest::redirect::Policy::none())
            };
            builder.build()
        };
        Ok(Arc::new(Self {
            follow: build(true)?,
            manual: build(false)?,
            allow_private,
            limits,
        }))
    }

    pub fn fetch(
        self: &Arc<Self>,
        request: http::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HostFuture {
        let this = self.clone();
        Box::pin(async move { this.send(request, config).await })
    }

    async fn send(
        &self,
        request: http::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> Result<HostResponse, ErrorCode> {
        let (mut parts, body) = request.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
        if !self.allow_private && literal_ip_refused(&url) {
            return Err(ErrorCode::DestinationIpProhibited);
        }
        // The guest's redirect mode (the SDK drops a worker's own x-taipan-*
        // headers, so there is one); anything unknown is "manual".
        let redirect = match parts.headers.remove(HEADER_REDIRECT) {
            None => REDIRECT_FOLLOW,
            Some(v) if v == REDIRECT_FOLLOW => REDIRECT_FOLLOW,
            Some(v) if v == REDIRECT_ERROR => REDIRECT_ERROR,
            Some(_) => REDIRECT_MANUAL,
        };
        let internal: Vec<http::HeaderName> = parts
            .headers
            .keys()
            .filter(|name| name.as_str().starts_with(HEADER_PREFIX))
            .cloned()
            .collect();
        for name in internal {
            parts.headers.remove(name);
        }
        parts.headers.remove(http::header::HOST);
        let body = http_body_util::Limited::new(body, self.limits.max_request_body)
            .collect()
            .await
            .map_err(|_| ErrorCode::HttpRequestBodySize(Some(self.limits.max_request_body as u64)))?
            .to_bytes();
        let client = if redirect == REDIRECT_FOLLOW {
            &self.follow
        } else {
            &self.manual
        };
        let timeout = config.first_byte_timeout.min(self.limits.timeout);
        let response = client
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| error_code(&e))?;
        if redirect == REDIRECT_ERROR && response.status().is_redirection() {
            return Err(ErrorCode::InternalError(Some(
                "fetch failed: the response was a redirect and redirect is \"error\"".into(),
            )));
        }
        let mut builder = http::Response::builder().status(response.status());
        // An upstream's x-taipan-* headers never reach the guest: only the
        // host marks its own errors.
        for (name, value) in response.headers() {
            if !name.as_str().starts_with(HEADER_PREFIX) {
                builder = builder.header(name, value);
            }
        }
        let limit = self.limits.max_response_body;
        let mut seen = 0u64;
        let stream = response.bytes_stream().map(move |chunk| {
            let chunk: Bytes = chunk.map_err(|e| ErrorCode::InternalError(Some(e.to_string())))?;
            seen += chunk.len() as u64;
            if seen > limit {
                return Err(ErrorCode::HttpResponseBodySize(Some(limit)));
            }
            Ok(http_body::Frame::data(chunk))
        });
        builder
            .body(http_body_util::StreamBody::new(stream).boxed_unsync())
            .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
    }
}

fn error_code(e: &reqwest::Error) -> ErrorCode {
    let text = format!("{e:?}");
    if text.contains("PrivateAddress") {
        ErrorCode::DestinationIpProhibited
    } else if causes(e).contains("certificate") {
        // Trust comes from the system store (and SSL_CERT_FILE / SSL_CERT_DIR).
        ErrorCode::TlsCertificateError
    } else if e.is_timeout() {
        ErrorCode::ConnectionTimeout
    } else if e.is_connect() {
        if text.contains("dns") || text.contains("lookup") {
            ErrorCode::DnsError(
                wasmtime_wasi_http::p2::bindings::http::types::DnsErrorPayload {
                    rcode: None,
                    info_code: None,
                },
            )
        } else {
            ErrorCode::ConnectionRefused
        }
    } else {
        ErrorCode::InternalError(Some(format!("fetch failed: {e}")))
    }
}

/// The messages of `e`'s causes, without `e`'s own (which holds the URL).
fn causes(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        text.push('\n');
        source = cause.source();
    }
    text
}

/// A URL whose host is a literal IP address in a refused range.
fn literal_ip_refused(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost")
        }
        None => true,
    }
}

/// Whether `ip` is a public unicast address (not loopback, private,
/// link-local, unique-local, CGNAT, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT 100.64/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF 192.0.0/24
                || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking 198.18/15
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || s[0] == 0x2001 && s[1] == 0xdb8 // documentation
                || s[0] == 0x64 && s[1] == 0xff9b) // NAT64 can reach private v4
        }
    }
}

/// A DNS resolver that only hands out public addresses.
struct PublicOnly;

#[derive(Debug)]
struct PrivateAddress(String);

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves only to private addresses (refused)", self.0)
    }
}

impl std::error::Error for PrivateAddress {}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(
                    Box::new(PrivateAddress(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(literal_ip_refused(
            &"http://localhost:8080/".parse().unwrap()
        ));
        assert!(literal_ip_refused(&"http://[::1]/".parse().unwrap()));
        assert!(!literal_ip_refused(
            &"https://example.com/".parse().unwrap()
        ));
    }
}
