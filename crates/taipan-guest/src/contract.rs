//! The host–guest contract: every name, header and value that the host
//! (this workspace) and the guest (Taipan's Python SDK, `python/`) must
//! agree on, defined once per language. `python/_taipan/contract.py` holds
//! the same assignments; `tests::python_mirror_is_equal` checks they match,
//! and `tests::defined_once` that no other source spells them out.
//!
//! The guest reaches the host through `wasi:http` alone: requests to
//! internal authorities (`__taipan…`), which the host routes before any
//! network policy applies.
//!
//! - **A binding call** is `POST http://{AUTHORITY_BINDING}/{binding}/{op}`.
//!   Its body is the arguments as one line of JSON (ASCII, no raw newline),
//!   a `\n`, then the payload if the op takes one (a KV value, an R2
//!   object). The reply mirrors it: a JSON body; or, for an op that
//!   answers a payload (KV and R2 `get`), JSON about the payload as one line
//!   (no raw newline), a `\n`, then the payload, streamed. That line is
//!   `null` for a miss (no such key or object, an empty payload), else an
//!   object (KV: `{"metadata": …}`; R2: the object's fields).
//! - **Errors**, from any binding or route, have one encoding: a 4xx/5xx
//!   status, `HEADER_ERROR` set to `ERROR_MARK`, and a JSON body
//!   `{"name": "TypeError"|"RangeError"|"Error", "message": …}`, which the
//!   guest raises as a `JsException` of that name. The marker tells a host's
//!   error apart from a callee worker's own response on the routes that pass
//!   one through (service and Durable Object `fetch`): the host drops every
//!   `x-taipan-*` header from what callees and upstreams send, so only it can
//!   set the marker.
//! - **From outside**, a request whose Host header or absolute-form URI names
//!   an internal authority (any case) is refused with 400.
//! - **Calls into the guest** (warm-up, cron, Durable Objects, service
//!   entrypoints) are requests to the other authorities below.

/// One value of the contract, for the mirror test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    Str(&'static str),
    Int(i64),
}

impl From<&'static str> for Item {
    fn from(value: &'static str) -> Self {
        Item::Str(value)
    }
}

impl From<u16> for Item {
    fn from(value: u16) -> Self {
        Item::Int(value.into())
    }
}

macro_rules! contract {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty = $value:expr; )*) => {
        $( $(#[$doc])* pub const $name: $ty = $value; )*

        /// Every item of the contract by name.
        pub fn items() -> Vec<(&'static str, Item)> {
            vec![$( (stringify!($name), Item::from($name)) ),*]
        }
    };
}

contract! {
    // --- internal authorities (the host part of a guest's request URL) ---
    /// Binding calls: `/{binding}/{op}`.
    AUTHORITY_BINDING: &str = "__taipan__";
    /// A call into a Durable Object: `/{class}/{id}/{OP_RPC|OP_FETCH|OP_ALARM}`.
    AUTHORITY_DURABLE: &str = "__taipan-do__";
    /// A service binding's call into a named entrypoint: `/{entrypoint}/{op}`.
    AUTHORITY_SERVICE: &str = "__taipan-service__";
    /// `GET /`: start the sandbox up without running worker code. The guest
    /// answers nothing: a call that returns without a response is a started
    /// sandbox (a failed start-up answers 500). Building a response would
    /// cost each fresh sandbox ~11 host calls.
    AUTHORITY_WARMUP: &str = "__taipan-warmup__";
    /// A cron trigger: `GET /?{SCHEDULED_QUERY_CRON}=…&{SCHEDULED_QUERY_TIME}=…`.
    AUTHORITY_SCHEDULED: &str = "__taipan-scheduled__";
    /// A batch of queue messages: `POST /` with `{"queue", "messages": [{id,
    /// timestamp, attempts, contentType, body}]}` (bytes bodies base64); the
    /// guest answers `{"acks": [id…], "retries": [{id, delaySeconds}…],
    /// "error": message or null}`.
    AUTHORITY_QUEUE: &str = "__taipan-queue__";
    /// One replay of a workflow instance: `POST /{class}/{id}` with
    /// `{"workflow", "generation", "event": {payload, timestamp, instanceId},
    /// "steps": {name: record}, "events": [{seq, type, payload}]}`; the guest
    /// stores each step it completes through `WORKFLOW_BINDING` (which
    /// answers `{"stop": true}` once the instance was paused, terminated or
    /// restarted: the run then ends as waiting) and answers `{"status":
    /// "complete", "output"}`, `{"status": "errored", "error": {name,
    /// message}}` or `{"status": "waiting", "until": ms or null}`.
    AUTHORITY_WORKFLOW: &str = "__taipan-workflow__";
    /// An event of a WebSocket a worker accepted with `server.accept()`
    /// outside a Durable Object: `POST /` with `{"id", "event": "message"|
    /// "close"|"error", "text" or "binary" (base64), "code", "reason",
    /// "wasClean", "tags", "attachment"}`, run in the sandbox that accepted
    /// it. A Durable Object's sockets get the same body at `OP_WEBSOCKET`.
    /// The guest answers 204, or `STATUS_GONE` if it no longer has the socket.
    AUTHORITY_WEBSOCKET: &str = "__taipan-ws__";
    /// Every internal authority starts so; a request from outside with such a
    /// Host is refused, and a worker's own `fetch` may not use one.
    INTERNAL_HOST_PREFIX: &str = "__taipan";

    // --- headers ---
    /// The real URL of a `fetch` sent through a binding (service, assets,
    /// Durable Object stub).
    HEADER_URL: &str = "x-taipan-url";
    /// Marks an error the host made (value `ERROR_MARK`; body `{name, message}`).
    HEADER_ERROR: &str = "x-taipan-error";
    ERROR_MARK: &str = "1";
    /// A Durable Object stub's object id (64 lowercase hex digits).
    HEADER_DO_ID: &str = "x-taipan-do-id";
    /// An alarm's retry count.
    HEADER_ALARM_RETRY: &str = "x-taipan-alarm-retry";
    /// An outbound `fetch`'s redirect mode: one of `REDIRECT_*` (default follow).
    HEADER_REDIRECT: &str = "x-taipan-redirect";
    /// On a 101 response: the id of the accepted WebSocket whose client end
    /// it returns (the host upgrades the connection and binds it to that id).
    HEADER_WEBSOCKET: &str = "x-taipan-websocket";
    /// On a request: the client asked for a WebSocket upgrade (the guest
    /// shows `Upgrade: websocket`; wasi:http hides hop-by-hop headers).
    HEADER_UPGRADE: &str = "x-taipan-upgrade";
    /// A call answered at once, in order, without a body
    /// (`WEBSOCKET_BINDING`): its arguments as JSON.
    HEADER_ARGS: &str = "x-taipan-args";
    /// Headers with this prefix never reach a worker's handler.
    HEADER_PREFIX: &str = "x-taipan-";
    REDIRECT_FOLLOW: &str = "follow";
    REDIRECT_MANUAL: &str = "manual";
    REDIRECT_ERROR: &str = "error";

    // --- the sandbox's environment (removed from os.environ at start-up) ---
    /// The worker's vars and secrets, a JSON object.
    ENV_VARS: &str = "TAIPAN_VARS";
    /// The worker's bindings, a JSON object of name → kind.
    ENV_BINDINGS: &str = "TAIPAN_BINDINGS";
    /// `ENV_DEV_ON` under `taipan dev` (tracebacks in 500 pages), else absent.
    ENV_DEV: &str = "TAIPAN_DEV";
    ENV_DEV_ON: &str = "1";
    ENV_PREFIX: &str = "TAIPAN_";

    // --- ops and names of the routes into the guest ---
    OP_RPC: &str = "rpc";
    OP_FETCH: &str = "fetch";
    OP_ALARM: &str = "alarm";
    /// A WebSocket event for a Durable Object (the `AUTHORITY_WEBSOCKET` body).
    OP_WEBSOCKET: &str = "websocket";
    /// WebSocket calls (`accept`, `send`, `list`, `auto`), answered before
    /// the call returns so that sends keep their order; arguments in
    /// `HEADER_ARGS`.
    WEBSOCKET_BINDING: &str = "websocket";
    /// The binding a Durable Object's `ctx.storage` calls.
    STORAGE_BINDING: &str = "do-storage";
    /// The binding a workflow run stores its steps through (op `step`).
    WORKFLOW_BINDING: &str = "workflow-steps";
    /// The Cache API's binding (`caches.default`, `caches.open(name)`;
    /// ops `match`, `put`, `delete`), present in every worker.
    CACHE_BINDING: &str = "cache-api";
    /// The entrypoint a service binding without `entrypoint` calls.
    DEFAULT_ENTRYPOINT: &str = "Default";
    SCHEDULED_QUERY_CRON: &str = "cron";
    SCHEDULED_QUERY_TIME: &str = "scheduledTime";

    // --- statuses with a meaning ---
    /// A cron or queue event for a worker without that handler.
    STATUS_NO_HANDLER: u16 = 501;
    /// A binding's route failed (no such worker, object or entrypoint).
    STATUS_ROUTE_ERROR: u16 = 502;
    /// A WebSocket event for a socket the sandbox no longer has.
    STATUS_GONE: u16 = 410;

    // --- the build: what taipan_bootstrap.py prints around a failed import ---
    BUILD_ERROR_START: &str = "<<<taipan-build-error>>>";
    BUILD_ERROR_END: &str = "<<<end-taipan-build-error>>>";
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// `NAME = "text"` / `NAME = 123` lines of `contract.py`; anything else
    /// but comments, blank lines and the docstring is refused, so the file
    /// stays a plain table.
    fn parse_python(text: &str) -> BTreeMap<String, Item> {
        let mut items = BTreeMap::new();
        let body = text
            .split_once("\"\"\"")
            .and_then(|(_, rest)| rest.split_once("\"\"\""))
            .map_or(text, |(_, after)| after);
        for line in body.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once(" = ")
                .unwrap_or_else(|| panic!("not an assignment: {line}"));
            let value = value.split(" #").next().unwrap().trim();
            let item = if let Some(text) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'))
            {
                assert!(!text.contains(['\\', '"']), "keep values plain: {line}");
                Item::Str(Box::leak(text.to_string().into_boxed_str()))
            } else {
                Item::Int(
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("not a str or int: {line}")),
                )
            };
            assert!(
                items.insert(name.to_string(), item).is_none(),
                "{name} twice"
            );
        }
        items
    }

    #[test]
    fn python_mirror_is_equal() {
        let text = std::fs::read_to_string(repo().join("python/_taipan/contract.py")).unwrap();
        let python = parse_python(&text);
        let rust: BTreeMap<String, Item> = items()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(
            python, rust,
            "python/_taipan/contract.py differs from contract.rs"
        );
    }

    /// Every source file, but the two contract files, takes these values from
    /// the contract rather than spelling them out (comments and docstrings
    /// may mention them).
    #[test]
    fn defined_once() {
        let needles = [
            "__taipan",
            "x-taipan-",
            "TAIPAN_VARS",
            "TAIPAN_BINDINGS",
            "TAIPAN_DEV",
            "<<<taipan",
            "<<<end-taipan",
        ];
        let mut offenders = Vec::new();
        let mut dirs = vec![repo().join("crates"), repo().join("python")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    // Tests may spell the wire out: they check it.
                    if !matches!(name.as_str(), "tests" | "target" | "__pycache__") {
                        dirs.push(path);
                    }
                    continue;
                }
                let (rust, python) = (name.ends_with(".rs"), name.ends_with(".py"));
                if !(rust || python) || name == "contract.rs" || name == "contract.py" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let mut in_docstring = false;
                for (number, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    let quotes = line.matches("\"\"\"").count();
                    let docstring = python && (in_docstring || quotes > 0);
                    if python && quotes % 2 == 1 {
                        in_docstring = !in_docstring;
                    }
                    let comment =
                        (rust && code.starts_with("//")) || (python && code.starts_with('#'));
                    if comment || docstring {
                        continue;
                    }
                    if needles.iter().any(|n| line.contains(n)) {
                        offenders.push(format!("{}:{}: {}", path.display(), number + 1, code));
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "use the contract module:\n{}",
            offenders.join("\n")
        );
    }
}
