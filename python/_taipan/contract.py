"""The host–guest contract: every name, header and value Taipan's host and
this SDK must agree on. The Rust side is `crates/taipan-guest/src/contract.rs`
(read its module docs for the wire format); a test there checks this file
holds the same assignments, so keep it a plain table: `NAME = "text"` or
`NAME = number`, one per line, no imports.
"""

# internal authorities
AUTHORITY_BINDING = "__taipan__"
AUTHORITY_DURABLE = "__taipan-do__"
AUTHORITY_SERVICE = "__taipan-service__"
AUTHORITY_WARMUP = "__taipan-warmup__"
AUTHORITY_SCHEDULED = "__taipan-scheduled__"
AUTHORITY_QUEUE = "__taipan-queue__"
AUTHORITY_WORKFLOW = "__taipan-workflow__"
AUTHORITY_WEBSOCKET = "__taipan-ws__"
INTERNAL_HOST_PREFIX = "__taipan"

# headers
HEADER_URL = "x-taipan-url"
HEADER_ERROR = "x-taipan-error"
ERROR_MARK = "1"
HEADER_DO_ID = "x-taipan-do-id"
HEADER_ALARM_RETRY = "x-taipan-alarm-retry"
HEADER_REDIRECT = "x-taipan-redirect"
HEADER_WEBSOCKET = "x-taipan-websocket"
HEADER_UPGRADE = "x-taipan-upgrade"
HEADER_ARGS = "x-taipan-args"
HEADER_PREFIX = "x-taipan-"
REDIRECT_FOLLOW = "follow"
REDIRECT_MANUAL = "manual"
REDIRECT_ERROR = "error"

# the sandbox's environment
ENV_VARS = "TAIPAN_VARS"
ENV_BINDINGS = "TAIPAN_BINDINGS"
ENV_DEV = "TAIPAN_DEV"
ENV_DEV_ON = "1"
ENV_PREFIX = "TAIPAN_"

# ops and names of the routes into the guest
OP_RPC = "rpc"
OP_FETCH = "fetch"
OP_ALARM = "alarm"
OP_WEBSOCKET = "websocket"
WEBSOCKET_BINDING = "websocket"
STORAGE_BINDING = "do-storage"
WORKFLOW_BINDING = "workflow-steps"
CACHE_BINDING = "cache-api"
DEFAULT_ENTRYPOINT = "Default"
SCHEDULED_QUERY_CRON = "cron"
SCHEDULED_QUERY_TIME = "scheduledTime"

# statuses with a meaning
STATUS_NO_HANDLER = 501
STATUS_ROUTE_ERROR = 502
STATUS_GONE = 410

# the build
BUILD_ERROR_START = "<<<taipan-build-error>>>"
BUILD_ERROR_END = "<<<end-taipan-build-error>>>"
