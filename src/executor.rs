//! Runs work items concurrently under limits: at most N in flight, at most R starts a second,
//! retries with exponential backoff and jitter, one shared pause when the server says "slow down",
//! and a clean stop on Ctrl-C or on an error that no retry can fix.
//!
//! It knows nothing of Matrix: the work tells it, per attempt, whether the item is done, should be
//! tried again (and how), or whether the whole run must stop.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod spread;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// What one attempt at an item came to: `Ok` is final and recorded as it is; `Err` says why it
/// is not done yet, so that a job can use `?` on every request.
pub type Attempt<T> = Result<T, Fail<T>>;

/// An attempt that did not come to its own end.
#[derive(Debug)]
pub enum Fail<T> {
    /// Final all the same: record `T` (a refusal that no retry changes).
    Final(T),
    /// Worth another try; `last` is recorded if the retries run out.
    Retry { last: T, kind: Transient },
    /// No item can succeed now (the credentials were refused): stop the run.
    Abort(String),
}

impl<T> Fail<T> {
    /// The same failure about another kind of output.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Fail<U> {
        match self {
            Fail::Final(t) => Fail::Final(f(t)),
            Fail::Retry { last, kind } => Fail::Retry {
                last: f(last),
                kind,
            },
            Fail::Abort(why) => Fail::Abort(why),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transient {
    /// The server asked every client to wait (429): all workers pause for this long.
    RateLimited(Option<Duration>),
    /// A passing failure of this request (timeout, reset, 500): back off and retry this item.
    Failed,
    /// The server (or the proxy in front of it) is down for everyone: 502-504. Every worker
    /// pauses for the backoff; if it stays so past the retries, the run stops.
    Unavailable,
    /// The server could not be reached at all; if it stays so, the run stops.
    Unreachable,
}

/// The work: one attempt at one item.
pub trait Work: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;
    fn attempt(&self, item: &Self::Item) -> impl Future<Output = Attempt<Self::Output>> + Send;

    /// Items with the same key never run at the same time (a read-modify-write of one account,
    /// say); items with different keys, or none, run side by side.
    fn serial_key(&self, _item: &Self::Item) -> Option<String> {
        None
    }

    /// Items with different spread keys are run side by side before more items of one key: a
    /// server that serialises work per key (a room) is kept busy on every key, whatever the
    /// order items come in (see `spread`).
    fn spread_key(&self, _item: &Self::Item) -> Option<String> {
        None
    }

    /// What went wrong, in words, for the reason a run stops when the server stays unreachable.
    fn explain(&self, _output: &Self::Output) -> String {
        String::new()
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub concurrency: usize,
    /// Attempts started per second, at most; `None` leaves concurrency as the only bound.
    pub rate: Option<f64>,
    /// Extra attempts after the first for a failed or unreachable item.
    pub retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Limits {
    /// The limits every run uses unless told otherwise: backoff from half a second to 30 s.
    pub fn new(concurrency: usize, rate: Option<f64>, retries: u32) -> Limits {
        Limits {
            concurrency,
            rate,
            retries,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }

    /// 429s do not use up `retries` (the server says exactly when to come back), but are bounded
    /// all the same so that a server that never lets up cannot hold a row forever.
    fn max_rate_limited(&self) -> u32 {
        100 + 20 * self.retries
    }
}

/// An item that finished, with what it finished as.
pub struct Finished<I, T> {
    pub item: I,
    pub output: T,
    pub attempts: u32,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// Every item was run.
    Completed,
    /// Cancelled from outside (Ctrl-C): in-flight attempts were finished and reported.
    Interrupted,
    /// The work said no item can succeed.
    Aborted(String),
}

/// Shared state of one run. Finished items go out as `R`, so that the receiver can take other
/// lines too (the rows that never needed sending).
struct Shared<W: Work, R> {
    work: W,
    limits: Limits,
    rate: Option<DefaultDirectRateLimiter>,
    /// Nobody starts an attempt before this instant (set by 429 answers).
    paused_until: Mutex<Option<Instant>>,
    /// Cancelled on Ctrl-C (from outside) or on abort (from inside).
    stop: CancellationToken,
    abort: Mutex<Option<String>>,
    serial: KeyedLocks,
    window: Window,
    done: mpsc::Sender<R>,
}

/// Runs every item from `items`, sending each finished one to `done`; returns why it stopped.
/// Items still queued when it stops are left unrun and unreported. Items come in batches: one
/// hand-over (and one thread wake-up) for many items, where one per item costs more CPU than
/// the request itself against a fast server.
pub async fn run<W, R>(
    work: W,
    limits: Limits,
    mut items: mpsc::Receiver<Vec<W::Item>>,
    done: mpsc::Sender<R>,
    cancel: CancellationToken,
) -> Stop
where
    W: Work,
    R: From<Finished<W::Item, W::Output>> + Send + 'static,
{
    let concurrency = limits.concurrency.max(1);
    let shared = Arc::new(Shared {
        rate: limits.rate.map(rate_limiter),
        work,
        limits,
        paused_until: Mutex::new(None),
        stop: cancel.child_token(),
        abort: Mutex::new(None),
        serial: KeyedLocks::default(),
        window: Window::new(concurrency),
        done,
    });
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut queue = spread::Queue::new();
    let add = |queue: &mut spread::Queue<W::Item>, batch: Vec<W::Item>| {
        for item in batch {
            queue.push(shared.work.spread_key(&item), item);
        }
    };
    loop {
        let slot = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("semaphore is never closed"),
        };
        if queue.is_empty() {
            tokio::select! {
                biased;
                _ = shared.stop.cancelled() => break,
                batch = items.recv() => match batch {
                    Some(batch) => add(&mut queue, batch),
                    None => break,
                },
            }
        }
        // Items with spread keys: look ahead (without waiting) for other keys to run.
        while queue.wants_more() {
            match items.try_recv() {
                Ok(batch) => add(&mut queue, batch),
                Err(_) => break,
            }
        }
        let Some((item, in_flight)) = queue.pop() else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            run_item(&shared, item).await;
            drop((in_flight, slot));
        });
    }
    // Stop the producer, then wait for every worker to give its slot back.
    items.close();
    let _all = slots
        .acquire_many(concurrency as u32)
        .await
        .expect("semaphore is never closed");
    if let Some(reason) = shared.abort.lock().unwrap().take() {
        Stop::Aborted(reason)
    } else if cancel.is_cancelled() {
        Stop::Interrupted
    } else {
        Stop::Completed
    }
}

/// Runs one piece of work under the same retry policy as a whole run: a pager's next page, a
/// purge's single call. `Ok` holds what it finished as (the last failure if the retries ran
/// out) and the attempts it took.
pub async fn once<T, Fut>(
    limits: &Limits,
    cancel: &CancellationToken,
    mut attempt: impl FnMut() -> Fut,
) -> Result<(T, u32), Stop>
where
    Fut: Future<Output = Attempt<T>>,
{
    let mut retries = Retries::default();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (last, kind) = match attempt().await {
            Ok(output) | Err(Fail::Final(output)) => return Ok((output, attempts)),
            Err(Fail::Abort(reason)) => return Err(Stop::Aborted(reason)),
            Err(Fail::Retry { last, kind }) => (last, kind),
        };
        let wait = match retries.after(kind, limits) {
            Next::Wait(wait) => wait,
            Next::GiveUp => return Ok((last, attempts)),
            Next::Unreachable => {
                return Err(Stop::Aborted(format!(
                    "the homeserver stays {}",
                    if kind == Transient::Unavailable {
                        "unavailable"
                    } else {
                        "unreachable"
                    }
                )));
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return Err(Stop::Interrupted),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The one retry policy: how many passing failures an item may have, and how long to wait
/// after each.
#[derive(Default)]
struct Retries {
    failures: u32,
    rate_limited: u32,
}

enum Next {
    Wait(Duration),
    /// Record the last failure.
    GiveUp,
    /// The server was never reached, retries and all: stop the run.
    Unreachable,
}

impl Retries {
    fn after(&mut self, kind: Transient, limits: &Limits) -> Next {
        match kind {
            Transient::RateLimited(after) => {
                self.rate_limited += 1;
                if self.rate_limited > limits.max_rate_limited() {
                    return Next::GiveUp;
                }
                Next::Wait(after.unwrap_or_else(|| backoff(limits, self.rate_limited)))
            }
            Transient::Failed | Transient::Unavailable | Transient::Unreachable => {
                self.failures += 1;
                if self.failures <= limits.retries {
                    Next::Wait(backoff(limits, self.failures))
                } else if kind == Transient::Failed {
                    Next::GiveUp
                } else {
                    Next::Unreachable
                }
            }
        }
    }
}

async fn run_item<W: Work, R: From<Finished<W::Item, W::Output>>>(
    shared: &Shared<W, R>,
    item: W::Item,
) {
    let _serial = match shared.work.serial_key(&item) {
        Some(key) => tokio::select! {
            _ = shared.stop.cancelled() => return,
            guard = shared.serial.lock(key) => Some(guard),
        },
        None => None,
    };
    let started = Instant::now();
    let mut attempts = 0u32;
    let mut retries = Retries::default();
    loop {
        if !wait_turn(shared).await {
            return;
        }
        let Some(slot) = shared.window.enter(&shared.stop).await else {
            return;
        };
        attempts += 1;
        let attempt = shared.work.attempt(&item).await;
        slot.leave(match &attempt {
            Ok(_) | Err(Fail::Final(_)) => Verdict::Success,
            Err(Fail::Retry {
                kind: Transient::RateLimited(_),
                ..
            }) => Verdict::RateLimited,
            _ => Verdict::Neutral,
        });
        let (last, kind) = match attempt {
            Ok(output) | Err(Fail::Final(output)) => {
                return finish(shared, item, output, attempts, started).await;
            }
            Err(Fail::Abort(reason)) => {
                shared.abort.lock().unwrap().get_or_insert(reason);
                shared.stop.cancel();
                return;
            }
            Err(Fail::Retry { last, kind }) => (last, kind),
        };
        // A stopping run starts nothing new; this item stays unrecorded and runs on resume.
        if shared.stop.is_cancelled() {
            return;
        }
        let wait = match retries.after(kind, &shared.limits) {
            Next::Wait(wait) => {
                if matches!(kind, Transient::RateLimited(_) | Transient::Unavailable) {
                    pause_all(shared, wait);
                }
                wait
            }
            Next::GiveUp => return finish(shared, item, last, attempts, started).await,
            Next::Unreachable => {
                let why = shared.work.explain(&last);
                let state = if kind == Transient::Unavailable {
                    "unavailable"
                } else {
                    "unreachable"
                };
                let reason = format!("the homeserver stays {state}: {why}");
                shared.abort.lock().unwrap().get_or_insert(reason);
                shared.stop.cancel();
                return;
            }
        };
        if !sleep_unless_stopped(shared, wait).await {
            return;
        }
    }
}

async fn finish<W: Work, R: From<Finished<W::Item, W::Output>>>(
    shared: &Shared<W, R>,
    item: W::Item,
    output: W::Output,
    attempts: u32,
    started: Instant,
) {
    let finished = Finished {
        item,
        output,
        attempts,
        elapsed: started.elapsed(),
    };
    // The receiver only goes away when the whole program is going down.
    let _ = shared.done.send(finished.into()).await;
}

/// Waits out any shared pause and the rate limit. False when the run is stopping.
async fn wait_turn<W: Work, R>(shared: &Shared<W, R>) -> bool {
    loop {
        let until = *shared.paused_until.lock().unwrap();
        if let Some(until) = until.filter(|u| *u > Instant::now()) {
            if !sleep_until_unless_stopped(shared, until).await {
                return false;
            }
            continue;
        }
        if let Some(rate) = &shared.rate {
            tokio::select! {
                _ = shared.stop.cancelled() => return false,
                _ = rate.until_ready() => {}
            }
            // A pause may have begun while this worker waited for the rate limiter.
            let until = *shared.paused_until.lock().unwrap();
            if until.is_some_and(|u| u > Instant::now()) {
                continue;
            }
        }
        return !shared.stop.is_cancelled();
    }
}

fn pause_all<W: Work, R>(shared: &Shared<W, R>, wait: Duration) {
    let until = Instant::now() + wait;
    let mut paused = shared.paused_until.lock().unwrap();
    if paused.is_none_or(|p| p < until) {
        *paused = Some(until);
    }
}

async fn sleep_unless_stopped<W: Work, R>(shared: &Shared<W, R>, wait: Duration) -> bool {
    sleep_until_unless_stopped(shared, Instant::now() + wait).await
}

async fn sleep_until_unless_stopped<W: Work, R>(shared: &Shared<W, R>, until: Instant) -> bool {
    tokio::select! {
        _ = shared.stop.cancelled() => false,
        _ = tokio::time::sleep_until(until.into()) => true,
    }
}

/// How many attempts may be in flight now: the full concurrency until the server answers 429,
/// then halved at each 429 (down to one) and grown again by one after as many successes as the
/// window is wide (additive increase, multiplicative decrease, as TCP does).
///
/// The shared pause alone is not enough: when it ends, every worker would fire at once, one
/// would get through and the others would be refused again. Synapse counts some refused
/// attempts against the target user (an invitee may be invited 5 times, then once every 5
/// minutes), so a herd of retries turns a 3-second wait into minutes.
struct Window {
    max: usize,
    state: Mutex<WindowState>,
    changed: tokio::sync::Notify,
}

struct WindowState {
    limit: usize,
    in_flight: usize,
    successes: usize,
}

enum Verdict {
    Success,
    RateLimited,
    Neutral,
}

struct WindowSlot<'a>(&'a Window);

impl Window {
    fn new(max: usize) -> Window {
        Window {
            max,
            state: Mutex::new(WindowState {
                limit: max,
                in_flight: 0,
                successes: 0,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Waits for room in the window; `None` when the run is stopping.
    async fn enter(&self, stop: &CancellationToken) -> Option<WindowSlot<'_>> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.state.lock().unwrap();
                if state.in_flight < state.limit {
                    state.in_flight += 1;
                    return Some(WindowSlot(self));
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = changed => {}
            }
        }
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.state.lock().unwrap().limit
    }
}

impl WindowSlot<'_> {
    fn leave(self, verdict: Verdict) {
        let window = self.0;
        let mut state = window.state.lock().unwrap();
        state.in_flight -= 1;
        match verdict {
            Verdict::RateLimited => {
                state.limit = (state.limit / 2).max(1);
                state.successes = 0;
            }
            Verdict::Success if state.limit < window.max => {
                state.successes += 1;
                if state.successes >= state.limit {
                    state.limit += 1;
                    state.successes = 0;
                }
            }
            _ => {}
        }
        drop(state);
        window.changed.notify_waiters();
    }
}

/// One async mutex per key, dropped from the map when its last holder is done, so the map
/// holds only the keys in use.
#[derive(Default)]
struct KeyedLocks {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct KeyGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    async fn lock(&self, key: String) -> KeyGuard<'_> {
        let mutex = self
            .held
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = mutex.clone().lock_owned().await;
        KeyGuard {
            locks: self,
            key,
            mutex,
            guard: Some(guard),
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut held = self.locks.held.lock().unwrap();
        // Two references, the map's and this guard's: nobody else waits on this key.
        if Arc::strong_count(&self.mutex) == 2 {
            held.remove(&self.key);
        }
    }
}

/// Exponential backoff with jitter: base * 2^(n-1), capped, then scaled by a random factor in
/// [0.5, 1) so that workers that failed together do not retry together.
pub fn backoff(limits: &Limits, failures: u32) -> Duration {
    let exp = limits
        .backoff_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(limits.backoff_max);
    capped.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Evenly spaced starts (burst of one): "at most R a second" holds in every one-second window.
fn rate_limiter(per_second: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / per_second);
    let quota = Quota::with_period(period)
        .expect("rate is validated positive and finite")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn limits(concurrency: usize, retries: u32) -> Limits {
        Limits {
            concurrency,
            rate: None,
            retries,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
        }
    }

    /// Item `(n, tries)` fails transiently n times, then succeeds. Item 1000 aborts the run.
    /// The counters are shared with the test, which reads them after `run` consumed the work.
    #[derive(Clone, Default)]
    struct Flaky {
        in_flight: Arc<AtomicU32>,
        max_in_flight: Arc<AtomicU32>,
    }

    impl Work for Flaky {
        type Item = (u32, Arc<AtomicU32>);
        type Output = (u32, &'static str);
        async fn attempt(&self, (fails, tries): &Self::Item) -> Attempt<Self::Output> {
            if *fails == 1000 {
                return Err(Fail::Abort("token rejected".into()));
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if tries.fetch_add(1, Ordering::SeqCst) < *fails {
                Err(Fail::Retry {
                    last: (*fails, "failed"),
                    kind: Transient::Failed,
                })
            } else {
                Ok((*fails, "ok"))
            }
        }
    }

    /// Runs items that fail `fails[i]` times; returns the stop, the sorted (item, output,
    /// attempts) of what finished, and how many items the producer managed to queue.
    async fn run_items(
        work: Flaky,
        fails: &[u32],
        limits: Limits,
    ) -> (Stop, Vec<(u32, &'static str, u32)>, usize) {
        let (item_tx, item_rx) = mpsc::channel(1);
        let (done_tx, mut done_rx) =
            mpsc::channel::<Finished<(u32, Arc<AtomicU32>), (u32, &str)>>(fails.len().max(1));
        let fails = fails.to_vec();
        let producer = tokio::spawn(async move {
            let mut sent = 0;
            for f in fails {
                if item_tx
                    .send(vec![(f, Arc::new(AtomicU32::new(0)))])
                    .await
                    .is_err()
                {
                    break;
                }
                sent += 1;
            }
            sent
        });
        let stop = run(work, limits, item_rx, done_tx, CancellationToken::new()).await;
        let mut out = vec![];
        while let Ok(f) = done_rx.try_recv() {
            out.push((f.output.0, f.output.1, f.attempts));
        }
        out.sort();
        (stop, out, producer.await.unwrap())
    }

    #[tokio::test]
    async fn retries_until_success_and_counts_attempts() {
        let (stop, out, _) = run_items(Flaky::default(), &[0, 1, 3], limits(2, 5)).await;
        assert_eq!(stop, Stop::Completed);
        assert_eq!(out, vec![(0, "ok", 1), (1, "ok", 2), (3, "ok", 4)]);
    }

    #[tokio::test]
    async fn gives_up_after_retries_with_last_output() {
        let (stop, out, _) = run_items(Flaky::default(), &[9], limits(1, 2)).await;
        assert_eq!(stop, Stop::Completed);
        assert_eq!(out, vec![(9, "failed", 3)]);
    }

    #[tokio::test]
    async fn never_more_than_concurrency_in_flight() {
        let work = Flaky::default();
        let (_, out, _) = run_items(work.clone(), &[0; 40], limits(3, 0)).await;
        assert_eq!(out.len(), 40);
        let max = work.max_in_flight.load(Ordering::SeqCst);
        assert!((2..=3).contains(&max), "max in flight {max}");
    }

    #[tokio::test]
    async fn abort_stops_the_run_and_reports_why() {
        let mut items = vec![0; 3];
        items.push(1000);
        items.extend([0; 500]);
        let (stop, out, sent) = run_items(Flaky::default(), &items, limits(1, 0)).await;
        assert_eq!(stop, Stop::Aborted("token rejected".into()));
        assert_eq!(out.len(), 3, "only the rows before the abort finish");
        assert!(
            sent < items.len(),
            "producer should be stopped, sent {sent}"
        );
    }

    #[tokio::test]
    async fn rate_limit_spaces_starts() {
        let mut l = limits(5, 0);
        l.rate = Some(50.0);
        let started = Instant::now();
        let (_, out, _) = run_items(Flaky::default(), &[0; 5], l).await;
        assert_eq!(out.len(), 5);
        // 5 starts at 50/s, evenly spaced: the last cannot start before 4 * 20 ms have passed.
        assert!(started.elapsed() >= Duration::from_millis(79));
    }

    /// Items are (key, id); records the most items of one key ever in flight together.
    #[derive(Clone, Default)]
    struct PerKey {
        in_flight: Arc<Mutex<HashMap<u32, u32>>>,
        worst: Arc<AtomicU32>,
    }

    impl Work for PerKey {
        type Item = (u32, u32);
        type Output = u32;
        async fn attempt(&self, (key, id): &(u32, u32)) -> Attempt<u32> {
            let now = {
                let mut map = self.in_flight.lock().unwrap();
                let n = map.entry(*key).or_default();
                *n += 1;
                *n
            };
            self.worst.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(3)).await;
            *self.in_flight.lock().unwrap().get_mut(key).unwrap() -= 1;
            Ok(*id)
        }

        fn serial_key(&self, (key, _): &(u32, u32)) -> Option<String> {
            Some(key.to_string())
        }
    }

    #[tokio::test]
    async fn items_with_one_key_never_overlap() {
        let (item_tx, item_rx) = mpsc::channel(100);
        let (done_tx, mut done_rx) = mpsc::channel::<Finished<(u32, u32), u32>>(100);
        for id in 0..40 {
            item_tx.send(vec![(id % 3, id)]).await.unwrap();
        }
        drop(item_tx);
        let work = PerKey::default();
        let stop = run(
            work.clone(),
            limits(8, 0),
            item_rx,
            done_tx,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(stop, Stop::Completed);
        let mut n = 0;
        while done_rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 40);
        assert_eq!(work.worst.load(Ordering::SeqCst), 1);
        assert!(work.in_flight.lock().unwrap().values().all(|v| *v == 0));
    }

    /// Items are (room, id), sorted by room; records the rooms in the order attempts start.
    #[derive(Clone, Default)]
    struct Rooms {
        started: Arc<Mutex<Vec<u32>>>,
    }

    impl Work for Rooms {
        type Item = (u32, u32);
        type Output = u32;
        async fn attempt(&self, (room, id): &(u32, u32)) -> Attempt<u32> {
            self.started.lock().unwrap().push(*room);
            tokio::time::sleep(Duration::from_millis(3)).await;
            Ok(*id)
        }

        fn spread_key(&self, (room, _): &(u32, u32)) -> Option<String> {
            Some(room.to_string())
        }
    }

    #[tokio::test]
    async fn a_room_sorted_input_runs_every_room_at_once() {
        let (item_tx, item_rx) = mpsc::channel(100);
        let (done_tx, mut done_rx) = mpsc::channel::<Finished<(u32, u32), u32>>(100);
        for id in 0..60 {
            item_tx.send(vec![(id / 20, id)]).await.unwrap();
        }
        drop(item_tx);
        let work = Rooms::default();
        let stop = run(
            work.clone(),
            limits(6, 0),
            item_rx,
            done_tx,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(stop, Stop::Completed);
        let mut ids = vec![];
        while let Ok(done) = done_rx.try_recv() {
            ids.push(done.output);
        }
        ids.sort();
        assert_eq!(ids, (0..60).collect::<Vec<_>>(), "every item ran once");
        let started = work.started.lock().unwrap().clone();
        // In file order the second room would start 20th: here the first three starts take
        // one room each, and the rooms change far more often than the two times of the file.
        assert_eq!(started[..3], [0, 1, 2], "{started:?}");
        let changes = started.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes > 20, "rooms changed {changes} times: {started:?}");
    }

    #[tokio::test]
    async fn window_halves_on_429_and_grows_back_one_at_a_time() {
        let window = Window::new(8);
        let stop = CancellationToken::new();
        assert_eq!(window.limit(), 8);
        for expected in [4, 2, 1, 1] {
            window
                .enter(&stop)
                .await
                .unwrap()
                .leave(Verdict::RateLimited);
            assert_eq!(window.limit(), expected);
        }
        // With a window of one, a second attempt waits for the first.
        let first = window.enter(&stop).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(20), window.enter(&stop)).await;
        assert!(waiting.is_err(), "a second slot must not be given");
        first.leave(Verdict::Success);
        assert_eq!(window.limit(), 2, "one success at width 1 widens it");
        for _ in 0..2 {
            window.enter(&stop).await.unwrap().leave(Verdict::Success);
        }
        assert_eq!(window.limit(), 3);
        window.enter(&stop).await.unwrap().leave(Verdict::Neutral);
        assert_eq!(window.limit(), 3);
    }

    /// `once` runs one piece of work under the run's policy: retried until done, the last
    /// failure kept when retries run out, and a server never reached stops it.
    #[tokio::test]
    async fn once_retries_gives_up_and_aborts_like_a_run() {
        let cancel = CancellationToken::new();
        let script = |fails: u32, kind: Transient| {
            let tries = AtomicU32::new(0);
            move || {
                let n = tries.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < fails {
                        Err(Fail::Retry { last: n, kind })
                    } else {
                        Ok(n)
                    }
                }
            }
        };
        let done = once(&limits(1, 5), &cancel, script(2, Transient::Failed)).await;
        assert_eq!(
            done,
            Ok((2, 3)),
            "two failures, then done on the third attempt"
        );
        let gave_up = once(&limits(1, 1), &cancel, script(9, Transient::Failed)).await;
        assert_eq!(
            gave_up,
            Ok((1, 2)),
            "the last failure, after 1 + 1 attempts"
        );
        let unreachable = once(&limits(1, 1), &cancel, script(9, Transient::Unreachable)).await;
        assert!(matches!(unreachable, Err(Stop::Aborted(m)) if m.contains("unreachable")));
        let aborted = once(&limits(1, 5), &cancel, || async {
            Err::<u32, _>(Fail::Abort("token rejected".into()))
        })
        .await;
        assert_eq!(aborted, Err(Stop::Aborted("token rejected".into())));
        let final_failure = once(&limits(1, 5), &cancel, || async { Err(Fail::Final(7u32)) }).await;
        assert_eq!(final_failure, Ok((7, 1)), "a final failure is not retried");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let l = Limits {
            concurrency: 1,
            rate: None,
            retries: 5,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let first = backoff(&l, 1);
            assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
            let fourth = backoff(&l, 4);
            assert!(fourth >= Duration::from_millis(400) && fourth < Duration::from_millis(800));
            assert!(backoff(&l, 30) < Duration::from_millis(1000));
        }
    }
}
