//! What must hold after a run, read straight from the database (not through the server):
//! the hash chain, every acknowledged payment exactly once, nothing counted twice, read
//! models that agree with the log and with a rebuild from it, `techmarket verify-ledger`, and
//! on SQLite `PRAGMA integrity_check`.

use std::collections::{BTreeMap, HashMap, HashSet};

use ledger::Event;
use ledger::store::{Store, StoreOptions};
use uuid::Uuid;

use crate::harness::BIN;

/// A payment a client was told is recorded.
#[derive(Debug, Clone)]
pub struct Ack {
    pub key: String,
    pub contract: Uuid,
    pub fen: i64,
    /// The payment id the server answered with.
    pub payment: Uuid,
}

/// A payment as it stands in the log.
#[derive(Debug, Clone)]
struct Logged {
    payment: Uuid,
    contract: Uuid,
    fen: i64,
}

/// The outcome of the audit: the figures and every problem found.
#[derive(Debug, Default)]
pub struct Audit {
    pub events: i64,
    pub found: usize,
    pub lost: usize,
    pub duplicates: usize,
    /// Payments in the log that no client was told about (after the final retries every key
    /// is acknowledged, so there must be none).
    pub unacknowledged_in_log: usize,
    pub problems: Vec<String>,
    /// Net received per contract (fen), from the read model.
    pub net_fen: HashMap<Uuid, i64>,
}

pub async fn open_store(url: &str) -> Store {
    Store::connect(url, &StoreOptions { max_connections: 4, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("the checker cannot open {url}: {e}"))
}

/// The chain verifies; returns the number of events checked.
pub async fn chain_intact(store: &Store) -> Result<i64, String> {
    let report = store.verify_chain(|_| {}).await.map_err(|e| format!("verify_chain failed: {e}"))?;
    match report.first_break {
        None => Ok(report.events_checked),
        Some(b) => Err(format!("the hash chain breaks at position {}: {}", b.position, b.problem)),
    }
}

/// `PRAGMA integrity_check` on a SQLite database file, on a connection of its own.
pub async fn sqlite_integrity(url: &str) -> Result<(), String> {
    use sqlx::Connection as _;
    let mut c = sqlx::SqliteConnection::connect(url).await.map_err(|e| format!("cannot open {url}: {e}"))?;
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut c)
        .await
        .map_err(|e| format!("PRAGMA integrity_check failed: {e}"))?;
    let _ = c.close().await;
    if rows == ["ok"] { Ok(()) } else { Err(format!("PRAGMA integrity_check: {}", rows.join("; "))) }
}

/// `techmarket verify-ledger` must exit 0.
pub async fn cli_verify(url: &str) -> Result<String, String> {
    let out = tokio::process::Command::new(BIN)
        .arg("verify-ledger")
        .arg("--database-url")
        .arg(url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run techmarket verify-ledger: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "techmarket verify-ledger exited with {}: {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn payments_in_log(store: &Store) -> Result<(i64, HashMap<String, Vec<Logged>>), String> {
    let mut by_reference: HashMap<String, Vec<Logged>> = HashMap::new();
    let mut after = 0;
    let mut events = 0;
    loop {
        let page = store.read_all_after(after, 5_000).await.map_err(|e| format!("reading the log failed: {e}"))?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in &page {
            events += 1;
            if let Event::PaymentSettled(p) = &e.event {
                by_reference.entry(p.bank_reference.clone()).or_default().push(Logged {
                    payment: p.payment_id.0,
                    contract: p.contract_id.0,
                    fen: p.amount.fen(),
                });
            }
        }
    }
    Ok((events, by_reference))
}

/// Audits a database after a scenario, with the server stopped. `acks` are the payments the
/// clients were told are recorded, `refused` the bank references that were refused (they
/// must not be in the log), `contracts` the contracts paid into.
pub async fn audit(url: &str, sqlite: bool, acks: &[Ack], refused: &[String], contracts: &[Uuid]) -> Audit {
    let mut a = Audit::default();
    let store = open_store(url).await;

    match chain_intact(&store).await {
        Ok(n) => a.events = n,
        Err(e) => a.problems.push(e),
    }

    let (events, logged) = match payments_in_log(&store).await {
        Ok(x) => x,
        Err(e) => {
            a.problems.push(e);
            return a;
        }
    };
    if events != a.events && a.problems.is_empty() {
        a.problems.push(format!("the chain checked {} events but the log reads {events}", a.events));
    }

    // Every acknowledged payment exactly once, as acknowledged.
    let mut acked_refs = HashSet::new();
    for ack in acks {
        if !acked_refs.insert(ack.key.as_str()) {
            a.problems.push(format!("key {} was acknowledged twice to the clients (harness bug)", ack.key));
        }
        match logged.get(&ack.key).map(Vec::as_slice) {
            None | Some([]) => {
                a.lost += 1;
                if a.lost <= 5 {
                    a.problems.push(format!("acknowledged payment {} ({}) is not in the log", ack.key, ack.payment));
                }
            }
            Some(entries) => {
                a.found += 1;
                let first = &entries[0];
                if first.payment != ack.payment || first.contract != ack.contract || first.fen != ack.fen {
                    a.problems.push(format!(
                        "payment {} was acknowledged as {} ({} fen on {}) but the log holds {} ({} fen on {})",
                        ack.key, ack.payment, ack.fen, ack.contract, first.payment, first.fen, first.contract
                    ));
                }
            }
        }
    }
    // Nothing twice, nothing unexplained.
    let mut refs: Vec<&String> = logged.keys().collect();
    refs.sort();
    for reference in refs {
        let n = logged[reference].len();
        if n > 1 {
            a.duplicates += n - 1;
            a.problems.push(format!("bank reference {reference} is in the log {n} times"));
        }
        if !acked_refs.contains(reference.as_str()) {
            a.unacknowledged_in_log += 1;
            a.problems.push(format!("payment {reference} is in the log but no client was told it was recorded"));
        }
    }
    for reference in refused {
        if logged.contains_key(reference) {
            a.problems.push(format!("payment {reference} was refused but is in the log"));
        }
    }

    // Read models: each contract's settled total is what the log and the clients say.
    let mut log_sum: BTreeMap<Uuid, i64> = BTreeMap::new();
    for entries in logged.values() {
        for e in entries {
            *log_sum.entry(e.contract).or_default() += e.fen;
        }
    }
    let mut acked_sum: BTreeMap<Uuid, i64> = BTreeMap::new();
    for ack in acks {
        *acked_sum.entry(ack.contract).or_default() += ack.fen;
    }
    for contract in contracts {
        match store.contract(&contract.to_string()).await {
            Ok(Some(view)) => {
                let live = view.settled_fen - view.reversed_fen;
                a.net_fen.insert(*contract, live);
                let from_log = log_sum.get(contract).copied().unwrap_or(0);
                let from_acks = acked_sum.get(contract).copied().unwrap_or(0);
                if view.settled_fen != from_log || from_log != from_acks {
                    a.problems.push(format!(
                        "contract {contract}: read model settled {} fen, the log {from_log}, the acknowledgements {from_acks}",
                        view.settled_fen
                    ));
                }
                if live > view.contract_amount_fen {
                    a.problems.push(format!(
                        "contract {contract}: net received {live} fen exceeds the contract amount {}",
                        view.contract_amount_fen
                    ));
                }
            }
            Ok(None) => a.problems.push(format!("contract {contract} is missing from the read model")),
            Err(e) => a.problems.push(format!("reading contract {contract} failed: {e}")),
        }
    }

    // Rebuilt projections equal the live ones.
    match store.dump_read_models().await {
        Ok(live) => match store.rebuild_projections(|_| {}).await {
            Ok(_) => match store.dump_read_models().await {
                Ok(rebuilt) if rebuilt == live => {}
                Ok(rebuilt) => {
                    let only_live: Vec<_> = live.iter().filter(|l| !rebuilt.contains(l)).take(3).collect();
                    let only_rebuilt: Vec<_> = rebuilt.iter().filter(|l| !live.contains(l)).take(3).collect();
                    a.problems.push(format!(
                        "rebuilt read models differ from the live ones ({} vs {} rows); live only: {only_live:?}; rebuilt only: {only_rebuilt:?}",
                        live.len(),
                        rebuilt.len()
                    ));
                }
                Err(e) => a.problems.push(format!("dumping the rebuilt read models failed: {e}")),
            },
            Err(e) => a.problems.push(format!("rebuild_projections failed: {e}")),
        },
        Err(e) => a.problems.push(format!("dumping the live read models failed: {e}")),
    }
    store.close().await;

    if let Err(e) = cli_verify(url).await {
        a.problems.push(e);
    }
    if sqlite && let Err(e) = sqlite_integrity(url).await {
        a.problems.push(e);
    }
    a
}
