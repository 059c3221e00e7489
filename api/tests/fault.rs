//! Fault harness: nothing acknowledged is ever lost.
//!
//! Drives the real `techmarket` server (a child process on 127.0.0.1) with many concurrent
//! clients recording payments under idempotency keys, and
//!
//! 1. SIGKILLs it at random moments and restarts it; clients retry what was not acknowledged
//!    with the same keys; then every acknowledged payment is in the log exactly once, none
//!    twice, the hash chain verifies after every crash and at the end, and rebuilt read models
//!    equal the live ones (both backends);
//! 2. stops PostgreSQL under load (crash and fast shutdown) and starts it again: `/ready`
//!    answers 503 while it is gone, the same server process recovers, nothing is lost;
//! 3. races payments that together exceed a contract's amount, from many clients over two
//!    server processes: exactly the allowed ones succeed, the others are RULE_VIOLATED
//!    (`net_received_within_contract_amount`);
//! 4. on SQLite, the kill test also runs `PRAGMA integrity_check` after every crash and
//!    `techmarket verify-ledger` at the end;
//!
//! and checks that SIGTERM drains in-flight requests and exits 0.
//!
//! Every scenario prints one `fault-summary backend=... scenario=...` line (also appended to
//! `target/tmp/fault-summary.log`). PostgreSQL scenarios run on a private throwaway
//! instance (initdb under /tmp, never the shared server); without PostgreSQL binaries the
//! test fails saying what is missing. Knobs: FAULT_KILLS (default 20 per backend),
//! FAULT_CLIENTS (16), FAULT_PG_RESTARTS (2), FAULT_SEED, FAULT_PG_BIN.
//!
//! Run alone: `cargo test -p api --test fault -- --nocapture`.

#[path = "fault/checks.rs"]
mod checks;
#[path = "fault/harness.rs"]
mod harness;
#[path = "fault/scenarios.rs"]
mod scenarios;

use std::time::Duration;

/// One backend at a time: the machine has few cores, and timing-sensitive scenarios (kills at
/// random moments, a database restart) should not compete with each other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A hang fails instead of blocking CI.
const SUITE_LIMIT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    let _turn = SERIAL.lock().await;
    let knobs = scenarios::Knobs::from_env();
    tokio::time::timeout(SUITE_LIMIT, scenarios::sqlite_suite(knobs)).await.unwrap_or_else(|_| {
        panic!("the SQLite fault suite did not finish within {SUITE_LIMIT:?} (seed {})", knobs.seed)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    let _turn = SERIAL.lock().await;
    let knobs = scenarios::Knobs::from_env();
    tokio::time::timeout(SUITE_LIMIT, scenarios::postgres_suite(knobs)).await.unwrap_or_else(|_| {
        panic!("the PostgreSQL fault suite did not finish within {SUITE_LIMIT:?} (seed {})", knobs.seed)
    });
}

/// The checks can fail: a planted loss, an unacknowledged payment, a duplicate and a damaged
/// SQLite file are each caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_catches_planted_faults() {
    let _turn = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(60), scenarios::audit_self_check())
        .await
        .expect("the self-check finished within 60 s");
}

/// `/ready` answers 503 promptly (not after the pool's acquire timeout) while the database is
/// down: a readiness probe with a short timeout must see a 503, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_answers_promptly_when_database_is_down() {
    let _turn = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(60), scenarios::ready_answers_promptly_when_database_is_down())
        .await
        .expect("the reproduction finished within 60 s");
}
