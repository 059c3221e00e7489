//! The scenarios: SIGKILL and restart under load, PostgreSQL restarting under load,
//! conflicting payments on one contract from many clients (and two server processes), and
//! SIGTERM draining in-flight requests. Each prints one `fault-summary` line, then asserts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ledger::Role;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use uuid::Uuid;

use crate::checks::{self, Ack, Audit};
use crate::harness::{
    Answer, Figures, PrivatePostgres, RECORD_PAYMENT, Server, env_number, gql, http_client, payment_input,
    setup_market, sign_contract, token,
};

/// Codes that mean "not done, try again with the same key".
const RETRYABLE: [&str; 3] = ["UNAVAILABLE", "CONFLICT", "INTERNAL"];
/// The rule a payment above the contract amount breaks.
const OVER_CONTRACT_RULE: &str = "net_received_within_contract_amount";
/// How long one payment is retried before the client gives up (a failure).
const PATIENCE: Duration = Duration::from_secs(60);

/// The knobs of a run, from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub kills: u32,
    pub clients: usize,
    pub pg_restarts: u32,
    pub seed: u64,
}

impl Knobs {
    pub fn from_env() -> Knobs {
        Knobs {
            kills: env_number("FAULT_KILLS", 20) as u32,
            clients: env_number("FAULT_CLIENTS", 16) as usize,
            pg_restarts: env_number("FAULT_PG_RESTARTS", 2) as u32,
            seed: env_number("FAULT_SEED", rand::random::<u32>() as u64),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// What the clients of a scenario saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// HTTP requests sent (first tries and retries).
    pub attempts: u64,
    /// Requests without a complete answer (refused connection, reset, timeout).
    pub transport_errors: u64,
    /// Error codes answered, retried or final.
    pub codes: BTreeMap<String, u64>,
    pub acks: Vec<Ack>,
    /// Payments refused with a final answer: (bank reference, contract, fen, rule, message).
    pub refused: Vec<(String, Uuid, i64, Option<String>, String)>,
    /// Keys acknowledged only after at least one failed attempt.
    pub in_doubt: u64,
    /// Of those, how many were answered with a receipt recorded *before* the failure was
    /// seen: committed by an attempt whose answer was lost, then replayed for the retry.
    pub replayed: u64,
    pub problems: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.transport_errors += other.transport_errors;
        for (k, v) in other.codes {
            *self.codes.entry(k).or_default() += v;
        }
        self.acks.extend(other.acks);
        self.refused.extend(other.refused);
        self.in_doubt += other.in_doubt;
        self.replayed += other.replayed;
        self.problems.extend(other.problems);
    }

    fn code(&self, code: &str) -> u64 {
        self.codes.get(code).copied().unwrap_or(0)
    }
}

enum Outcome {
    Acked(Ack),
    Refused { code: String, rule: Option<String>, message: String },
    GaveUp(String),
}

/// One payment, retried with the same key (hence the same input) until it gets a definite
/// answer: recorded (acknowledged) or refused by a rule.
async fn pay(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
    contract: Uuid,
    fen: i64,
    tally: &mut Tally,
) -> Outcome {
    let started = Instant::now();
    let variables = json!({ "key": key, "input": payment_input(contract, fen, key) });
    let mut first_failure: Option<DateTime<Utc>> = None;
    loop {
        tally.attempts += 1;
        let last = match gql(http, base, token, RECORD_PAYMENT, variables.clone()).await {
            Answer::Data(data) => {
                let r = &data["recordPayment"];
                let Some(payment) = r["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
                    return Outcome::GaveUp(format!("an answer without a payment id: {data}"));
                };
                if let Some(failed_at) = first_failure {
                    tally.in_doubt += 1;
                    let recorded_at = r["recordedAt"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok());
                    if recorded_at.is_some_and(|t| t.to_utc() < failed_at) {
                        tally.replayed += 1;
                    }
                }
                return Outcome::Acked(Ack { key: key.to_owned(), contract, fen, payment });
            }
            Answer::Refused { code, rule, message } => {
                *tally.codes.entry(code.clone()).or_default() += 1;
                if !RETRYABLE.contains(&code.as_str()) {
                    return Outcome::Refused { code, rule, message };
                }
                first_failure.get_or_insert_with(Utc::now);
                format!("{code}: {message}")
            }
            Answer::Transport { message, .. } => {
                tally.transport_errors += 1;
                first_failure.get_or_insert_with(Utc::now);
                message
            }
        };
        if started.elapsed() > PATIENCE {
            return Outcome::GaveUp(last);
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(10..40))).await;
    }
}

/// A client that records payments one after the other until told to stop; a payment it has
/// started is always seen through (retried until acknowledged), even after the stop.
async fn steady_client(
    c: usize,
    base: String,
    contracts: Arc<Vec<Uuid>>,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> Tally {
    let http = http_client(timeout);
    let token = token(&format!("fault-registrar-{c:02}"), Role::Registrar);
    let mut tally = Tally::default();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("c{c:02}-{n:05}");
        let contract = contracts[(c + n) % contracts.len()];
        // 1.00 to 9.99 yuan, a function of the key so every retry sends the same input.
        let fen = 100 + ((c * 7_919 + n * 104_729) % 900) as i64;
        match pay(&http, &base, &token, &key, contract, fen, &mut tally).await {
            Outcome::Acked(ack) => tally.acks.push(ack),
            Outcome::Refused { code, rule, message } => {
                tally.problems.push(format!("payment {key} was refused: {code} {rule:?}: {message}"))
            }
            Outcome::GaveUp(last) => tally
                .problems
                .push(format!("payment {key} was not acknowledged after {PATIENCE:?} of retries; last answer: {last}")),
        }
        n += 1;
    }
    tally
}

async fn join_clients(handles: Vec<tokio::task::JoinHandle<Tally>>, limit: Duration) -> Tally {
    let mut all = Tally::default();
    let joined = tokio::time::timeout(limit, futures_util::future::join_all(handles))
        .await
        .unwrap_or_else(|_| panic!("the clients did not finish their last payments within {limit:?}"));
    for t in joined {
        all.merge(t.expect("a client task panicked"));
    }
    all
}

/// Prints the line, then fails with every problem found.
fn report(figures: &Figures, problems: &[String]) {
    figures.print();
    assert!(
        problems.is_empty(),
        "{} {} found {} problem(s):\n  {}",
        figures.backend,
        figures.scenario,
        problems.len(),
        problems.iter().take(25).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

fn codes_figure(t: &Tally) -> String {
    if t.codes.is_empty() {
        return "none".into();
    }
    t.codes.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",")
}

fn audit_figures(
    backend: &'static str,
    scenario: &'static str,
    clients: usize,
    kills: u32,
    tally: &Tally,
    audit: &Audit,
) -> Figures {
    Figures {
        backend,
        scenario,
        clients,
        requests: tally.attempts,
        kills,
        acknowledged: tally.acks.len(),
        found: audit.found,
        lost: audit.lost,
        duplicates: audit.duplicates,
        extra: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// 1 and 4: SIGKILL at random moments, restart, retry

/// Many clients record payments while the server is SIGKILLed at random moments and
/// restarted on the same port; clients retry unacknowledged payments with the same key.
/// After every kill (server down) the chain must verify and, on SQLite, the file must pass
/// `PRAGMA integrity_check`; at the end the full audit runs.
pub async fn kill(backend: &'static str, url: &str, log: std::path::PathBuf, knobs: Knobs) -> Figures {
    let started = Instant::now();
    let sqlite = backend == "sqlite";
    let mut rng = StdRng::seed_from_u64(knobs.seed);
    let mut server = Server::new(url, log);
    server.start().await;
    let market = setup_market(&server.base()).await;
    let mut contracts = Vec::new();
    for i in 0..4 {
        contracts.push(sign_contract(&server.base(), &market, &format!("FAULT-KILL-{i}"), 100_000_000).await);
    }
    let contracts = Arc::new(contracts);

    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..knobs.clients)
        .map(|c| {
            tokio::spawn(steady_client(c, server.base(), contracts.clone(), stop.clone(), Duration::from_secs(15)))
        })
        .collect();

    let mut problems = Vec::new();
    let mut crash_checks = 0u32;
    for k in 1..=knobs.kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..=400))).await;
        server.kill().await;
        // The state a crash left on disk, before anyone touches it again.
        let store = checks::open_store(url).await;
        match checks::chain_intact(&store).await {
            Ok(_) => crash_checks += 1,
            Err(e) => problems.push(format!("after kill {k}: {e}")),
        }
        store.close().await;
        if sqlite && let Err(e) = checks::sqlite_integrity(url).await {
            problems.push(format!("after kill {k}: {e}"));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=50))).await;
        server.start().await;
    }
    // Traffic on the last start, then the clients see their pending payments through.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = join_clients(handles, Duration::from_secs(90)).await;
    server.stop().await;

    let audit = checks::audit(url, sqlite, &tally.acks, &[], &contracts).await;
    problems.extend(tally.problems.iter().cloned());
    problems.extend(audit.problems.iter().cloned());
    if tally.acks.len() < knobs.clients {
        problems.push(format!("only {} payments were acknowledged: the load never got going", tally.acks.len()));
    }
    let mut figures = audit_figures(backend, "kill", knobs.clients, knobs.kills, &tally, &audit);
    figures.extra = vec![
        ("in_doubt", tally.in_doubt.to_string()),
        ("replayed", tally.replayed.to_string()),
        ("transport_errors", tally.transport_errors.to_string()),
        ("error_codes", codes_figure(&tally)),
        ("crash_checks", crash_checks.to_string()),
        ("events", audit.events.to_string()),
        ("seed", knobs.seed.to_string()),
        ("seconds", format!("{:.1}", started.elapsed().as_secs_f64())),
    ];
    report(&figures, &problems);
    figures
}

// ---------------------------------------------------------------------------------------------
// 2: PostgreSQL restarts under load

async fn poll_ready(base: &str, want: u16, limit: Duration) -> Result<Duration, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let start = Instant::now();
    loop {
        let last = match client.get(format!("{base}/ready")).send().await {
            Ok(r) if r.status().as_u16() == want => return Ok(start.elapsed()),
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > limit {
            return Err(format!("GET /ready did not answer {want} within {limit:?} (last: {last})"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The database goes away under load (alternately crashed with `immediate` and shut down
/// with `fast`) and comes back. The server must say it is not ready while the database is
/// gone, recover by itself (same process), and lose nothing acknowledged.
pub async fn pg_restart(pg: &mut PrivatePostgres, url: &str, log: std::path::PathBuf, knobs: Knobs) -> Figures {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(knobs.seed ^ 0x5eed);
    let mut server = Server::new(url, log);
    server.start().await;
    let pid = server.pid();
    let market = setup_market(&server.base()).await;
    let mut contracts = Vec::new();
    for i in 0..4 {
        contracts.push(sign_contract(&server.base(), &market, &format!("FAULT-PG-{i}"), 100_000_000).await);
    }
    let contracts = Arc::new(contracts);
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..knobs.clients)
        .map(|c| {
            tokio::spawn(steady_client(c, server.base(), contracts.clone(), stop.clone(), Duration::from_secs(30)))
        })
        .collect();

    let mut problems = Vec::new();
    let mut not_ready_seen = 0u32;
    let mut ready_again = 0u32;
    let mut not_ready_ms = Vec::new();
    let mut recovered_ms = Vec::new();
    for r in 0..knobs.pg_restarts {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..=400))).await;
        let mode = if r % 2 == 0 { "immediate" } else { "fast" };
        pg.stop(mode).await;
        match poll_ready(&server.base(), 503, Duration::from_secs(30)).await {
            Ok(t) => {
                not_ready_seen += 1;
                not_ready_ms.push(t.as_millis().to_string());
            }
            Err(e) => problems.push(format!("database down ({mode}): {e}")),
        }
        pg.start().await;
        match poll_ready(&server.base(), 200, Duration::from_secs(30)).await {
            Ok(t) => {
                ready_again += 1;
                recovered_ms.push(t.as_millis().to_string());
            }
            Err(e) => problems.push(format!("database back after {mode} stop: {e}")),
        }
        if !server.is_running() || server.pid() != pid {
            problems.push(format!("the server process did not survive the database restart ({mode})"));
        }
    }
    // Traffic on the recovered database, then the clients see their pending payments through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let tally = join_clients(handles, Duration::from_secs(120)).await;
    if server.starts != 1 {
        problems.push(format!("the server was started {} times; it must recover without a restart", server.starts));
    }
    server.stop().await;

    let audit = checks::audit(url, false, &tally.acks, &[], &contracts).await;
    problems.extend(tally.problems.iter().cloned());
    problems.extend(audit.problems.iter().cloned());
    let mut figures = audit_figures("postgres", "pg-restart", knobs.clients, 0, &tally, &audit);
    figures.extra = vec![
        ("db_restarts", knobs.pg_restarts.to_string()),
        ("server_restarts", (server.starts - 1).to_string()),
        ("not_ready_503", not_ready_seen.to_string()),
        ("ready_again", ready_again.to_string()),
        ("ms_to_503", not_ready_ms.join(",")),
        ("ms_to_ready", recovered_ms.join(",")),
        ("in_doubt", tally.in_doubt.to_string()),
        ("replayed", tally.replayed.to_string()),
        ("transport_errors", tally.transport_errors.to_string()),
        ("error_codes", codes_figure(&tally)),
        ("events", audit.events.to_string()),
        ("seconds", format!("{:.1}", started.elapsed().as_secs_f64())),
    ];
    report(&figures, &problems);
    figures
}

// ---------------------------------------------------------------------------------------------
// 3: conflicting payments on the same contract

/// Amounts (fen) for the mixed contract.
const MIXED_FEN: [i64; 6] = [300, 700, 1_100, 2_500, 4_000, 9_999];

/// Many clients, split over two server processes on the same database (so the in-process
/// stream locks do not serialise them: the store's version check must), pay into two
/// contracts of 1000.00 each far more than fits. Contract U takes 10.00 payments only:
/// exactly 100 may succeed. Contract M takes mixed amounts: what succeeded must fit, and
/// every refused payment must not fit even on the final total (net received only grows, so
/// it did not fit when it was decided either). Refusals must be RULE_VIOLATED with the rule.
pub async fn contention(backend: &'static str, url: &str, scratch: &std::path::Path, knobs: Knobs) -> Figures {
    const CONTRACT_FEN: i64 = 100_000;
    const UNIFORM_FEN: i64 = 1_000;
    const PER_CONTRACT: usize = 8;
    let started = Instant::now();
    let sqlite = backend == "sqlite";
    let mut servers = [
        Server::new(url, scratch.join("server-contention-a.log")),
        Server::new(url, scratch.join("server-contention-b.log")),
    ];
    for s in &mut servers {
        // The store's optimistic-concurrency retries are logged at debug level: counted below
        // to show the two processes really raced.
        s.rust_log = "warn,ledger::service=debug".to_owned();
        s.start().await;
    }
    let market = setup_market(&servers[0].base()).await;
    let uniform = sign_contract(&servers[0].base(), &market, "FAULT-RACE-U", CONTRACT_FEN).await;
    let mixed = sign_contract(&servers[1].base(), &market, "FAULT-RACE-M", CONTRACT_FEN).await;

    let barrier = Arc::new(tokio::sync::Barrier::new(knobs.clients));
    let handles: Vec<_> = (0..knobs.clients)
        .map(|c| {
            let base = servers[c % 2].base();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let http = http_client(Duration::from_secs(30));
                let token = token(&format!("fault-racer-{c:02}"), Role::Registrar);
                let mut tally = Tally::default();
                barrier.wait().await;
                for n in 0..2 * PER_CONTRACT {
                    let (contract, fen) = if n % 2 == 0 {
                        (uniform, UNIFORM_FEN)
                    } else {
                        (mixed, MIXED_FEN[(c * 5 + n) % MIXED_FEN.len()])
                    };
                    let key = format!("r{c:02}-{n:02}");
                    match pay(&http, &base, &token, &key, contract, fen, &mut tally).await {
                        Outcome::Acked(ack) => tally.acks.push(ack),
                        Outcome::Refused { code, rule, message } if code == "RULE_VIOLATED" => {
                            tally.refused.push((key, contract, fen, rule, message))
                        }
                        Outcome::Refused { code, rule, message } => {
                            tally.problems.push(format!("payment {key} was refused with {code} {rule:?}: {message}"))
                        }
                        Outcome::GaveUp(last) => tally
                            .problems
                            .push(format!("payment {key} got no definite answer within {PATIENCE:?}; last: {last}")),
                    }
                }
                tally
            })
        })
        .collect();
    let tally = join_clients(handles, Duration::from_secs(90)).await;
    for s in &mut servers {
        s.stop().await;
    }

    let refused_keys: Vec<String> = tally.refused.iter().map(|r| r.0.clone()).collect();
    let audit = checks::audit(url, sqlite, &tally.acks, &refused_keys, &[uniform, mixed]).await;
    let mut problems = tally.problems.clone();
    problems.extend(audit.problems.iter().cloned());

    for (key, _, _, rule, message) in &tally.refused {
        if rule.as_deref() != Some(OVER_CONTRACT_RULE) || !message.contains("contract amount") {
            problems.push(format!("payment {key} was refused with rule {rule:?} and message {message:?}"));
        }
    }
    let requested = knobs.clients * PER_CONTRACT;
    let allowed_uniform = (CONTRACT_FEN / UNIFORM_FEN) as usize;
    let uniform_ok = tally.acks.iter().filter(|a| a.contract == uniform).count();
    let uniform_refused = tally.refused.iter().filter(|r| r.1 == uniform).count();
    if uniform_ok != allowed_uniform.min(requested) || uniform_ok + uniform_refused != requested {
        problems.push(format!(
            "contract U: {uniform_ok} payments of {UNIFORM_FEN} fen succeeded and {uniform_refused} were refused; \
             exactly {} of {requested} fit",
            allowed_uniform.min(requested)
        ));
    }
    let mixed_net = audit.net_fen.get(&mixed).copied().unwrap_or(0);
    let mixed_ok_fen: i64 = tally.acks.iter().filter(|a| a.contract == mixed).map(|a| a.fen).sum();
    if mixed_ok_fen > CONTRACT_FEN {
        problems.push(format!("contract M: {mixed_ok_fen} fen succeeded, above the contract amount {CONTRACT_FEN}"));
    }
    for (key, contract, fen, _, _) in &tally.refused {
        if *contract == mixed && mixed_net + fen <= CONTRACT_FEN {
            problems.push(format!(
                "contract M: payment {key} of {fen} fen was refused although it fits even on the final net {mixed_net}"
            ));
        }
    }
    let over_limit = audit.net_fen.values().filter(|&&net| net > CONTRACT_FEN).count();
    let store_conflicts: usize = servers
        .iter()
        .map(|s| {
            std::fs::read_to_string(&s.log).unwrap_or_default().matches("concurrency conflict, deciding again").count()
        })
        .sum();

    let mut figures = audit_figures(backend, "contention", knobs.clients, 0, &tally, &audit);
    figures.extra = vec![
        ("servers", "2".into()),
        ("refused", tally.refused.len().to_string()),
        ("uniform_ok", format!("{uniform_ok}/{requested}")),
        ("mixed_net", crate::harness::yuan(mixed_net)),
        ("contract_amount", crate::harness::yuan(CONTRACT_FEN)),
        ("over_limit", over_limit.to_string()),
        ("error_codes", codes_figure(&tally)),
        ("conflict_answers", tally.code("CONFLICT").to_string()),
        ("store_conflicts_redecided", store_conflicts.to_string()),
        ("seconds", format!("{:.1}", started.elapsed().as_secs_f64())),
    ];
    report(&figures, &problems);
    figures
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown

/// Many payments are sent at once (they queue behind each other on two contracts); once the
/// first is answered, SIGTERM. Every request in flight must get its complete answer, the
/// process must exit 0, and every answered payment must be in the log.
///
/// "In flight" is what the server has read. A connection the kernel or actix-web's accept
/// thread took but no worker had picked up when SIGTERM came is closed unread (actix-server
/// drops queued connections when a worker starts its graceful shutdown); the client sees a
/// reset or "closed before message completed". Such a payment must then be absent from the
/// log (the audit reports any payment in the log no client was told about), and the server
/// must have exited before its shutdown timeout, which is when it would cut requests it had read.
pub async fn sigterm(backend: &'static str, url: &str, log: std::path::PathBuf) -> Figures {
    const REQUESTS: usize = 64;
    let started = Instant::now();
    let sqlite = backend == "sqlite";
    let mut server = Server::new(url, log);
    server.start().await;
    let market = setup_market(&server.base()).await;
    let x = sign_contract(&server.base(), &market, "FAULT-TERM-X", 100_000_000).await;
    let y = sign_contract(&server.base(), &market, "FAULT-TERM-Y", 100_000_000).await;

    // No idle connections kept: each answer closes its connection, so the drain is not held
    // up by keep-alive.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let first_answer = Arc::new(tokio::sync::Notify::new());
    let handles: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let (http, base, token, first_answer) =
                (http.clone(), server.base(), market.registrar.clone(), first_answer.clone());
            let contract = if i % 4 == 3 { y } else { x };
            tokio::spawn(async move {
                let key = format!("t{i:03}");
                let fen = 1_000 + i as i64;
                let variables = json!({ "key": key, "input": payment_input(contract, fen, &key) });
                let answer = gql(&http, &base, &token, RECORD_PAYMENT, variables).await;
                let at = Instant::now();
                first_answer.notify_one();
                (key, contract, fen, answer, at)
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), first_answer.notified())
        .await
        .expect("the first payment is answered within 20 s");
    let term_at = Instant::now();
    server.sigterm();
    // While it drains, a new connection should no longer be accepted (informational).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client");
    let new_connections = match probe.get(format!("{}/health", server.base())).send().await {
        Err(e) if e.is_connect() => "refused",
        Err(_) => "failed",
        Ok(_) => "accepted",
    };
    let answers = tokio::time::timeout(Duration::from_secs(30), futures_util::future::join_all(handles))
        .await
        .expect("every request is answered within 30 s of SIGTERM");
    let status = server.wait_exit(Duration::from_secs(20)).await;
    let exited_after = term_at.elapsed();

    let mut problems = Vec::new();
    let mut acks = Vec::new();
    let (mut after_term, mut not_in_flight, mut dropped_unread) = (0usize, 0usize, 0usize);
    for joined in answers {
        let (key, contract, fen, answer, at) = joined.expect("a request task panicked");
        match answer {
            Answer::Data(data) => {
                if at > term_at {
                    after_term += 1;
                }
                match data["recordPayment"]["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                    Some(payment) => acks.push(Ack { key, contract, fen, payment }),
                    None => problems.push(format!("payment {key}: an answer without an id: {data}")),
                }
            }
            // Never connected: it was not in flight when SIGTERM arrived (the listener closed).
            Answer::Transport { connect: true, .. } => not_in_flight += 1,
            Answer::Transport { connect: false, ref message } if closed_unread(message) => dropped_unread += 1,
            other => problems.push(format!("payment {key} in flight at SIGTERM got no complete answer: {other:?}")),
        }
    }
    if status.code() != Some(0) {
        problems.push(format!("the server exited with {status} after SIGTERM, not 0"));
    }
    if after_term == 0 {
        problems.push(format!(
            "all {REQUESTS} requests were answered before SIGTERM: nothing was in flight, the drain was not tested"
        ));
    }
    if dropped_unread > 0 && exited_after >= crate::harness::SHUTDOWN_TIMEOUT {
        problems.push(format!(
            "{dropped_unread} connection(s) closed unanswered and the server took {exited_after:?} to exit: \
             it reached its shutdown timeout, so requests it had read may have been cut"
        ));
    }
    let audit = checks::audit(url, sqlite, &acks, &[], &[x, y]).await;
    problems.extend(audit.problems.iter().cloned());

    let tally = Tally { attempts: REQUESTS as u64, acks, ..Tally::default() };
    let mut figures = audit_figures(backend, "sigterm", REQUESTS, 0, &tally, &audit);
    figures.extra = vec![
        ("answered_after_sigterm", after_term.to_string()),
        ("not_in_flight", not_in_flight.to_string()),
        ("dropped_unread", dropped_unread.to_string()),
        ("new_connection_while_draining", new_connections.into()),
        ("exit_code", status.code().map_or_else(|| status.to_string(), |c| c.to_string())),
        ("exit_ms_after_sigterm", exited_after.as_millis().to_string()),
        ("seconds", format!("{:.1}", started.elapsed().as_secs_f64())),
    ];
    report(&figures, &problems);
    figures
}

// ---------------------------------------------------------------------------------------------
// The suites

fn total(backend: &'static str, figures: &[Figures], started: Instant) {
    let sum = |f: fn(&Figures) -> usize| figures.iter().map(f).sum::<usize>();
    Figures {
        backend,
        scenario: "all",
        clients: figures.iter().map(|f| f.clients).max().unwrap_or(0),
        requests: figures.iter().map(|f| f.requests).sum(),
        kills: figures.iter().map(|f| f.kills).sum(),
        acknowledged: sum(|f| f.acknowledged),
        found: sum(|f| f.found),
        lost: sum(|f| f.lost),
        duplicates: sum(|f| f.duplicates),
        extra: vec![
            ("scenarios", figures.iter().map(|f| f.scenario).collect::<Vec<_>>().join(",")),
            ("seconds", format!("{:.1}", started.elapsed().as_secs_f64())),
        ],
    }
    .print();
}

pub async fn sqlite_suite(knobs: Knobs) {
    let started = Instant::now();
    let scratch = crate::harness::Scratch::new("sqlite");
    let db = |name: &str| format!("sqlite:{}", scratch.path.join(format!("{name}.db")).display());
    let mut figures = Vec::new();
    figures.push(kill("sqlite", &db("kill"), scratch.path.join("server-kill.log"), knobs).await);
    figures.push(contention("sqlite", &db("contention"), &scratch.path, knobs).await);
    figures.push(sigterm("sqlite", &db("sigterm"), scratch.path.join("server-sigterm.log")).await);
    total("sqlite", &figures, started);
}

pub async fn postgres_suite(knobs: Knobs) {
    let started = Instant::now();
    let scratch = crate::harness::Scratch::new("postgres");
    let mut pg = tokio::task::block_in_place(PrivatePostgres::create).unwrap_or_else(|e| panic!("{e}"));
    let mut figures = Vec::new();
    let url = pg.create_database("fault_kill").await;
    figures.push(kill("postgres", &url, scratch.path.join("server-kill.log"), knobs).await);
    let url = pg.create_database("fault_restart").await;
    figures.push(pg_restart(&mut pg, &url, scratch.path.join("server-restart.log"), knobs).await);
    let url = pg.create_database("fault_contention").await;
    figures.push(contention("postgres", &url, &scratch.path, knobs).await);
    let url = pg.create_database("fault_sigterm").await;
    figures.push(sigterm("postgres", &url, scratch.path.join("server-sigterm.log")).await);
    total("postgres", &figures, started);
}

// ---------------------------------------------------------------------------------------------
// The checks themselves

/// The audit is not vacuous: an acknowledged payment missing from the log, a payment in the
/// log nobody was told about and a bank reference recorded twice are each counted, and
/// `PRAGMA integrity_check` notices a damaged file.
pub async fn audit_self_check() {
    let scratch = crate::harness::Scratch::new("selfcheck");
    let url = format!("sqlite:{}", scratch.path.join("selfcheck.db").display());
    let mut server = Server::new(&url, scratch.path.join("server.log"));
    server.start().await;
    let market = setup_market(&server.base()).await;
    let x = sign_contract(&server.base(), &market, "FAULT-SELF-X", 1_000_000).await;
    let y = sign_contract(&server.base(), &market, "FAULT-SELF-Y", 1_000_000).await;
    let http = http_client(Duration::from_secs(30));
    let mut ids = BTreeMap::new();
    // The same bank reference on two contracts is allowed by the ledger: the audit, which
    // keys payments by bank reference (unique per run in the real scenarios), must count it.
    for (key, contract, reference) in [("a", x, "a"), ("b", x, "b"), ("c", x, "c"), ("d1", x, "d"), ("d2", y, "d")] {
        let variables = json!({ "key": key, "input": payment_input(contract, 500, reference) });
        let data = crate::harness::must(
            gql(&http, &server.base(), &market.registrar, RECORD_PAYMENT, variables).await,
            "recordPayment",
        );
        let id = data["recordPayment"]["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()).expect("a payment id");
        ids.insert(key, id);
    }
    server.stop().await;
    let ack = |key: &str, payment: Uuid| Ack { key: key.to_owned(), contract: x, fen: 500, payment };
    // "c" is in the log but not acknowledged; "gone" is acknowledged but not in the log;
    // "d" is in the log twice.
    let acks = [ack("a", ids["a"]), ack("b", ids["b"]), ack("gone", Uuid::now_v7()), ack("d", ids["d1"])];
    let audit = checks::audit(&url, true, &acks, &[], &[x, y]).await;
    assert_eq!(
        (audit.found, audit.lost, audit.duplicates, audit.unacknowledged_in_log),
        (3, 1, 1, 1),
        "the audit miscounted; its problems: {:#?}",
        audit.problems
    );
    assert!(checks::sqlite_integrity(&url).await.is_ok(), "the intact file passes integrity_check");

    // A damaged copy of the file must fail integrity_check.
    let original = scratch.path.join("selfcheck.db");
    let damaged = scratch.path.join("damaged.db");
    std::fs::copy(&original, &damaged).expect("copy the database file");
    let mut bytes = std::fs::read(&damaged).expect("read the copy");
    assert!(bytes.len() > 3 * 4096, "the database file has several pages");
    for b in &mut bytes[4096 + 8..3 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&damaged, &bytes).expect("damage the copy");
    let damaged_url = format!("sqlite:{}", damaged.display());
    match checks::sqlite_integrity(&damaged_url).await {
        Err(e) => assert!(e.contains("integrity_check") || e.contains("malformed"), "an unexpected failure: {e}"),
        Ok(()) => panic!("integrity_check must notice the damaged file"),
    }
}

// ---------------------------------------------------------------------------------------------
// A reproduction

/// Reproduces a server defect found by the pg-restart scenario: while the database is down,
/// `GET /ready` does not answer until the pool's acquire timeout (10 s) has passed, so a
/// readiness probe with an ordinary timeout (1-2 s) sees a timeout, not a 503.
pub async fn ready_answers_promptly_when_database_is_down() {
    let scratch = crate::harness::Scratch::new("ready");
    let mut pg = tokio::task::block_in_place(PrivatePostgres::create).unwrap_or_else(|e| panic!("{e}"));
    let url = pg.create_database("fault_ready").await;
    let mut server = Server::new(&url, scratch.path.join("server.log"));
    server.start().await;
    pg.stop("immediate").await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("an HTTP client");
    let asked = Instant::now();
    let status = client.get(format!("{}/ready", server.base())).send().await.map(|r| r.status().as_u16());
    let took = asked.elapsed();
    pg.start().await;
    server.stop().await;
    assert_eq!(status.ok(), Some(503), "GET /ready with the database down");
    assert!(took < Duration::from_secs(2), "GET /ready took {took:?} to say the database is down");
}

/// A connection closed by the server before any answer: what a client sees when the server
/// drops a connection it has not read (see `sigterm`).
fn closed_unread(message: &str) -> bool {
    message.contains("connection closed before message completed") || message.contains("Connection reset by peer")
}
