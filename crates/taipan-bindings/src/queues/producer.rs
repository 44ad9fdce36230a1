//! A producer binding (`[[queues.producers]]`): `env.QUEUE.send(body)` and
//! `sendBatch([...])`. The guest serializes each body by its content type;
//! `send`'s payload is the body, `sendBatch`'s the bodies one after another
//! with their sizes in the arguments.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::Value;

use super::{MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, NewMessage, Queues, check_message};
use crate::Binding;
use crate::protocol::{BindingError, Call, Reply};

pub struct QueueProducer {
    pub queues: Arc<Queues>,
    pub queue: String,
    /// Seconds a message waits unless its send says otherwise.
    pub delivery_delay: u64,
}

impl Binding for QueueProducer {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            match op.as_str() {
                "send" => self.send(call).await,
                "sendBatch" => self.send_batch(call).await,
                _ => Err(BindingError::type_error(format!(
                    "a queue has no operation {op:?}"
                ))),
            }
        })
    }
}

impl QueueProducer {
    fn delay(&self, value: Option<&Value>) -> Result<u64, BindingError> {
        match value {
            None | Some(Value::Null) => Ok(self.delivery_delay),
            Some(v) => v.as_u64().ok_or_else(|| {
                BindingError::type_error(
                    "delaySeconds must be a whole number of seconds, 0 or more",
                )
            }),
        }
    }

    async fn send(&self, call: Call) -> Result<Reply, BindingError> {
        let content_type = call
            .args
            .get("contentType")
            .and_then(Value::as_str)
            .unwrap_or("json")
            .to_string();
        let delay_seconds = self.delay(call.args.get("delaySeconds"))?;
        let body = read_payload(call.body, super::MAX_MESSAGE_BYTES).await?;
        check_message(&content_type, body.len(), delay_seconds)?;
        let message = NewMessage {
            body,
            content_type,
            delay_seconds,
        };
        self.queues.send(&self.queue, vec![message]).await?;
        Ok(Reply::Json(Value::Null))
    }

    async fn send_batch(&self, call: Call) -> Result<Reply, BindingError> {
        let items = call
            .args
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| BindingError::type_error("sendBatch() takes a list of messages"))?;
        if items.is_empty() {
            return Err(BindingError::type_error(
                "sendBatch() requires at least one message",
            ));
        }
        if items.len() > MAX_BATCH_MESSAGES {
            return Err(BindingError::error(format!(
                "Queue sendBatch failed: {} messages, over the limit of {MAX_BATCH_MESSAGES} (10206)",
                items.len()
            )));
        }
        let batch_delay = call.args.get("delaySeconds");
        let payload = read_payload(call.body, MAX_BATCH_BYTES).await?;
        let mut messages = Vec::with_capacity(items.len());
        let mut offset = 0usize;
        for item in items {
            let size = item.get("size").and_then(Value::as_u64).unwrap_or(u64::MAX) as usize;
            let end = offset
                .checked_add(size)
                .filter(|&end| end <= payload.len())
                .ok_or_else(|| {
                    BindingError::error(
                        "Queue sendBatch failed: the message sizes do not match the bodies sent",
                    )
                })?;
            let content_type = item
                .get("contentType")
                .and_then(Value::as_str)
                .unwrap_or("json")
                .to_string();
            // A message's own delay, else the batch's (null means not given).
            let own = item.get("delaySeconds").filter(|d| !d.is_null());
            let delay_seconds = self.delay(own.or(batch_delay))?;
            check_message(&content_type, size, delay_seconds)?;
            messages.push(NewMessage {
                body: payload.slice(offset..end),
                content_type,
                delay_seconds,
            });
            offset = end;
        }
        self.queues.send(&self.queue, messages).await?;
        Ok(Reply::Json(Value::Null))
    }
}

/// The call's payload, refused past `limit` bytes (as Cloudflare refuses a
/// message or batch over its size).
async fn read_payload(
    body: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    limit: usize,
) -> Result<Bytes, BindingError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            let code = if limit == MAX_BATCH_BYTES {
                10205
            } else {
                10204
            };
            Err(BindingError::error(format!(
                "Queue send failed: the messages are over the limit of {limit} bytes ({code})"
            )))
        }
        Err(e) => Err(BindingError::error(format!(
            "reading the message failed: {e}"
        ))),
    }
}
