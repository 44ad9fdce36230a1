//! Cron triggers under `taipan serve`: at each UTC minute, every deployed
//! worker's schedules due then fire its `scheduled` handler. In a cluster
//! every node wakes, and the one that claims the minute in the database
//! fires it: once per cluster, whichever nodes are alive.

use std::sync::Arc;
use std::time::Instant;

use crate::serve::ServeState;

/// Wake at each UTC minute and fire the cron triggers due then.
pub async fn run(state: Arc<ServeState>) {
    loop {
        let now = jiff::Timestamp::now();
        let next = (now.as_second() / 60 + 1) * 60;
        let Ok(minute) = jiff::Timestamp::from_second(next) else {
            return;
        };
        let wait = minute.duration_since(now).unsigned_abs();
        tokio::time::sleep(wait).await;
        fire(&state, minute).await;
    }
}

/// Fire every cron trigger due at `minute` (a whole UTC minute).
pub async fn fire(state: &Arc<ServeState>, minute: jiff::Timestamp) {
    let just_before = minute - jiff::SignedDuration::from_secs(1);
    for deployed in state.registry.list() {
        for expr in &deployed.version.bindings.crons {
            let Ok(schedule) = taipan_config::cron::Schedule::parse(expr) else {
                continue;
            };
            if schedule.next_after(just_before) != Some(minute) {
                continue;
            }
            let (state, deployed, expr) = (state.clone(), deployed.clone(), expr.clone());
            tokio::spawn(async move {
                if !claim(&state, &deployed.version.worker, &expr, minute).await {
                    return;
                }
                let started = Instant::now();
                let response = deployed
                    .worker
                    .scheduled(&expr, minute.as_millisecond())
                    .await;
                let status = response.status().as_u16();
                if status >= 300 {
                    tracing::warn!(worker = %deployed.version.worker, "scheduled event {expr:?} failed ({status})");
                }
                state.log_request(
                    &deployed.version.worker,
                    &format!("scheduled {expr}"),
                    status,
                    started.elapsed(),
                );
            });
        }
    }
}

/// Whether this node runs `expr` of `worker` at `minute` (always, alone).
async fn claim(state: &ServeState, worker: &str, expr: &str, minute: jiff::Timestamp) -> bool {
    let Some(node) = &state.cluster else {
        return true;
    };
    let minute = minute.as_second() / 60;
    match taipan_cluster::nodes::claim_cron(&node.cluster.db, worker, expr, minute, &node.id).await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            // Better a missed run than a double one: another node may hold it.
            tracing::warn!(
                worker,
                "cron {expr:?} skipped: the cluster database failed: {e:#}"
            );
            false
        }
    }
}
