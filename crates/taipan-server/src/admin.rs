//! The admin API (documented in docs/admin-api.yaml): deploy, list, versions,
//! rollback, delete, tail. Every request carries `Authorization: Bearer T`,
//! checked in constant time; a wrong or missing token gets 401 and changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use taipan_runtime::worker::Body;
use tokio::sync::broadcast::error::RecvError;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use crate::api;
use crate::front::Handler;
use crate::serve::{ApiError, ServeState};

pub struct AdminFront {
    state: Arc<ServeState>,
    /// SHA-256 of the token: comparing digests keeps the time independent of
    /// where, and whether, the lengths differ.
    token: Option<[u8; 32]>,
}

impl AdminFront {
    pub fn new(state: Arc<ServeState>) -> Self {
        let token = state
            .options
            .admin_token
            .as_deref()
            .map(|t| Sha256::digest(t.as_bytes()).into());
        Self { state, token }
    }

    fn authorized(&self, request: &http::Request<Incoming>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let given = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        given.ct_eq(expected).into()
    }

    async fn route(
        &self,
        request: http::Request<Incoming>,
    ) -> Result<http::Response<Body>, ApiError> {
        let path = request.uri().path().trim_end_matches('/').to_string();
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let state = &self.state;
        match (request.method().clone(), segments.as_slice()) {
            (Method::POST, ["api", "deploy"]) => {
                let limit = state.options.bundle_limits.max_bytes as usize + (1 << 20);
                // `?env=NAME`: deploy the config's [env.NAME] section (`taipan deploy --env`).
                let env = query_param(request.uri(), "env");
                let body = read_body(request, limit, "the upload").await?;
                let result = state.deploy(body, env).await;
                state.metrics.deploy(match &result {
                    Ok(r) if r.reused_build => "unchanged",
                    Ok(_) => "ok",
                    Err(_) => "failed",
                });
                Ok(json(StatusCode::CREATED, &result?))
            }
            (Method::GET, ["metrics"]) => Ok(text(
                StatusCode::OK,
                {
                    if let Some(placement) = state.stores.placement() {
                        state
                            .metrics
                            .cluster(placement.held_count(), placement.forwarded());
                    }
                    state.metrics.encode(&state.registry)
                },
                crate::metrics::CONTENT_TYPE,
            )),
            (Method::GET, ["api", "nodes"]) => {
                let nodes = match &state.cluster {
                    Some(node) => api::Nodes {
                        cluster: true,
                        this: Some(node.id.clone()),
                        nodes: node.nodes().await?,
                    },
                    None => api::Nodes {
                        cluster: false,
                        this: None,
                        nodes: Vec::new(),
                    },
                };
                Ok(json(StatusCode::OK, &nodes))
            }
            (Method::GET, ["api", "workers"]) => {
                let workers = state
                    .registry
                    .list()
                    .iter()
                    .map(|d| api::WorkerSummary {
                        name: d.version.worker.clone(),
                        version: d.version.id.clone(),
                        routes: d.version.routes.clone(),
                        url: state.url_of(&d.version.worker, &d.version.routes),
                        created: d.version.created.clone(),
                    })
                    .collect();
                Ok(json(StatusCode::OK, &api::WorkerList { workers }))
            }
            (Method::GET, ["api", "workers", name, "versions"]) => {
                let versions = state.control.versions(name).await?;
                if versions.is_empty() {
                    return Err(not_found(name));
                }
                let current = state.control.current(name).await?.map(|v| v.id);
                Ok(json(StatusCode::OK, &api::Versions { current, versions }))
            }
            (Method::POST, ["api", "workers", name, "rollback"]) => {
                let name = name.to_string();
                let body = read_body(request, 64 * 1024, "the request").await?;
                let api::RollbackRequest { version } =
                    serde_json::from_slice(&body).map_err(|_| {
                        ApiError::new(StatusCode::BAD_REQUEST, "expected {\"version\": \"vN\"}")
                    })?;
                let record = state.rollback(&name, &version).await?;
                Ok(json(
                    StatusCode::OK,
                    &api::Serving {
                        worker: name,
                        version: record.id,
                    },
                ))
            }
            (Method::DELETE, ["api", "workers", name]) => {
                state.delete(name).await?;
                let deleted = name.to_string();
                Ok(json(StatusCode::OK, &api::Deleted { deleted }))
            }
            (Method::GET, ["api", "queues"]) => {
                let queues = state
                    .stores
                    .queues()?
                    .store()
                    .stats()
                    .await
                    .map_err(binding_error)?;
                Ok(json(StatusCode::OK, &api::QueueList { queues }))
            }
            (Method::POST, ["api", "queues", queue, "messages"]) => {
                let queue = queue.to_string();
                if !taipan_config::queues::valid_queue_name(&queue) {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("{queue:?} is not a queue name"),
                    ));
                }
                let content_type =
                    query_param(request.uri(), "content_type").unwrap_or_else(|| "json".into());
                let body = read_body(
                    request,
                    taipan_bindings::queues::MAX_MESSAGE_BYTES,
                    "a message",
                )
                .await?;
                if content_type == "json"
                    && serde_json::from_slice::<serde_json::Value>(&body).is_err()
                {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "a json message must be valid JSON (or pass content_type=text)",
                    ));
                }
                taipan_bindings::queues::check_message(&content_type, body.len(), 0)
                    .map_err(binding_error)?;
                let message = taipan_bindings::queues::NewMessage {
                    body,
                    content_type,
                    delay_seconds: 0,
                };
                state
                    .stores
                    .queues()?
                    .send(&queue, vec![message])
                    .await
                    .map_err(binding_error)?;
                Ok(json(StatusCode::CREATED, &api::QueueSent { queue }))
            }
            (Method::GET, ["api", "workers", name, "secrets"]) => {
                // Names only: a secret's value never leaves the server.
                let secrets = state.control.secrets(name).await?.into_keys().collect();
                Ok(json(StatusCode::OK, &api::SecretNames { secrets }))
            }
            (Method::PUT, ["api", "workers", name, "secrets", secret]) => {
                let (name, secret) = (name.to_string(), secret.to_string());
                let body = read_body(request, MAX_SECRET_BYTES, "a secret").await?;
                let value = std::str::from_utf8(&body).map_err(|_| {
                    ApiError::new(StatusCode::BAD_REQUEST, "a secret must be UTF-8 text")
                })?;
                state.set_secret(&name, &secret, Some(value)).await?;
                Ok(json(
                    StatusCode::OK,
                    &api::SecretSet {
                        worker: name,
                        secret,
                    },
                ))
            }
            (Method::DELETE, ["api", "workers", name, "secrets", secret]) => {
                if !state.set_secret(name, secret, None).await? {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!("worker {name:?} has no secret {secret:?}"),
                    ));
                }
                let deleted = secret.to_string();
                Ok(json(StatusCode::OK, &api::Deleted { deleted }))
            }
            (Method::POST, ["api", "d1", database, "execute"]) => {
                let database = path_segment(database)?;
                let api::D1Execute { sql } = read_json(request, MAX_SQL_BYTES).await?;
                let db = state.d1_database(&database)?;
                let outcome = tokio::task::spawn_blocking(move || {
                    taipan_bindings::d1::execute_for_cli(&db, &sql)
                })
                .await
                .map_err(|e| ApiError::from(anyhow::anyhow!("{e}")))?
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.message))?;
                Ok(json(
                    StatusCode::OK,
                    &api::D1Executed {
                        statements: outcome.0,
                        result: outcome.1,
                    },
                ))
            }
            (Method::POST, ["api", "d1", database, "migrations"]) => {
                let database = path_segment(database)?;
                let api::D1Migrations { migrations } = read_json(request, MAX_SQL_BYTES).await?;
                let migrations: Vec<(String, String)> =
                    migrations.into_iter().map(|m| (m.name, m.sql)).collect();
                let db = state.d1_database(&database)?;
                let applied = tokio::task::spawn_blocking(move || {
                    taipan_bindings::d1::apply_migration_list(&db, &migrations)
                })
                .await
                .map_err(|e| ApiError::from(anyhow::anyhow!("{e}")))?
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
                Ok(json(StatusCode::OK, &api::Applied { applied }))
            }
            (Method::GET, ["api", "workers", name, "tail"]) => {
                if state.registry.get(name).is_none() {
                    return Err(not_found(name));
                }
                Ok(tail(state.subscribe_logs(name), name))
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint; see docs/admin-api.yaml",
            )),
        }
    }
}

/// The SQL of one `d1 execute --remote` or migrations upload.
const MAX_SQL_BYTES: usize = 10 * 1024 * 1024;

/// The request body, at most `limit` bytes: 413 past it, 400 when reading
/// it fails (`what` names it in the message).
async fn read_body(
    request: http::Request<Incoming>,
    limit: usize,
    what: &str,
) -> Result<Bytes, ApiError> {
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is over the limit of {limit} bytes"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("reading {what} failed: {e}"),
        )),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    request: http::Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    let body = read_body(request, limit, "the request body").await?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )
    })
}

impl Handler for AdminFront {
    async fn handle(
        self: Arc<Self>,
        request: http::Request<Incoming>,
        _peer: SocketAddr,
    ) -> http::Response<Body> {
        // Probes carry no token (load balancers, orchestrators).
        if request.method() == Method::GET {
            match request.uri().path() {
                "/healthz" => return text(StatusCode::OK, "ok\n", "text/plain"),
                "/readyz" if self.state.ready() => {
                    return text(StatusCode::OK, "ready\n", "text/plain");
                }
                "/readyz" => {
                    return text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n", "text/plain");
                }
                _ => {}
            }
        }
        if !self.authorized(&request) {
            let error = "missing or wrong admin token".to_string();
            return json(StatusCode::UNAUTHORIZED, &api::ErrorBody { error });
        }
        match self.route(request).await {
            Ok(response) => response,
            Err(e) => json(e.status, &api::ErrorBody { error: e.message }),
        }
    }
}

/// Cloudflare's limit on one secret's size (5 KiB).
const MAX_SECRET_BYTES: usize = 5 * 1024;

fn not_found(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no worker named {name:?}"))
}

fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> http::Response<Body> {
    let body = Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> http::Response<Body> {
    let text = serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    let body = Full::new(Bytes::from(text + "\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A never-ending NDJSON stream of the worker's log events.
fn tail(receiver: tokio::sync::broadcast::Receiver<String>, name: &str) -> http::Response<Body> {
    let hello = api::TailEvent::Connected {
        worker: name.to_string(),
    }
    .line();
    let stream = futures::stream::unfold(
        (Some(hello), receiver),
        |(first, mut receiver)| async move {
            if let Some(line) = first {
                return Some((
                    Ok::<_, ErrorCode>(Frame::data(Bytes::from(line + "\n"))),
                    (None, receiver),
                ));
            }
            let line = match receiver.recv().await {
                Ok(line) => line,
                Err(RecvError::Lagged(skipped)) => api::TailEvent::Lagged { skipped }.line(),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(Frame::data(Bytes::from(line + "\n"))), (None, receiver)))
        },
    );
    let mut response = http::Response::new(StreamBody::new(stream).boxed_unsync());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// A path segment the client percent-encoded (D1 ids may be any string).
fn path_segment(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the path is not UTF-8"))
}

/// A query parameter of `uri`, decoded.
fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
}

/// A queue store's error, as the admin API reports it.
fn binding_error(e: taipan_bindings::protocol::BindingError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.message)
}
