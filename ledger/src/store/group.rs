//! Group commit: concurrent appends share one transaction and one durable commit.
//!
//! Each caller queues its request and waits for its own result. One drain task per store
//! takes everything queued (up to [`BATCH_REQUESTS_MAX`]), appends it as one batch (see
//! `append`: one append lock, a savepoint per request, one commit) and answers every caller;
//! whatever arrived while that commit was in flight is the next batch. Nobody is answered
//! before the commit that holds their events has returned.
//!
//! The batch runs in its own task, not in a caller's future, so a caller that goes away
//! (an HTTP client hanging up) cannot abort a transaction holding its neighbours' events.
//! That task runs on a thread of its own (the store's *committer*, a single-threaded
//! runtime), not on the callers' runtime: there every step of the batch (each statement's
//! answer, each lock) waited in the scheduler's queue behind the callers' tasks while the
//! batch held the append lock (BENCHMARKS.md, sixteenth stop). Nor on the caller's own
//! runtime: actix-web gives each worker its own and stops a worker once its own connections
//! are done (graceful shutdown), which would drop a batch still holding other workers'
//! requests.
//!
//! When a batch of several fails *before* its commit (a database error while one request was
//! written), its requests are tried again one by one, so the error reaches only the request
//! that causes it. A failed *commit* is not retried: its outcome is unknown to us, and the
//! callers are told so (the idempotency key makes their retry safe).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::append::{AppendOutcome, AppendRequest, BatchFailure, Refusal};
use super::{Store, StoreError};

/// Most requests in one transaction: a bound on the time the append lock is held and on
/// the memory of one batch.
pub const BATCH_REQUESTS_MAX: usize = 512;

type Reply = Result<Result<AppendOutcome, Refusal>, StoreError>;

struct Pending {
    request: AppendRequest,
    reply: oneshot::Sender<Reply>,
}

/// Told of every batch when it ends: how many requests it carried and how long it took from
/// its `BEGIN` to its commit (or failure). The server feeds histograms at `/metrics` with it.
pub type BatchObserver = Arc<dyn Fn(usize, std::time::Duration) + Send + Sync>;

/// The queue of appends waiting for the next commit, and whether a drain task is running.
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Pending>>,
    draining: AtomicBool,
    batches: AtomicU64,
    requests: AtomicU64,
    held_micros: AtomicU64,
    observer: std::sync::RwLock<Option<BatchObserver>>,
    /// Where drain tasks run.
    committer: Committer,
}

/// A thread running a single-threaded runtime for the drain tasks, until its group commit
/// is dropped (a drain task holds the store, so none is running then).
struct Committer {
    handle: Handle,
    /// Dropped with the group commit: the thread's runtime then returns and ends.
    _stop: oneshot::Sender<()>,
}

impl Committer {
    fn start() -> std::io::Result<Committer> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name("techmarket-commit".into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })?;
        Ok(Committer { handle, _stop: stop })
    }
}

/// How many transactions the appends of this process took (for metrics, tests and the
/// benchmark): with concurrent callers, fewer batches than requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitStats {
    pub batches: u64,
    pub requests: u64,
    /// The batches' time from their `BEGIN` to their commit's return (or failure), summed:
    /// how long they held the append lock.
    pub held: std::time::Duration,
}

impl GroupCommitStats {
    /// What happened between `earlier` and these figures.
    pub fn since(self, earlier: GroupCommitStats) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.batches - earlier.batches,
            requests: self.requests - earlier.requests,
            held: self.held - earlier.held,
        }
    }
}

impl GroupCommit {
    /// A group commit with its committer thread started.
    pub(crate) fn start() -> std::io::Result<GroupCommit> {
        Ok(GroupCommit {
            queue: Mutex::default(),
            draining: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            held_micros: AtomicU64::new(0),
            observer: std::sync::RwLock::new(None),
            committer: Committer::start()?,
        })
    }

    /// A pool for the append batches' PostgreSQL connections, on the commit thread: a
    /// connection's answers wake the thread whose runtime it was opened on, and one opened
    /// elsewhere would wake the batch through that other runtime's scheduler. (Its upkeep
    /// task runs on the commit thread too.) One batch runs at a time; the second connection
    /// is for a batch starting while the last one's is being returned.
    pub(crate) fn batch_pool(
        &self,
        connect: sqlx::postgres::PgConnectOptions,
        acquire_timeout: std::time::Duration,
    ) -> sqlx::PgPool {
        let _on_commit_thread = self.committer.handle.enter();
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(connect)
    }

    fn push(&self, pending: Pending) {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(pending);
    }

    fn take(&self) -> Vec<Pending> {
        let mut queue = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let n = queue.len().min(BATCH_REQUESTS_MAX);
        queue.drain(..n).collect()
    }

    fn take_all(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn is_empty(&self) -> bool {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_empty()
    }
}

impl Store {
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.group.batches.load(Ordering::Relaxed),
            requests: self.group.requests.load(Ordering::Relaxed),
            held: std::time::Duration::from_micros(self.group.held_micros.load(Ordering::Relaxed)),
        }
    }

    /// Sets what is told of every append batch of this store (replacing any earlier one).
    pub fn observe_append_batches(&self, observer: BatchObserver) {
        *self.group.observer.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(observer);
    }

    /// Appends one request, committed together with whatever other requests are waiting.
    pub async fn append(&self, request: AppendRequest) -> Result<Result<AppendOutcome, Refusal>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.group.push(Pending { request, reply });
        if !self.group.draining.swap(true, Ordering::AcqRel) {
            let task = self.clone().drain(Draining { group: self.group.clone(), finished: false });
            drop(self.group.committer.handle.spawn(task));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Inconsistent(
                "the append batch holding this request stopped before answering (see the server log)".into(),
            ))
        })
    }

    /// Commits queued batches until the queue is empty.
    async fn drain(self, mut draining: Draining) {
        loop {
            let batch = self.group.take();
            if batch.is_empty() {
                self.group.draining.store(false, Ordering::Release);
                // A request queued after `take` and before the store above saw `draining`
                // still true and left it to us: take it, unless another task already has.
                if self.group.is_empty() || self.group.draining.swap(true, Ordering::AcqRel) {
                    draining.finished = true;
                    return;
                }
                continue;
            }
            self.commit_batch(batch).await;
        }
    }

    async fn commit_batch(&self, batch: Vec<Pending>) {
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let size = requests.len();
        self.group.batches.fetch_add(1, Ordering::Relaxed);
        self.group.requests.fetch_add(size as u64, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let outcome = self.append_batch_inner(&requests).await;
        let took = started.elapsed();
        self.group.held_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        tracing::debug!(size, micros = took.as_micros() as u64, ok = outcome.is_ok(), "append batch");
        let observer = self.group.observer.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some(observe) = observer {
            observe(size, took);
        }
        match outcome {
            Ok(results) => {
                assert_eq!(results.len(), size, "one result per request");
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(BatchFailure::BeforeCommit(error)) if size > 1 => {
                tracing::warn!(%error, size, "append batch failed before its commit; appending its requests one by one");
                for (request, reply) in requests.into_iter().zip(replies) {
                    let result = match self.append_batch_inner(std::slice::from_ref(&request)).await {
                        Ok(mut results) => Ok(results.pop().expect("one result per request")),
                        Err(BatchFailure::BeforeCommit(e) | BatchFailure::AtCommit(e)) => Err(e),
                    };
                    let _ = reply.send(result);
                }
            }
            Err(BatchFailure::BeforeCommit(error) | BatchFailure::AtCommit(error)) => {
                let message = error.to_string();
                let transient = error.is_transient();
                let mut first = Some(error);
                for reply in replies {
                    let error = first.take().unwrap_or_else(|| StoreError::batch(&message, transient));
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}

/// Owned by a drain task. If the task ends any way other than by emptying the queue (a panic
/// on a broken invariant, or its runtime shutting down), the requests still queued are
/// answered with an error instead of waiting for a task that is gone, and a later append
/// starts a new drain task.
struct Draining {
    group: Arc<GroupCommit>,
    finished: bool,
}

impl Drop for Draining {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        loop {
            // Dropping a request's reply sender answers its caller with an error.
            drop(self.group.take_all());
            self.group.draining.store(false, Ordering::Release);
            // Same hand-over as in `drain`: a request queued meanwhile is ours to answer.
            if self.group.is_empty() || self.group.draining.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}
