//! A worker's pool of sandboxes: the permits that bound its concurrency,
//! the bounded queue of requests waiting for one, warm sandboxes kept
//! between requests (idle), and fresh ones started ahead of demand
//! (standby). Generic over what it holds, so its rules are tested with
//! plain values, no guest needed; the worker (`worker.rs`) fills it with
//! sandboxes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How a pool is sized (from the worker's `Limits`).
#[derive(Debug, Clone)]
pub struct PoolLimits {
    /// Items in use at once: the worker's request concurrency.
    pub max_active: usize,
    /// Requests that may wait for a permit.
    pub max_queue: usize,
    /// Keep items between uses (off: each use gets a fresh one).
    pub reuse: bool,
    /// An idle item unused this long is dropped; a pool not used for this
    /// long gives its standby items up too, and starts no more until it is
    /// used again (it is dormant).
    pub idle_timeout: Duration,
    /// Uses an item serves before it is dropped.
    pub max_uses: u64,
    /// Fresh items to keep started ahead of demand.
    pub standby: usize,
}

/// Why no permit was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every item is in use and the queue is full.
    QueueFull,
    /// The pool is being dropped.
    Closed,
}

struct Idle<T> {
    item: T,
    last_used: Instant,
    uses: u64,
}

pub struct Pool<T> {
    limits: PoolLimits,
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    idle: Mutex<Vec<Idle<T>>>,
    standby: Mutex<Vec<T>>,
    standby_starting: AtomicUsize,
    /// Set when starting a standby item fails (e.g. the worker's top level
    /// raises): requests then start items themselves and report the error.
    standby_failed: AtomicBool,
    /// When an item was last asked for or given back (`take`, `give_back`).
    last_use: Mutex<Instant>,
    /// Unused for `idle_timeout`: no standby items are kept or started.
    dormant: AtomicBool,
}

/// What a sweep took out of the pool, for the caller to drop outside its locks.
pub struct Swept<T> {
    pub items: Vec<T>,
    /// This sweep found the pool unused for `idle_timeout` (it was not
    /// dormant before): everything it held is in `items`.
    pub went_dormant: bool,
    /// The pool is dormant after this sweep (what it releases is released
    /// for good: nothing of the pool is in use).
    pub dormant: bool,
}

/// A use of the pool: hold it while the item is in use.
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

/// An item taken from the pool, with how many uses it has served.
pub struct Taken<T> {
    pub item: T,
    pub uses: u64,
}

fn lock<V>(m: &Mutex<V>) -> MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Pool<T> {
    pub fn new(limits: PoolLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_active)),
            queued: Arc::default(),
            idle: Mutex::default(),
            standby: Mutex::default(),
            standby_starting: AtomicUsize::new(0),
            standby_failed: AtomicBool::new(false),
            last_use: Mutex::new(Instant::now()),
            dormant: AtomicBool::new(false),
            limits,
        }
    }

    /// Dormant from the start (a worker loaded without its component): no
    /// standby items until the next `take`.
    pub fn set_dormant(&self) {
        self.dormant.store(true, Ordering::Release);
    }

    /// The pool is in use now: it is not idle, and wakes if dormant.
    fn mark_use(&self) {
        let mut last_use = lock(&self.last_use);
        *last_use = Instant::now();
        self.dormant.store(false, Ordering::Release);
    }

    /// A permit now, or after waiting in the queue; refused when the queue
    /// is full too.
    pub async fn permit(&self) -> Result<Permit, Refused> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(Permit(permit));
        }
        let _slot =
            QueueSlot::take(&self.queued, self.limits.max_queue).ok_or(Refused::QueueFull)?;
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map(Permit)
            .map_err(|_| Refused::Closed)
    }

    /// The most recently used idle item (its cache is warmest), else a
    /// standby one; `None`: the caller starts a fresh one.
    pub fn take(&self) -> Option<Taken<T>> {
        self.mark_use();
        let idle = {
            let mut idle = lock(&self.idle);
            let timeout = self.limits.idle_timeout;
            idle.retain(|i| i.last_used.elapsed() < timeout);
            idle.pop()
        };
        match idle {
            Some(i) => Some(Taken {
                item: i.item,
                uses: i.uses,
            }),
            None => lock(&self.standby).pop().map(Taken::fresh),
        }
    }

    /// Give an item back after a successful use: kept for the next request
    /// unless reuse is off or it has served `max_uses`.
    pub fn give_back(&self, taken: Taken<T>) {
        self.mark_use();
        let uses = taken.uses + 1;
        if self.limits.reuse && uses < self.limits.max_uses {
            lock(&self.idle).push(Idle {
                item: taken.item,
                last_used: Instant::now(),
                uses,
            });
        }
    }

    /// Claims one standby start if the standby is short (ready + starting
    /// below the target); the caller starts the item and reports with
    /// [`Pool::standby_started`]. False once a start has failed.
    pub fn claim_standby_start(&self) -> bool {
        if self.standby_failed.load(Ordering::Acquire) || self.dormant.load(Ordering::Acquire) {
            return false;
        }
        loop {
            let ready = lock(&self.standby).len();
            let starting = self.standby_starting.load(Ordering::Acquire);
            if ready + starting >= self.limits.standby {
                return false;
            }
            if self
                .standby_starting
                .compare_exchange(starting, starting + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// The outcome of a claimed standby start: the item joins the standby;
    /// an error stops further standby starts.
    pub fn standby_started<E>(&self, started: Result<T, E>) -> Result<(), E> {
        self.standby_starting.fetch_sub(1, Ordering::AcqRel);
        match started {
            Ok(item) => {
                lock(&self.standby).push(item);
                Ok(())
            }
            Err(e) => {
                self.standby_failed.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    /// A claimed standby start given up for a reason that may pass (the
    /// worker could not be linked again): later starts are still tried.
    pub fn standby_abandoned(&self) {
        self.standby_starting.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn standby_count(&self) -> usize {
        lock(&self.standby).len()
    }

    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Take out the idle items unused for `idle_timeout`; once the pool
    /// itself has not been used for that long (no item asked for or given
    /// back, none in use), its standby items too, and any started since at
    /// later sweeps.
    pub fn sweep(&self) -> Swept<T> {
        let timeout = self.limits.idle_timeout;
        let mut items: Vec<T> = lock(&self.idle)
            .extract_if(.., |i| i.last_used.elapsed() >= timeout)
            .map(|i| i.item)
            .collect();
        let in_use = self.permits.available_permits() < self.limits.max_active;
        let went_dormant = {
            // Under `last_use`'s lock: a `take` either comes before (and the
            // pool stays awake) or after (and wakes it).
            let last_use = lock(&self.last_use);
            !in_use && last_use.elapsed() >= timeout && !self.dormant.swap(true, Ordering::AcqRel)
        };
        let dormant = self.dormant.load(Ordering::Acquire);
        if dormant {
            items.append(&mut lock(&self.standby));
        }
        Swept {
            items,
            went_dormant,
            dormant,
        }
    }

    /// Drop every idle and standby item (e.g. before the worker is replaced).
    pub fn drain(&self) {
        lock(&self.idle).clear();
        lock(&self.standby).clear();
    }
}

impl<T> Taken<T> {
    /// An item no request has used.
    pub fn fresh(item: T) -> Self {
        Self { item, uses: 0 }
    }
}

/// A place in the wait queue, given back on drop.
struct QueueSlot(Arc<AtomicUsize>);

impl QueueSlot {
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(counter.clone()))
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PoolLimits {
        PoolLimits {
            max_active: 2,
            max_queue: 1,
            reuse: true,
            idle_timeout: Duration::from_secs(60),
            max_uses: 3,
            standby: 2,
        }
    }

    #[test]
    fn a_failed_standby_start_stops_them_an_abandoned_one_does_not() {
        let pool: Pool<&str> = Pool::new(limits());
        assert!(pool.claim_standby_start());
        pool.standby_abandoned();
        assert!(pool.claim_standby_start() && pool.claim_standby_start());
        assert!(!pool.claim_standby_start(), "two at most");
        pool.standby_abandoned();
        pool.standby_started(Err("the top level raised"))
            .unwrap_err();
        assert!(!pool.claim_standby_start());
    }

    #[test]
    fn an_unused_pool_gives_everything_up_once_and_wakes_on_use() {
        let pool = Pool::new(PoolLimits {
            idle_timeout: Duration::from_secs(1),
            ..limits()
        });
        assert!(pool.claim_standby_start());
        pool.standby_started::<()>(Ok("standby")).unwrap();
        pool.give_back(Taken::fresh("warm"));
        let swept = pool.sweep();
        assert!(swept.items.is_empty() && !swept.went_dormant && !swept.dormant);

        std::thread::sleep(Duration::from_millis(1100));
        let mut swept = pool.sweep();
        swept.items.sort();
        assert_eq!(swept.items, ["standby", "warm"]);
        assert!(swept.went_dormant && swept.dormant);
        assert_eq!((pool.idle_count(), pool.standby_count()), (0, 0));
        // Dormant: no standby is started, and a later sweep reports nothing new.
        assert!(!pool.claim_standby_start());
        let swept = pool.sweep();
        assert!(swept.items.is_empty() && !swept.went_dormant && swept.dormant);

        // A request wakes it: standby items are started again.
        assert!(pool.take().is_none());
        assert!(pool.claim_standby_start());
    }

    #[tokio::test]
    async fn a_pool_with_an_item_in_use_does_not_go_dormant() {
        let pool: Pool<&str> = Pool::new(PoolLimits {
            idle_timeout: Duration::from_millis(100),
            ..limits()
        });
        let _permit = pool.permit().await.unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let swept = pool.sweep();
        assert!(!swept.went_dormant && !swept.dormant);
        assert!(pool.claim_standby_start());
    }

    #[test]
    fn a_used_pool_drops_only_its_stale_idle_items() {
        let pool = Pool::new(PoolLimits {
            idle_timeout: Duration::from_secs(1),
            ..limits()
        });
        pool.give_back(Taken::fresh("stale"));
        std::thread::sleep(Duration::from_millis(600));
        pool.give_back(Taken::fresh("recent"));
        assert!(pool.take().is_some_and(|t| t.item == "recent"));
        pool.give_back(Taken::fresh("recent"));
        // "stale" is now past the timeout, the pool itself is not.
        std::thread::sleep(Duration::from_millis(500));
        let swept = pool.sweep();
        assert_eq!(swept.items, ["stale"]);
        assert!(!swept.went_dormant);
        assert_eq!(pool.idle_count(), 1);
    }

    #[test]
    fn idle_items_are_reused_newest_first_then_standby() {
        let pool = Pool::new(limits());
        assert!(pool.take().is_none());
        assert!(pool.claim_standby_start());
        pool.standby_started::<()>(Ok("standby")).unwrap();
        pool.give_back(Taken::fresh("a"));
        pool.give_back(Taken::fresh("b"));
        assert_eq!(pool.take().unwrap().item, "b");
        assert_eq!(pool.take().unwrap().item, "a");
        assert_eq!(pool.take().unwrap().item, "standby");
        assert!(pool.take().is_none());
    }

    #[test]
    fn an_item_retires_after_max_uses_and_reuse_off_keeps_none() {
        let pool = Pool::new(limits());
        let mut taken = Taken::fresh(1);
        for _ in 0..2 {
            pool.give_back(taken);
            taken = pool.take().expect("kept");
        }
        pool.give_back(taken); // the third use: retired
        assert_eq!(pool.idle_count(), 0);

        let pool = Pool::new(PoolLimits {
            reuse: false,
            ..limits()
        });
        pool.give_back(Taken::fresh(1));
        assert!(pool.take().is_none());
    }

    #[test]
    fn idle_items_past_the_timeout_are_dropped() {
        let pool = Pool::new(PoolLimits {
            idle_timeout: Duration::ZERO,
            ..limits()
        });
        pool.give_back(Taken::fresh(1));
        assert!(pool.take().is_none());
    }

    #[test]
    fn standby_starts_stop_at_the_target_and_after_a_failure() {
        let pool: Pool<u8> = Pool::new(limits());
        assert!(pool.claim_standby_start());
        assert!(pool.claim_standby_start());
        assert!(!pool.claim_standby_start(), "two starting = the target");
        pool.standby_started::<()>(Ok(1)).unwrap();
        assert!(!pool.claim_standby_start(), "one ready + one starting");
        assert_eq!(pool.standby_started(Err("boom")), Err("boom"));
        assert!(
            !pool.claim_standby_start(),
            "no more starts after a failure"
        );
        assert_eq!(pool.standby_count(), 1);
    }

    #[tokio::test]
    async fn past_the_permits_requests_queue_and_past_the_queue_they_are_refused() {
        let pool: Arc<Pool<u8>> = Arc::new(Pool::new(limits()));
        let first = pool.permit().await.unwrap();
        let _second = pool.permit().await.unwrap();
        // A third waits in the queue (its one place)...
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.permit().await.map(|_| ()) }
        });
        while pool.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // ...so a fourth is refused.
        assert_eq!(pool.permit().await.err(), Some(Refused::QueueFull));
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(pool.queued.load(Ordering::Acquire), 0);
    }
}
