;; A wasi:http handler small enough to read: the tests' stand-in for a
;; componentize-py worker, so the pool and the guest call driver are tested
;; in milliseconds without CPython. `tests/guest/mod.rs` puts a body into
;; `$handle`, in place of its marker comment, from the helpers below.
;;
;; Memory: the byte at 0 counts the requests this instance served (so a test
;; sees whether a sandbox was reused); 1024.. is scratch for return values.
(component
  (import "wasi:io/error@0.2.0" (instance $io-error
    (export "error" (type (sub resource)))))
  (alias export $io-error "error" (type $error))

  (import "wasi:io/streams@0.2.0" (instance $streams
    (alias outer 1 $error (type $error))
    (export "error" (type $error' (eq $error)))
    (export "output-stream" (type $output-stream (sub resource)))
    (type $stream-error' (variant
      (case "last-operation-failed" (own $error'))
      (case "closed")))
    (export "stream-error" (type $stream-error (eq $stream-error')))
    (export "[method]output-stream.blocking-write-and-flush"
      (func (param "self" (borrow $output-stream)) (param "contents" (list u8))
        (result (result (error $stream-error)))))))
  (alias export $streams "output-stream" (type $output-stream))

  (import "wasi:http/types@0.2.0" (instance $types
    (alias outer 1 $output-stream (type $output-stream))
    (export "output-stream" (type $output-stream' (eq $output-stream)))
    (export "fields" (type $fields (sub resource)))
    (export "incoming-request" (type $incoming-request (sub resource)))
    (export "outgoing-response" (type $outgoing-response (sub resource)))
    (export "outgoing-body" (type $outgoing-body (sub resource)))
    (export "response-outparam" (type $response-outparam (sub resource)))
    (type $dns' (record (field "rcode" (option string)) (field "info-code" (option u16))))
    (export "DNS-error-payload" (type $dns (eq $dns')))
    (type $tls' (record (field "alert-id" (option u8)) (field "alert-message" (option string))))
    (export "TLS-alert-received-payload" (type $tls (eq $tls')))
    (type $field-size' (record (field "field-name" (option string)) (field "field-size" (option u32))))
    (export "field-size-payload" (type $field-size (eq $field-size')))
    (type $error-code' (variant
      (case "DNS-timeout")
      (case "DNS-error" $dns)
      (case "destination-not-found")
      (case "destination-unavailable")
      (case "destination-IP-prohibited")
      (case "destination-IP-unroutable")
      (case "connection-refused")
      (case "connection-terminated")
      (case "connection-timeout")
      (case "connection-read-timeout")
      (case "connection-write-timeout")
      (case "connection-limit-reached")
      (case "TLS-protocol-error")
      (case "TLS-certificate-error")
      (case "TLS-alert-received" $tls)
      (case "HTTP-request-denied")
      (case "HTTP-request-length-required")
      (case "HTTP-request-body-size" (option u64))
      (case "HTTP-request-method-invalid")
      (case "HTTP-request-URI-invalid")
      (case "HTTP-request-URI-too-long")
      (case "HTTP-request-header-section-size" (option u32))
      (case "HTTP-request-header-size" (option $field-size))
      (case "HTTP-request-trailer-section-size" (option u32))
      (case "HTTP-request-trailer-size" $field-size)
      (case "HTTP-response-incomplete")
      (case "HTTP-response-header-section-size" (option u32))
      (case "HTTP-response-header-size" $field-size)
      (case "HTTP-response-body-size" (option u64))
      (case "HTTP-response-trailer-section-size" (option u32))
      (case "HTTP-response-trailer-size" $field-size)
      (case "HTTP-response-transfer-coding" (option string))
      (case "HTTP-response-content-coding" (option string))
      (case "HTTP-response-timeout")
      (case "HTTP-upgrade-failed")
      (case "HTTP-protocol-error")
      (case "loop-detected")
      (case "configuration-error")
      (case "internal-error" (option string))))
    (export "error-code" (type $error-code (eq $error-code')))
    (export "[constructor]fields" (func (result (own $fields))))
    (export "[constructor]outgoing-response"
      (func (param "headers" (own $fields)) (result (own $outgoing-response))))
    (export "[method]outgoing-response.set-status-code"
      (func (param "self" (borrow $outgoing-response)) (param "status-code" u16) (result (result))))
    (export "[method]outgoing-response.body"
      (func (param "self" (borrow $outgoing-response)) (result (result (own $outgoing-body)))))
    (export "[method]outgoing-body.write"
      (func (param "self" (borrow $outgoing-body)) (result (result (own $output-stream')))))
    (type $trailers (option (own $fields)))
    (export "[static]outgoing-body.finish"
      (func (param "this" (own $outgoing-body)) (param "trailers" $trailers)
        (result (result (error $error-code)))))
    (type $response (result (own $outgoing-response) (error $error-code)))
    (export "[static]response-outparam.set"
      (func (param "param" (own $response-outparam)) (param "response" $response)))))
  (alias export $types "incoming-request" (type $incoming-request))
  (alias export $types "response-outparam" (type $response-outparam))

  ;; The memory, and a bump allocator for what the host returns into it (an
  ;; error's message): this instance lives for a few requests at most.
  (core module $Memory
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 2048))
    (func (export "realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $at i32)
      (local.set $at (global.get $next))
      (global.set $next (i32.add (local.get $at) (local.get $size)))
      (local.get $at)))
  (core instance $memory (instantiate $Memory))
  (alias core export $memory "memory" (core memory $mem))
  (alias core export $memory "realloc" (core func $realloc))

  (core func $fields-new (canon lower (func $types "[constructor]fields")))
  (core func $response-new (canon lower (func $types "[constructor]outgoing-response")))
  (core func $set-status (canon lower (func $types "[method]outgoing-response.set-status-code")))
  (core func $response-body
    (canon lower (func $types "[method]outgoing-response.body") (memory $mem) (realloc $realloc)))
  (core func $body-write (canon lower (func $types "[method]outgoing-body.write") (memory $mem) (realloc $realloc)))
  (core func $body-finish (canon lower (func $types "[static]outgoing-body.finish") (memory $mem) (realloc $realloc)))
  (core func $outparam-set
    (canon lower (func $types "[static]response-outparam.set") (memory $mem) (realloc $realloc)))
  (core func $write
    (canon lower (func $streams "[method]output-stream.blocking-write-and-flush") (memory $mem) (realloc $realloc)))
  (core func $drop-stream (canon resource.drop $output-stream))
  (core func $drop-request (canon resource.drop $incoming-request))

  (core module $Handler
    (import "host" "memory" (memory 1))
    (import "host" "fields-new" (func $fields-new (result i32)))
    (import "host" "response-new" (func $response-new (param i32) (result i32)))
    (import "host" "set-status" (func $set-status (param i32 i32) (result i32)))
    (import "host" "response-body" (func $response-body (param i32 i32)))
    (import "host" "body-write" (func $body-write (param i32 i32)))
    (import "host" "body-finish" (func $body-finish (param i32 i32 i32 i32)))
    (import "host" "outparam-set"
      (func $outparam-set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
    (import "host" "write" (func $write (param i32 i32 i32 i32)))
    (import "host" "drop-stream" (func $drop-stream (param i32)))
    (import "host" "drop-request" (func $drop-request (param i32)))

    ;; Answer `status` with the `len` bytes at `ptr` as the body.
    (func $respond (param $out i32) (param $status i32) (param $ptr i32) (param $len i32)
      (local $response i32) (local $body i32) (local $stream i32)
      (local.set $response (call $response-new (call $fields-new)))
      (drop (call $set-status (local.get $response) (local.get $status)))
      (call $response-body (local.get $response) (i32.const 1024))
      (local.set $body (i32.load (i32.const 1028)))
      (call $outparam-set (local.get $out)
        (i32.const 0) (local.get $response)
        (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
      (call $body-write (local.get $body) (i32.const 1024))
      (local.set $stream (i32.load (i32.const 1028)))
      (call $write (local.get $stream) (local.get $ptr) (local.get $len) (i32.const 1024))
      (call $drop-stream (local.get $stream))
      (call $body-finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 1024)))

    ;; Count this request; answer `status` with the count as one ASCII digit.
    (func $count (param $out i32) (param $status i32)
      (i32.store8 (i32.const 0) (i32.add (i32.load8_u (i32.const 0)) (i32.const 1)))
      (i32.store8 (i32.const 1) (i32.add (i32.load8_u (i32.const 0)) (i32.const 48)))
      (call $respond (local.get $out) (local.get $status) (i32.const 1) (i32.const 1)))

    ;; Spin until the epoch deadline stops this call.
    (func $spin (loop $forever (br $forever)))

    ;; Grow memory by `pages` (64 KiB each): 200 if it grew, 507 if refused.
    (func $grow (param $out i32) (param $pages i32)
      (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
        (then (call $respond (local.get $out) (i32.const 507) (i32.const 0) (i32.const 0)))
        (else (call $respond (local.get $out) (i32.const 200) (i32.const 0) (i32.const 0)))))

    ;; A body of `len` bytes (whatever memory holds).
    (func $long (param $out i32) (param $len i32)
      (call $respond (local.get $out) (i32.const 200) (i32.const 0) (local.get $len)))

    (func (export "handle") (param $request i32) (param $out i32)
      (call $drop-request (local.get $request))
      ;; <handle body>
    ))

  (core instance $handler (instantiate $Handler
    (with "host" (instance
      (export "memory" (memory $mem))
      (export "fields-new" (func $fields-new))
      (export "response-new" (func $response-new))
      (export "set-status" (func $set-status))
      (export "response-body" (func $response-body))
      (export "body-write" (func $body-write))
      (export "body-finish" (func $body-finish))
      (export "outparam-set" (func $outparam-set))
      (export "write" (func $write))
      (export "drop-stream" (func $drop-stream))
      (export "drop-request" (func $drop-request))))))

  (func $handle (param "request" (own $incoming-request)) (param "response-out" (own $response-outparam))
    (canon lift (core func $handler "handle")))
  (instance $incoming-handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $incoming-handler)))
