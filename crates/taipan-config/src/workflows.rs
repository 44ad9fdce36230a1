//! `workflows`: `env.BINDING` starts and manages instances of the workflow
//! `name`, whose `run` is the `class_name` class of this worker (or of
//! `script_name`'s).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::{binding_name, is_identifier, optional_string};
use crate::error::ConfigError;
use crate::queues::valid_queue_name;
use crate::raw::RawConfig;

const KEY: &str = "workflows";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowBinding {
    /// The workflow's name: what its instances are stored under.
    pub name: String,
    pub binding: String,
    /// The `WorkflowEntrypoint` subclass whose `run` is the workflow.
    pub class_name: String,
    /// The worker defining the class, when it is another one on the server.
    pub script_name: Option<String>,
}

pub(crate) fn parse(raw: &RawConfig) -> Result<Vec<WorkflowBinding>, ConfigError> {
    let Some(value) = raw.get(KEY) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(raw
            .error(KEY, "`workflows` must be a list of tables")
            .hint("write [[workflows]] entries with name, binding and class_name"));
    };
    let mut out: Vec<WorkflowBinding> = Vec::new();
    for item in items {
        let Value::Object(entry) = item else {
            return Err(raw.error(KEY, "each entry of `workflows` must be a table"));
        };
        let binding = binding_name(raw, KEY, entry)?;
        let name = optional_string(raw, KEY, entry, "name")?
            .filter(|n| valid_queue_name(n))
            .ok_or_else(|| {
                raw.error(
                    KEY,
                    format!(
                        "the workflow binding `{binding}` needs `name`: letters, digits, dashes"
                    ),
                )
                .hint("name = \"my-workflow\" names the workflow its instances belong to")
            })?;
        let class_name = optional_string(raw, KEY, entry, "class_name")?
            .filter(|c| is_identifier(c))
            .ok_or_else(|| {
                raw.error(KEY, format!("the workflow binding `{binding}` needs `class_name`, a Python class name"))
                    .hint("name the WorkflowEntrypoint subclass in the worker's main module: class_name = \"MyWorkflow\"")
            })?;
        if out.iter().any(|w| w.name == name) {
            return Err(raw
                .error(KEY, format!("the workflow {name:?} is declared twice"))
                .hint("each [[workflows]] entry needs its own name"));
        }
        let script_name = optional_string(raw, KEY, entry, "script_name")?;
        out.push(WorkflowBinding {
            name,
            binding,
            class_name,
            script_name,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::fixtures::load_toml as load;

    #[test]
    fn workflows_as_wrangler_writes_them() {
        let cfg = load(
            "[[workflows]]\nname = \"signup\"\nbinding = \"SIGNUP\"\nclass_name = \"Signup\"\n",
        )
        .unwrap();
        let w = &cfg.bindings.workflows[0];
        assert_eq!(
            (w.name.as_str(), w.binding.as_str(), w.class_name.as_str()),
            ("signup", "SIGNUP", "Signup")
        );
        assert!(cfg.bindings.kinds().contains(&("SIGNUP", "workflow")));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn bad_workflows_are_errors() {
        for (body, needle) in [
            (
                "[[workflows]]\nbinding = \"W\"\nclass_name = \"C\"\n",
                "needs `name`",
            ),
            (
                "[[workflows]]\nname = \"w\"\nbinding = \"W\"\n",
                "needs `class_name`",
            ),
            (
                "[[workflows]]\nname = \"w\"\nbinding = \"A\"\nclass_name = \"C\"\n[[workflows]]\nname = \"w\"\nbinding = \"B\"\nclass_name = \"C\"\n",
                "declared twice",
            ),
        ] {
            let err = load(body).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
