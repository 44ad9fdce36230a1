//! The workers `taipan serve` runs, and which one a request goes to.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use taipan_config::RoutePattern;
use taipan_runtime::Worker;

use crate::store::VersionRecord;

/// A worker version that is serving.
pub struct Deployed {
    pub version: VersionRecord,
    pub worker: Arc<Worker>,
    pub routes: Vec<RoutePattern>,
}

pub struct Registry {
    workers: RwLock<BTreeMap<String, Arc<Deployed>>>,
    /// Workers without routes answer at `<name>.<base_domain>`.
    base_domain: String,
    /// Versions taken out of service, while requests may still hold them.
    retired: std::sync::Mutex<Vec<std::sync::Weak<Deployed>>>,
}

impl Registry {
    pub fn new(base_domain: &str) -> Self {
        Self {
            workers: RwLock::default(),
            retired: std::sync::Mutex::default(),
            base_domain: base_domain
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .to_ascii_lowercase(),
        }
    }

    pub fn base_domain(&self) -> &str {
        &self.base_domain
    }

    /// Which worker serves `host` (a Host header, port allowed) and `path`:
    /// the most specific matching route, else `<name>.<base_domain>`.
    pub fn route(&self, host: &str, path: &str) -> Option<Arc<Deployed>> {
        let host = host_without_port(host).to_ascii_lowercase();
        let workers = self.workers.read().unwrap_or_else(|e| e.into_inner());
        let by_route = workers
            .values()
            .flat_map(|d| d.routes.iter().map(move |r| (r, d)))
            .filter(|(r, _)| r.matches(&host, path))
            .max_by_key(|(r, _)| r.specificity())
            .map(|(_, d)| d.clone());
        by_route.or_else(|| {
            let name = host.strip_suffix(&self.base_domain)?.strip_suffix('.')?;
            workers.get(name).filter(|d| d.routes.is_empty()).cloned()
        })
    }

    /// Put `deployed` in service; the version it replaces finishes its requests.
    pub fn insert(&self, deployed: Deployed) {
        deployed.worker.start_standby();
        let name = deployed.version.worker.clone();
        let old = self
            .workers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, Arc::new(deployed));
        if let Some(old) = old {
            self.retire(&old);
        }
    }

    pub fn remove(&self, name: &str) -> bool {
        let old = self
            .workers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        old.inspect(|d| self.retire(d)).is_some()
    }

    /// A version taken out of service: it finishes the requests it has.
    fn retire(&self, old: &Arc<Deployed>) {
        old.worker.drain_idle();
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|d| d.strong_count() > 0);
        retired.push(Arc::downgrade(old));
    }

    /// The versions in service, and those taken out of it that still
    /// finish requests: the files they use must stay (crate::gc).
    pub fn in_use(&self) -> Vec<Arc<Deployed>> {
        let mut in_use = self.list();
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|d| d.strong_count() > 0);
        in_use.extend(retired.iter().filter_map(std::sync::Weak::upgrade));
        in_use
    }

    pub fn get(&self, name: &str) -> Option<Arc<Deployed>> {
        self.workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<Deployed>> {
        self.workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_ignored() {
        assert_eq!(host_without_port("a.localhost:8080"), "a.localhost");
        assert_eq!(host_without_port("a.localhost"), "a.localhost");
        assert_eq!(host_without_port("[::1]:80"), "::1");
    }
}
