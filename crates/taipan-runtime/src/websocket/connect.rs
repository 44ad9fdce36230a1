//! Outbound WebSockets: a guest's `fetch(url, headers={"Upgrade":
//! "websocket"})`. The host connects (ws:// or wss://, the system's trust
//! store), under the same destination rule as the guest's TCP sockets
//! (`WorkerHost::tcp_connect_allowed`: no private addresses in serve unless
//! allowed), and the socket then lives like an accepted one: owned by the
//! calling Durable Object or a slot of its own, its messages delivered as
//! events after the call that opened it.

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::Owner;
use super::session::{pump, release};
use crate::host::WorkerHost;
use crate::limits::Limits;

/// Request headers a worker may not set on the handshake (the host does).
const HANDSHAKE_HEADERS: [&str; 7] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "content-length",
];

/// Connect socket `id` (registered for `owner`, its outbox `frames`) to
/// `args.url`; the reply the guest gets: `{"id", "status", "headers",
/// "protocol"}`, or why it failed.
pub(crate) async fn connect(
    id: String,
    owner: Owner,
    frames: tokio::sync::mpsc::Receiver<super::Frame>,
    args: Value,
    host: Arc<dyn WorkerHost>,
    limits: Limits,
) -> Result<Value, String> {
    // Dropped before the socket is running (the guest gave up, its sandbox
    // trapped, the connect failed): the socket is forgotten.
    let pending = Pending(Some(id.clone()));
    let url = args["url"].as_str().unwrap_or_default().to_string();
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&url, &args, host.as_ref(), &limits))
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {}s", CONNECT_TIMEOUT.as_secs())));
    let (socket, response) = match opened {
        Ok(pair) => pair,
        Err(e) => return Err(format!("WebSocket connection to {url} failed: {e}")),
    };
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let protocol = response
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    tokio::spawn(pump(id.clone(), owner, frames, socket, limits));
    pending.disarm();
    Ok(json!({ "id": id, "status": 101, "headers": headers, "protocol": protocol }))
}

/// How long an outbound connection (DNS, TCP, TLS, handshake) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Forgets a socket whose connection never got running.
struct Pending(Option<String>);

impl Pending {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(id) = self.0.take() {
            release(&id);
        }
    }
}

type Client = tokio_tungstenite::WebSocketStream<Box<dyn Stream>>;

/// What a client socket runs over: plain TCP or TLS.
pub(crate) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

async fn open(
    url: &str,
    args: &Value,
    host: &dyn WorkerHost,
    limits: &Limits,
) -> Result<(Client, http::Response<Option<Vec<u8>>>), String> {
    // Workers write https:// (or http://); the handshake wants ws(s)://.
    let secure = match url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
    {
        Some(scheme) if scheme == "wss" || scheme == "https" => true,
        Some(scheme) if scheme == "ws" || scheme == "http" => false,
        _ => return Err("the URL must be ws://, wss://, http:// or https://".into()),
    };
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let ws_url = format!("{}://{rest}", if secure { "wss" } else { "ws" });
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let uri = request.uri().clone();
    let name = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    for pair in args["headers"].as_array().into_iter().flatten() {
        let (Some(key), Some(value)) = (pair[0].as_str(), pair[1].as_str()) else {
            continue;
        };
        if HANDSHAKE_HEADERS.contains(&key.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let (Ok(key), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            request.headers_mut().append(key, value);
        }
    }

    let lookup = name.trim_start_matches('[').trim_end_matches(']');
    let addresses = tokio::net::lookup_host((lookup, port))
        .await
        .map_err(|e| format!("resolving {name}: {e}"))?;
    let mut stream = None;
    for address in addresses {
        if !host.tcp_connect_allowed(address).await {
            continue;
        }
        match TcpStream::connect(address).await {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(e) => tracing::debug!("connecting to {address}: {e}"),
        }
    }
    let stream = stream.ok_or_else(|| {
        format!("no address of {name} this worker may reach answered (private addresses are refused outside dev unless the operator allows them)")
    })?;
    let _ = stream.set_nodelay(true);
    let stream: Box<dyn Stream> = if secure {
        let server_name = rustls::pki_types::ServerName::try_from(lookup.to_string())
            .map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(server_name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.websocket_max_message))
        .max_frame_size(Some(limits.websocket_max_message));
    tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| e.to_string())
}

/// TLS with the system's trust store (where a company's proxy CA lives),
/// built once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}
