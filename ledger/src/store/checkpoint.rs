//! SQLite only: WAL checkpoints run by a task of their own, on a connection of their own,
//! instead of inside the commit of whichever append batch crosses SQLite's mark.
//!
//! In WAL mode SQLite copies the WAL back into the database file once the WAL has grown past
//! a mark (`wal_autocheckpoint`, 1,000 pages by default), and it does so in the connection
//! that just committed. With group commit that is an append batch: every caller in it waits
//! for the copy (commits of 7-11 ms instead of 1-2 ms, at 64 callers). Here every write
//! transaction's commit (`Tx::commit`: appends, imports, rebuilds) wakes this task, and the
//! task runs a PASSIVE checkpoint: it copies what no reader still needs without taking the
//! writer's lock, so the next batch goes on meanwhile, on the other core. The pooled
//! connections keep an automatic mark as a safety net ([`SAFETY_NET_PAGES`]), reached only
//! when this task falls behind or does not run (a store opened outside a runtime).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::mpsc;

/// The automatic checkpoint mark of the pooled connections, in WAL pages: ten times
/// SQLite's default, so that it is not reached while the checkpoint task keeps up.
pub(crate) const SAFETY_NET_PAGES: u32 = 10_000;

/// The handle the store keeps: dropping the last one ends the task and closes its connection.
pub(crate) struct Checkpointer {
    wake: mpsc::Sender<()>,
    done: Arc<AtomicU64>,
}

impl Checkpointer {
    /// Starts the task on the current runtime; `None` outside one (then SQLite's own mark
    /// does the checkpoints, in commits).
    pub(crate) fn spawn(options: SqliteConnectOptions) -> Option<Checkpointer> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        // One pending wake-up is enough: a checkpoint copies everything committed before it.
        let (wake, asleep) = mpsc::channel(1);
        let done = Arc::new(AtomicU64::new(0));
        runtime.spawn(run(options, asleep, done.clone()));
        Some(Checkpointer { wake, done })
    }

    /// Called after every write transaction's commit.
    pub(crate) fn committed(&self) {
        let _ = self.wake.try_send(());
    }

    /// Checkpoints completed so far.
    pub(crate) fn completed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

async fn run(options: SqliteConnectOptions, mut wake: mpsc::Receiver<()>, done: Arc<AtomicU64>) {
    let mut connection: Option<SqliteConnection> = None;
    while wake.recv().await.is_some() {
        if connection.is_none() {
            match options.connect().await {
                Ok(c) => connection = Some(c),
                Err(error) => {
                    tracing::warn!(%error, "cannot open the WAL checkpoint connection; SQLite's own mark still bounds the WAL");
                    continue;
                }
            }
        }
        let c = connection.as_mut().expect("opened above");
        // (busy, frames in the WAL, frames copied): a busy or partial checkpoint is simply
        // continued after the next commit.
        let result: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *c).await;
        match result {
            Ok(_) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint failed; SQLite's own mark still bounds the WAL");
                connection = None;
            }
        }
    }
}
