//! `env.WORKFLOW` (a `[[workflows]]` binding): create instances and manage
//! them; and the internal binding a running instance stores its steps
//! through.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::store::{Control, STEPS_OP, WorkflowStore};
use super::{MAX_RESULT_BYTES, valid_id};
use crate::Binding;
use crate::protocol::{BindingError, Call, Reply};

pub struct WorkflowBinding {
    pub store: Arc<dyn WorkflowStore>,
    pub workflow: String,
    /// Wakes the workflow's engine (a new instance, an event, a resume).
    pub wake: Arc<Notify>,
}

impl Binding for WorkflowBinding {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            let reply = match op.as_str() {
                "create" => self.create(&call.args).await?,
                "get" => {
                    let id = instance_id(&call.args)?;
                    self.exists(&id).await?;
                    json!({ "id": id })
                }
                "status" => {
                    let id = instance_id(&call.args)?;
                    self.store
                        .status(&self.workflow, &id)
                        .await?
                        .ok_or_else(|| not_found(&id))?
                }
                "pause" | "resume" | "terminate" | "restart" => {
                    let id = instance_id(&call.args)?;
                    let control = match op.as_str() {
                        "pause" => Control::Pause,
                        "resume" => Control::Resume,
                        "terminate" => Control::Terminate,
                        _ => Control::Restart,
                    };
                    if !self.store.control(&self.workflow, &id, control).await? {
                        return Err(not_found(&id));
                    }
                    self.wake.notify_one();
                    Value::Null
                }
                "sendEvent" => {
                    let id = instance_id(&call.args)?;
                    let kind = call.str_arg("type")?.to_string();
                    let payload = call.args.get("payload").cloned().unwrap_or(Value::Null);
                    check_size(&payload, "an event's payload")?;
                    if !self
                        .store
                        .send_event(&self.workflow, &id, &kind, payload)
                        .await?
                    {
                        return Err(not_found(&id));
                    }
                    self.wake.notify_one();
                    Value::Null
                }
                _ => {
                    return Err(BindingError::type_error(format!(
                        "a workflow has no operation {op:?}"
                    )));
                }
            };
            Ok(Reply::Json(reply))
        })
    }
}

impl WorkflowBinding {
    async fn create(&self, args: &Value) -> Result<Value, BindingError> {
        let id = match args.get("id") {
            None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
            Some(_) => instance_id(args)?,
        };
        let params = args
            .get("params")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        check_size(&params, "the params")?;
        self.store.create(&self.workflow, &id, params).await?;
        self.wake.notify_one();
        Ok(json!({ "id": id }))
    }

    async fn exists(&self, id: &str) -> Result<(), BindingError> {
        match self.store.status(&self.workflow, id).await? {
            Some(_) => Ok(()),
            None => Err(not_found(id)),
        }
    }
}

fn instance_id(args: &Value) -> Result<String, BindingError> {
    let id = args.get("id").and_then(Value::as_str).unwrap_or_default();
    if !valid_id(id) {
        return Err(BindingError::type_error(format!(
            "{id:?} is not an instance id: up to 100 letters, digits, dashes and underscores"
        )));
    }
    Ok(id.to_string())
}

fn not_found(id: &str) -> BindingError {
    BindingError::error(format!("instance.not_found: no workflow instance {id:?}"))
}

fn check_size(value: &Value, what: &str) -> Result<(), BindingError> {
    let size = value.to_string().len();
    if size > MAX_RESULT_BYTES {
        return Err(BindingError::range_error(format!(
            "{what} is {size} bytes of JSON, over the limit of {MAX_RESULT_BYTES}"
        )));
    }
    Ok(())
}

/// The internal binding (`contract::WORKFLOW_BINDING`): a running instance
/// stores each completed step (`{workflow, id, name, record, event}`).
pub struct WorkflowSteps {
    pub store: Arc<dyn WorkflowStore>,
    /// The workflows this worker runs: it may write only theirs.
    pub workflows: Vec<String>,
}

impl Binding for WorkflowSteps {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            if op != STEPS_OP {
                return Err(BindingError::type_error(format!("no operation {op:?}")));
            }
            let workflow = call.str_arg("workflow")?.to_string();
            if !self.workflows.contains(&workflow) {
                return Err(BindingError::type_error(format!(
                    "this worker does not run the workflow {workflow:?}"
                )));
            }
            let id = instance_id(&call.args)?;
            let name = call.str_arg("name")?.to_string();
            let record = call.args.get("record").cloned().unwrap_or(Value::Null);
            check_size(&record, "a step's result")?;
            let event = call.args.get("event").and_then(Value::as_i64);
            let generation = call
                .args
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let stored = self
                .store
                .put_step(&workflow, &id, generation, &name, record, event)
                .await?;
            // `stop`: paused, terminated or restarted meanwhile; the run ends.
            Ok(Reply::Json(json!({ "stop": !stored })))
        })
    }
}
