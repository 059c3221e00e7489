//! `techmarket bench`: generates a year of the market once, then on each engine (SQLite,
//! PostgreSQL) imports it into a throwaway database and measures, each figure beside the
//! ceiling measured in the same run on the same database:
//!
//! 1. single-event commands (`recordPayment`) through `Ledger::execute` with 1, 8 and 64
//!    concurrent callers, vs a plain multi-row INSERT of the same rows into a table shaped
//!    like `events`;
//! 2. GraphQL `recordPayment` over HTTP (64 keep-alive connections to a `techmarket serve`
//!    child process), vs the same server's `/health`;
//! 3. the projection rebuild, vs the pure in-memory fold of the same events;
//! 4. a year's completer statement as of an old position (replayed from the log), and at
//!    the head (from the tables);
//! 5. CSV and XLSX exports of the same statement (`api::export::export`) at the end of the
//!    year, beside the same export as of the middle of the year (time and peak memory);
//! 6. hash-chain verification, vs hashing the same rows in memory (with the read and decode
//!    rates beside it, to show where the time goes).
//!
//! Targets that speak of a "national year" (1,000,000 contracts) are compared with the time
//! measured at the run's scale extrapolated linearly by event count, and say so.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::ProgressBar;
use ledger::chain::{ChainedFields, GENESIS, event_hash};
use ledger::command::{Command, RecordPayment};
use ledger::event::{Event, Metadata, RecordedEvent};
use ledger::ids::{ContractId, PaymentId};
use ledger::projection::Projections;
use ledger::reports::{AsOfRequest, LineSource};
use ledger::service::{CommandContext, Ledger};
use ledger::store::{Backend, GroupCommitStats, Store, StoreOptions, StoredEvent};
use ledger::{Actor, Money, Role};
use sqlx::Connection as _;
use tokio::io::AsyncBufReadExt;

use super::generate::{GenerateOptions, GenerateStats, as_recorded, generate_log};
use super::http_load::{CheckFn, LoadResult, RequestFn, run_load, single_request};
use super::written::{POSTGRES_INDEXES, SQLITE_INDEXES, Tables, Written, entries_per_row};

/// Contracts of the default run: fits the whole run, both engines, in about ten minutes on
/// the 2-core reference machine (see BENCHMARKS.md). National scale is `--contracts 1000000`.
pub const DEFAULT_CONTRACTS: u64 = 100_000;
/// Contracts of `--quick`.
pub const QUICK_CONTRACTS: u64 = 2_000;
/// A national year (DOMAIN.md: China registers about a million technology contracts a year).
pub const NATIONAL_CONTRACTS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    Sqlite,
    Postgres,
}

/// Measures the ledger at scale; prints a markdown table per engine.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// CI smoke mode: 2,000 contracts and 1-second phases (well under a minute, even in a
    /// debug build). Its figures only show that every measurement still runs.
    #[arg(long)]
    pub quick: bool,

    /// Contracts in the generated data (default 100,000; a national year is 1,000,000).
    #[arg(long)]
    pub contracts: Option<u64>,

    /// Calendar years the contracts are spread over (statements are of the first year).
    #[arg(long, default_value_t = 1)]
    pub years: u32,

    /// First calendar year of the generated data.
    #[arg(long, default_value_t = 2024)]
    pub first_year: i32,

    /// Seed of the data generator (the same seed gives the same data).
    #[arg(long, default_value_t = 20_240_101)]
    pub seed: u64,

    /// Engines to measure, comma-separated: sqlite, postgres.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub engines: Vec<EngineArg>,

    /// PostgreSQL server to measure on: a throwaway database `techmarket_bench_<id>` is
    /// created there (the user needs CREATEDB) and dropped at the end.
    #[arg(long, env = "TEST_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres_url: String,

    /// Directory for the SQLite database and the server's log (default: a new directory
    /// under the system temp dir, removed at the end).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,

    /// Seconds each throughput phase runs (default 5; 1 with --quick).
    #[arg(long)]
    pub seconds: Option<f64>,

    /// Concurrent callers of the ledger API in the append phases, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub callers: Vec<usize>,

    /// Keep-alive HTTP connections of the GraphQL and /health phases.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,

    /// Also write the report (markdown) to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,

    /// Keep the benchmark databases (and the work directory) instead of removing them.
    #[arg(long)]
    pub keep: bool,

    /// The `techmarket` executable that serves the HTTP phase (default: the running one).
    #[arg(long)]
    pub server_exe: Option<PathBuf>,
}

/// The resolved settings of a run.
struct Config {
    contracts: u64,
    years: u32,
    first_year: i32,
    seed: u64,
    phase: Duration,
    callers: Vec<usize>,
    connections: usize,
    engines: Vec<EngineArg>,
    postgres_url: String,
    work_dir: PathBuf,
    remove_work_dir: bool,
    keep: bool,
    server_exe: PathBuf,
    quick: bool,
    output: Option<PathBuf>,
    command_line: String,
}

/// What the run measured once for all engines.
struct Common {
    stats: GenerateStats,
    events: usize,
    generate_secs: f64,
    /// Each run of the fold, in events/s, slowest first.
    fold_runs: Vec<f64>,
    /// Events in a national year at this data's events per contract.
    national_events: f64,
    /// The last position recorded in the first year (the "old position" of the statements).
    first_year_end: i64,
    peak_rss_after_generate: Option<u64>,
}

impl Common {
    /// The median run of the fold.
    fn fold_rate(&self) -> f64 {
        self.fold_runs[self.fold_runs.len() / 2]
    }
}

/// What one engine measured.
#[derive(Default)]
struct EngineReport {
    name: String,
    version: String,
    import_secs: f64,
    verify_secs: f64,
    read_rate: f64,
    hash_rate: f64,
    decode_rate: f64,
    rebuild_secs: f64,
    replay_secs: f64,
    replay_lines: usize,
    head_secs: f64,
    head_lines: usize,
    /// CSV then XLSX: (half a year, the whole year).
    exports: Vec<(ExportRun, ExportRun)>,
    appends: Vec<(usize, LoadResult, GroupCommitStats)>,
    ceiling_rows: usize,
    ceiling_rate: f64,
    /// B-tree entries a row of the ceiling's table adds (the table's own and its indexes').
    ceiling_entries: u32,
    /// What the append phases wrote.
    written: Written,
    single_row_rate: f64,
    first_mutation_secs: f64,
    graphql: LoadResult,
    health: LoadResult,
    notes: Vec<String>,
}

/// The append batches of a phase: how many requests shared a commit, and how long each
/// batch held the append lock (from its `BEGIN` to its commit's return), which is what bounds
/// the appends of many callers.
fn describe_batches(batches: GroupCommitStats) -> String {
    if batches.batches == 0 {
        return "no batches".into();
    }
    let n = batches.batches as f64;
    format!(
        "{} batches of {:.1} requests, each {:.2} ms from `BEGIN` to commit",
        thousands(n),
        batches.requests as f64 / n,
        batches.held.as_secs_f64() * 1_000.0 / n
    )
}

/// What the append phases wrote per event, and the bound it puts on appends at the rate of
/// the ceiling (row 1) measured in the same run.
fn describe_written(written: &Written, ceiling_rate: f64, ceiling_entries: u32) -> String {
    if written.events == 0 || ceiling_entries == 0 {
        return "What the append phases wrote: nothing was appended.".into();
    }
    let tables: Vec<String> = written
        .tables
        .iter()
        .map(|t| format!("`{}` {:.2} ({} a row)", t.table, t.rows as f64 / written.events as f64, t.entries_per_row))
        .collect();
    format!(
        "What the append phases wrote (the tables counted before and after them): {} events, each inserting {:.2} rows, {:.1} B-tree entries (a table's own and one per index; rows updated in place not counted). Rows per event, and entries per row: {}. A row of the ceiling's table adds {} entries: at its {} rows/s, the same entries allow at most about {} events/s.",
        thousands(written.events as f64),
        written.rows_per_event(),
        written.entries_per_event(),
        tables.join(", "),
        ceiling_entries,
        thousands(ceiling_rate),
        thousands(written.bound(ceiling_rate, ceiling_entries)),
    )
}

/// One export of the completer subsidy statement.
#[derive(Debug, Clone, Default)]
struct ExportRun {
    format: &'static str,
    secs: f64,
    lines: u64,
    rows: u64,
    bytes: u64,
    /// Peak resident memory of `techmarket export` making the same export in a process of
    /// its own (this process's allocator holds freed memory, which would hide growth).
    peak_rss: Option<u64>,
}

/// Runs the benchmark; the report goes to standard output (progress to standard error).
pub async fn bench_command(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = resolve(args)?;
    let started = Instant::now();
    let machine = Machine::probe();
    eprintln!(
        "techmarket bench: {} contracts over {} year(s), engines {:?}, {} s phases, work dir {}",
        config.contracts,
        config.years,
        config.engines,
        config.phase.as_secs_f64(),
        config.work_dir.display()
    );
    std::fs::create_dir_all(&config.work_dir)
        .with_context(|| format!("cannot create {}", config.work_dir.display()))?;

    let (log, common) = prepare(&config).await?;
    let payable = Arc::new(payable_contracts(&log, config.seed));
    let mut reports = Vec::new();
    for engine in &config.engines {
        let report = run_engine(&config, *engine, &log, &common, &payable).await?;
        reports.push(report);
    }
    drop(log);
    let total = started.elapsed();
    let report = render(&config, &machine, &common, &reports, total);
    println!("{report}");
    if let Some(path) = &config.output {
        std::fs::write(path, &report).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if config.remove_work_dir && !config.keep {
        let _ = std::fs::remove_dir_all(&config.work_dir);
    }
    Ok(ExitCode::SUCCESS)
}

fn resolve(args: BenchArgs) -> anyhow::Result<Config> {
    if args.years == 0 {
        bail!("--years must be at least 1");
    }
    if args.callers.is_empty() || args.callers.contains(&0) {
        bail!("--callers must list positive numbers");
    }
    let contracts = args.contracts.unwrap_or(if args.quick { QUICK_CONTRACTS } else { DEFAULT_CONTRACTS });
    if contracts < 50 {
        bail!("--contracts must be at least 50");
    }
    let phase = Duration::from_secs_f64(args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 }).max(0.1));
    let id = format!("{}_{}", std::process::id(), Utc::now().timestamp_millis());
    let (work_dir, remove_work_dir) = match args.work_dir {
        Some(dir) => (dir, false),
        None => (std::env::temp_dir().join(format!("techmarket-bench-{id}")), true),
    };
    let server_exe = match args.server_exe {
        Some(exe) => exe,
        None => std::env::current_exe().context("cannot find the running executable for the HTTP phase")?,
    };
    Ok(Config {
        contracts,
        years: args.years,
        first_year: args.first_year,
        seed: args.seed,
        phase,
        callers: args.callers,
        connections: args.connections.max(1),
        engines: args.engines,
        postgres_url: args.postgres_url,
        work_dir,
        remove_work_dir,
        keep: args.keep,
        server_exe,
        quick: args.quick,
        output: args.output,
        command_line: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
    })
}

fn bar(len: u64, message: &str) -> ProgressBar {
    super::progress_bar(len, message)
}

/// Generates the data and measures the pure fold (engine independent).
async fn prepare(config: &Config) -> anyhow::Result<(Vec<(Event, Metadata, DateTime<Utc>)>, Common)> {
    let options = GenerateOptions {
        contracts: config.contracts,
        years: config.years,
        first_year: config.first_year,
        seed: config.seed,
        recorded_at: None,
    };
    let progress = bar(config.contracts, "generating");
    let t = Instant::now();
    let generated = {
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || {
            generate_log(&options, |stats| progress.set_position(stats.contracts_signed))
        })
        .await?
    };
    progress.finish_and_clear();
    let generate_secs = t.elapsed().as_secs_f64();
    let stats = generated.stats;
    if stats.refused > 0 {
        bail!("the generator made {} commands the domain refused (first: {:?})", stats.refused, stats.first_refusal);
    }
    let log = generated.events;
    eprintln!(
        "generated {} events ({} contracts, {} payments) in {:.1} s",
        log.len(),
        stats.contracts_signed,
        stats.payments,
        generate_secs
    );
    let peak_rss_after_generate = peak_rss();
    let fold_runs = {
        let progress = bar(log.len() as u64 * FOLD_RUNS as u64, "folding");
        let mut runs: Vec<f64> = (0..FOLD_RUNS).map(|_| fold_rate(&log, &progress)).collect();
        progress.finish_and_clear();
        runs.sort_by(f64::total_cmp);
        runs
    };
    let year_end =
        ledger::time::start_of_shanghai_day(NaiveDate::from_ymd_opt(config.first_year + 1, 1, 1).expect("valid year"));
    let first_year_end = log.iter().take_while(|(_, _, at)| *at < year_end).count() as i64;
    let national_events = log.len() as f64 / stats.contracts_signed.max(1) as f64 * NATIONAL_CONTRACTS as f64;
    let common = Common {
        events: log.len(),
        stats,
        generate_secs,
        fold_runs,
        national_events,
        first_year_end,
        peak_rss_after_generate,
    };
    eprintln!(
        "pure in-memory fold: {:.0} events/s (median of {FOLD_RUNS} runs: {})",
        common.fold_rate(),
        common.fold_runs.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
    );
    Ok((log, common))
}

/// Runs of the pure fold: one run moves by a fifth or more on a shared 2-core machine (it is
/// bound by memory and the allocator), so the table gives the median of three and all three.
const FOLD_RUNS: usize = 3;

/// The pure fold (`Projections::apply`) over the generated events, in events per second.
/// Building the recorded events (clones) is outside the timed part.
fn fold_rate(log: &[(Event, Metadata, DateTime<Utc>)], progress: &ProgressBar) -> f64 {
    let mut projections = Projections::new();
    let mut timed = Duration::ZERO;
    let mut position = 0i64;
    for chunk in log.chunks(65_536) {
        let recorded: Vec<RecordedEvent> = chunk
            .iter()
            .map(|(event, metadata, at)| {
                position += 1;
                as_recorded(position, event.clone(), metadata.clone(), *at)
            })
            .collect();
        let t = Instant::now();
        let mut outputs = 0usize;
        for r in &recorded {
            outputs += projections.apply(r).len();
        }
        timed += t.elapsed();
        std::hint::black_box(outputs);
        progress.inc(chunk.len() as u64);
    }
    log.len() as f64 / timed.as_secs_f64().max(1e-9)
}

/// Registered, unterminated contracts with at least 100 yuan not yet received: the
/// benchmark's payments (0.01 yuan each) go to them, spread evenly, so each contract stream
/// stays as short as a real one.
fn payable_contracts(log: &[(Event, Metadata, DateTime<Utc>)], seed: u64) -> Vec<ContractId> {
    #[derive(Default)]
    struct C {
        amount: i64,
        net: i64,
        registered: bool,
        terminated: bool,
    }
    let mut contracts: HashMap<ContractId, C> = HashMap::new();
    let mut order = Vec::new();
    for (event, _, _) in log {
        match event {
            Event::ContractSigned(e) => {
                order.push(e.contract_id);
                contracts.insert(e.contract_id, C { amount: e.contract_amount.fen(), ..C::default() });
            }
            Event::ContractRegistered(e) => contracts.entry(e.contract_id).or_default().registered = true,
            Event::ContractAmended(e) => contracts.entry(e.contract_id).or_default().amount = e.contract_amount.fen(),
            Event::ContractTerminated(e) => contracts.entry(e.contract_id).or_default().terminated = true,
            Event::PaymentSettled(e) => contracts.entry(e.contract_id).or_default().net += e.amount.fen(),
            Event::PaymentReversed(e) => contracts.entry(e.contract_id).or_default().net -= e.amount.fen(),
            _ => {}
        }
    }
    let mut payable: Vec<ContractId> = order
        .into_iter()
        .filter(|id| {
            let c = &contracts[id];
            c.registered && !c.terminated && c.amount - c.net >= 10_000
        })
        .collect();
    let mut rng = super::generate::Rng::new(seed ^ 0x5eed);
    for i in (1..payable.len()).rev() {
        payable.swap(i, rng.index(i + 1));
    }
    payable
}

// ---------------------------------------------------------------------------------------
// One engine

/// A throwaway database.
enum BenchDb {
    Sqlite { url: String, dir: PathBuf },
    Postgres { url: String, admin_url: String, name: String },
}

impl BenchDb {
    async fn create(config: &Config, engine: EngineArg) -> anyhow::Result<BenchDb> {
        let id = format!("{}_{}", std::process::id(), Utc::now().timestamp_millis());
        Ok(match engine {
            EngineArg::Sqlite => {
                let dir = config.work_dir.join(format!("sqlite-{id}"));
                std::fs::create_dir_all(&dir)?;
                BenchDb::Sqlite { url: format!("sqlite:{}", dir.join("ledger.db").display()), dir }
            }
            EngineArg::Postgres => {
                let admin_url = config.postgres_url.clone();
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.with_context(|| {
                    format!(
                        "PostgreSQL is not reachable at {}: start one or pass --postgres-url (or --engines sqlite)",
                        crate::startup::redact(&admin_url)
                    )
                })?;
                let name = format!("techmarket_bench_{id}");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .context("cannot create the benchmark database (the user needs CREATEDB)")?;
                let url = crate::startup::database_url_with_name(&admin_url, &name);
                BenchDb::Postgres { url, admin_url, name }
            }
        })
    }

    fn url(&self) -> &str {
        match self {
            BenchDb::Sqlite { url, .. } | BenchDb::Postgres { url, .. } => url,
        }
    }

    async fn drop_db(self) {
        match self {
            BenchDb::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            BenchDb::Postgres { admin_url, name, .. } => {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut admin)
                        .await;
                }
            }
        }
    }
}

async fn run_engine(
    config: &Config,
    engine: EngineArg,
    log: &[(Event, Metadata, DateTime<Utc>)],
    common: &Common,
    payable: &Arc<Vec<ContractId>>,
) -> anyhow::Result<EngineReport> {
    let db = BenchDb::create(config, engine).await?;
    let result = measure_engine(config, engine, &db, log, common, payable).await;
    if config.keep {
        eprintln!("kept the {engine:?} benchmark database: {}", crate::startup::redact(db.url()));
    } else {
        db.drop_db().await;
    }
    result
}

async fn measure_engine(
    config: &Config,
    engine: EngineArg,
    db: &BenchDb,
    log: &[(Event, Metadata, DateTime<Utc>)],
    common: &Common,
    payable: &Arc<Vec<ContractId>>,
) -> anyhow::Result<EngineReport> {
    let mut report = EngineReport::default();
    let url = db.url().to_owned();
    let store = Store::connect(&url, &StoreOptions::default()).await?;
    store.migrate().await?;
    report.name = match store.backend() {
        Backend::Sqlite => "SQLite".into(),
        Backend::Postgres => "PostgreSQL".into(),
    };
    report.version = engine_version(&url).await.unwrap_or_else(|e| format!("version unknown: {e}"));
    eprintln!("== {} ({})", report.name, report.version);

    // Import (the documented bulk path), then verify, scan, rebuild.
    let progress = bar(log.len() as u64, "importing");
    let t = Instant::now();
    let head = store.import_events_with_progress(log, |n| progress.set_position(n as u64)).await?;
    report.import_secs = t.elapsed().as_secs_f64();
    progress.finish_and_clear();
    eprintln!("imported {head} events in {:.1} s", report.import_secs);

    let progress = bar(head as u64, "verifying");
    let t = Instant::now();
    let verified = store.verify_chain(|p| progress.set_position(p as u64)).await?;
    report.verify_secs = t.elapsed().as_secs_f64();
    progress.finish_and_clear();
    if !verified.is_intact() || verified.events_checked != head {
        bail!("the imported chain does not verify: {:?}", verified.first_break);
    }
    eprintln!("verified in {:.1} s", report.verify_secs);

    let (read_rate, hash_rate, decode_rate) = scan(&store, head).await?;
    (report.read_rate, report.hash_rate, report.decode_rate) = (read_rate, hash_rate, decode_rate);

    let progress = bar(head as u64, "rebuilding");
    let t = Instant::now();
    let rebuilt = store.rebuild_projections(|p| progress.set_position(p as u64)).await?;
    report.rebuild_secs = t.elapsed().as_secs_f64();
    progress.finish_and_clear();
    eprintln!("rebuilt {} events in {:.1} s", rebuilt.events_replayed, report.rebuild_secs);

    // Statements: the first year as of its last position (replayed from the log), and at the
    // head from the tables.
    let ledger = Ledger::new(store.clone());
    let old = ledger.resolve_as_of(AsOfRequest::Position(common.first_year_end)).await?;
    let t = Instant::now();
    let replayed = ledger.completer_statement(config.first_year, old, LineSource::Replay).await?;
    report.replay_secs = t.elapsed().as_secs_f64();
    report.replay_lines = replayed.lines.len();
    let now = ledger.resolve_as_of(AsOfRequest::Head).await?;
    let t = Instant::now();
    let tabled = ledger.completer_statement(config.first_year, now, LineSource::Tables).await?;
    report.head_secs = t.elapsed().as_secs_f64();
    report.head_lines = tabled.lines.len();
    // With one year of data the two are the same statement, reached two ways: a replay of the
    // whole log, page by page, must give what the rebuilt tables hold, to the fen.
    if replayed.as_of.position == tabled.as_of.position
        && (replayed.lines != tabled.lines
            || replayed.completers != tabled.completers
            || replayed.totals != tabled.totals)
    {
        bail!(
            "the completer statement {} replayed from the log differs from the one the tables give at the same position {}",
            config.first_year,
            tabled.as_of.position
        );
    }
    drop((replayed, tabled));
    eprintln!("statement: replay {:.2} s, tables {:.2} s", report.replay_secs, report.head_secs);

    // Exports of the same statement, as of the middle of the year and at the end of it: the
    // time scales with the lines, the memory must not.
    let middle = ledger
        .resolve_as_of(AsOfRequest::Time(ledger::time::start_of_shanghai_day(
            NaiveDate::from_ymd_opt(config.first_year, 7, 1).expect("valid date"),
        )))
        .await?;
    let end = ledger.resolve_as_of(AsOfRequest::Position(common.first_year_end)).await?;
    for format in [crate::export::Format::Csv, crate::export::Format::Xlsx] {
        let half = export_run(&ledger, config, &url, format, middle.clone()).await?;
        let whole = export_run(&ledger, config, &url, format, end.clone()).await?;
        eprintln!(
            "export {}: {} lines in {:.2} s (peak RSS {} MiB); {} lines in {:.2} s (peak RSS {} MiB)",
            whole.format,
            half.lines,
            half.secs,
            half.peak_rss.map_or(-1, |b| (b >> 20) as i64),
            whole.lines,
            whole.secs,
            whole.peak_rss.map_or(-1, |b| (b >> 20) as i64)
        );
        report.exports.push((half, whole));
    }

    // Appends through the ledger API.
    let settled_at = ledger::time::start_of_shanghai_day(
        NaiveDate::from_ymd_opt(config.first_year + config.years as i32, 1, 1).expect("valid year"),
    ) - chrono::Duration::hours(2);
    let next = Arc::new(AtomicUsize::new(0));
    let before_appends = store.head().await?.map_or(0, |(p, _)| p);
    let tables_before = Tables::read(&url).await.context("counting the tables' rows before the appends")?;
    // One untimed command first (statement caches; the policy fold is warm from the rebuild).
    let warm = Command::RecordPayment(RecordPayment {
        contract_id: payable[next.fetch_add(1, Ordering::Relaxed) % payable.len()],
        payment_id: PaymentId(uuid::Uuid::now_v7()),
        amount: Money::from_fen(1),
        settled_at,
        bank_reference: "BENCH-WARM-UP".into(),
    });
    let registrar =
        Actor { user_id: "bench-registrar".into(), role: Role::Registrar, organisation_id: None, broker_id: None };
    ledger
        .execute(&CommandContext { actor: registrar, request_id: None, idempotency_key: None }, warm, "")
        .await
        .context("recordPayment through the ledger fails")?;
    for &callers in &config.callers {
        let before = store.group_commit_stats();
        let result = append_phase(&ledger, payable, &next, callers, config.phase, "A", settled_at).await;
        let batches = store.group_commit_stats().since(before);
        eprintln!(
            "append, {callers} callers: {:.0} events/s (errors {}) {}; {}",
            result.rps(),
            result.errors,
            result.first_error.as_deref().unwrap_or(""),
            describe_batches(batches)
        );
        report.appends.push((callers, result, batches));
    }
    let after_appends = store.head().await?.map_or(0, |(p, _)| p);
    let tables_after = Tables::read(&url).await.context("counting the tables' rows after the appends")?;
    report.written = tables_before.written_until(&tables_after, after_appends - before_appends);
    let (rows, rate, single, entries) =
        ceiling_insert(&store, &url, before_appends, after_appends, config.phase).await?;
    (report.ceiling_rows, report.ceiling_rate, report.single_row_rate, report.ceiling_entries) =
        (rows, rate, single, entries);
    eprintln!("{}", describe_written(&report.written, rate, entries));
    eprintln!("multi-row INSERT ceiling: {rate:.0} rows/s ({rows} rows); one row per commit: {single:.0} rows/s");
    store.close().await;

    // HTTP: a real server process on the same database.
    http_phases(config, &url, payable, &next, settled_at, &mut report).await?;

    if engine == EngineArg::Sqlite {
        report.notes.push("SQLite: WAL, synchronous=FULL (every commit is fsynced), as the server runs it.".into());
    }
    Ok(report)
}

/// Exports the completer subsidy statement of the first year as of `as_of` to a file in the
/// work directory with the public export API (`api::export::export`), timed; then makes the
/// same export with `techmarket export` in a process of its own, sampling its peak resident
/// memory (VmHWM) until it exits.
async fn export_run(
    ledger: &Ledger,
    config: &Config,
    url: &str,
    format: crate::export::Format,
    as_of: ledger::statement::AsOf,
) -> anyhow::Result<ExportRun> {
    use crate::export::{ExportRequest, IdNumbers, Lang, Silent, Statement};
    let request = ExportRequest {
        statement: Statement::CompleterSubsidy,
        year: config.first_year,
        format,
        lang: Lang::Zh,
        id_numbers: IdNumbers::Masked,
    };
    let position = as_of.position;
    let path = config.work_dir.join(request.file_name(Some(position)));
    let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let t = Instant::now();
    // On a task of the runtime's, as the server runs an export, not on this process's main
    // thread: that thread's malloc arena holds the generated log and what the replay freed,
    // and there the export's producer spent two thirds of its time in malloc and free (an
    // eighth in `techmarket export`), about doubling the export's time.
    let (task_ledger, task_request) = (ledger.clone(), request.clone());
    let outcome =
        tokio::spawn(
            async move { crate::export::export(&task_ledger, None, &task_request, as_of, file, &Silent).await },
        )
        .await??;
    let secs = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&path);

    let mut child = tokio::process::Command::new(&config.server_exe)
        .args(["export", Statement::CompleterSubsidy.slug(), "--year", &config.first_year.to_string()])
        .args(["--format", format.extension(), "--as-of", &position.to_string(), "--database-url", url])
        .arg("--output")
        .arg(&path)
        .env("TECHMARKET_ENV", "development")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start techmarket export")?;
    let pid = child.id();
    let mut peak = None;
    let status = loop {
        if let Some(hwm) = pid.and_then(|pid| status_kib(&format!("/proc/{pid}/status"), "VmHWM:")) {
            peak = Some(hwm * 1024);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let _ = std::fs::remove_file(&path);
    let peak_rss = if status.success() { peak } else { None };
    Ok(ExportRun { format: format.extension(), secs, lines: outcome.lines, rows: outcome.rows, bytes, peak_rss })
}

/// A `kB` field of a `/proc/<pid>/status` file, in KiB.
fn status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()
}

async fn engine_version(url: &str) -> anyhow::Result<String> {
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        let v: String = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(&mut c).await?;
        Ok(format!("SQLite {v}"))
    } else {
        let mut c = sqlx::PgConnection::connect(url).await?;
        let v: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut c).await?;
        Ok(format!("PostgreSQL {v}"))
    }
}

/// Reads every stored row page by page as `verify_chain` does, timing separately the reading,
/// the hashing and the decoding: where verification (and replay) time goes.
async fn scan(store: &Store, head: i64) -> anyhow::Result<(f64, f64, f64)> {
    let progress = bar(head as u64, "scanning");
    let (mut read, mut hash, mut decode) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut previous = GENESIS;
    let mut after = 0;
    let mut rows_total = 0usize;
    loop {
        let t = Instant::now();
        let rows: Vec<StoredEvent> = store.read_stored_after(after, 5_000).await?;
        read += t.elapsed();
        let Some(last) = rows.last() else { break };
        after = last.position;
        let t = Instant::now();
        for r in &rows {
            previous = event_hash(
                &previous,
                &ChainedFields {
                    position: r.position,
                    stream_id: &r.stream_id,
                    stream_version: r.stream_version,
                    event_type: &r.event_type,
                    schema_version: r.schema_version,
                    payload: &r.payload,
                    metadata: &r.metadata,
                    recorded_at_micros: r.recorded_at.timestamp_micros(),
                },
            );
        }
        hash += t.elapsed();
        let t = Instant::now();
        for r in &rows {
            std::hint::black_box(r.decode()?);
        }
        decode += t.elapsed();
        rows_total += rows.len();
        progress.set_position(after as u64);
    }
    progress.finish_and_clear();
    let n = rows_total as f64;
    let rate = |d: Duration| n / d.as_secs_f64().max(1e-9);
    Ok((rate(read), rate(hash), rate(decode)))
}

/// `callers` concurrent callers recording 0.01-yuan payments through `Ledger::execute` for
/// `duration`, each on the next payable contract.
async fn append_phase(
    ledger: &Ledger,
    payable: &Arc<Vec<ContractId>>,
    next: &Arc<AtomicUsize>,
    callers: usize,
    duration: Duration,
    tag: &'static str,
    settled_at: DateTime<Utc>,
) -> LoadResult {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..callers {
        let (ledger, payable, next) = (ledger.clone(), payable.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let ctx = CommandContext {
                actor: Actor {
                    user_id: format!("bench-registrar-{c}"),
                    role: Role::Registrar,
                    organisation_id: None,
                    broker_id: None,
                },
                request_id: None,
                idempotency_key: None,
            };
            let mut part = LoadResult::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let command = Command::RecordPayment(RecordPayment {
                    contract_id: payable[i % payable.len()],
                    payment_id: PaymentId(uuid::Uuid::now_v7()),
                    amount: Money::from_fen(1),
                    settled_at,
                    bank_reference: format!("BENCH-{tag}-{i}"),
                });
                let t = Instant::now();
                match ledger.execute(&ctx, command, "").await {
                    Ok(_) => part.succeeded(t.elapsed()),
                    Err(e) => part.failed(e),
                }
            }
            part
        }));
    }
    LoadResult::join(tasks, start).await
}

/// The ceiling of the append phases: the rows they appended, inserted again with plain
/// multi-row INSERTs (1,000 rows per statement, each statement its own durable transaction)
/// into a table shaped like `events` (same columns, keys and checks; no triggers), repeated
/// until at least `min_time` has been spent inserting; then the same rows one per statement
/// (each committed) for half that time. Returns (rows per round, rows/s, single-row rows/s,
/// the B-tree entries a row of that table adds: the table's own and one per index).
async fn ceiling_insert(
    store: &Store,
    url: &str,
    after: i64,
    upto: i64,
    min_time: Duration,
) -> anyhow::Result<(usize, f64, f64, u32)> {
    let mut rows: Vec<StoredEvent> = Vec::new();
    let mut from = after;
    while from < upto {
        let page = store.read_stored_after(from, 5_000).await?;
        let Some(last) = page.last() else { break };
        from = last.position;
        rows.extend(page.into_iter().filter(|r| r.position <= upto));
    }
    if rows.is_empty() {
        return Ok((0, f64::NAN, f64::NAN, 0));
    }
    const PER_STATEMENT: usize = 1_000;
    // `?` on SQLite: binding thousands of `$n` parameters is quadratic there.
    let numbered = !url.starts_with("sqlite:");
    let insert = |n: usize| {
        let mut sql = String::from(
            "INSERT INTO bench_ceiling_events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, hash) VALUES ",
        );
        for r in 0..n {
            if r > 0 {
                sql.push_str(", ");
            }
            let p: Vec<String> =
                (1..=9).map(|c| if numbered { format!("${}", r * 9 + c) } else { "?".to_owned() }).collect();
            let _ = write!(sql, "({})", p.join(", "));
        }
        sql
    };
    let full: Arc<str> = insert(PER_STATEMENT).into();
    let min_time = min_time.min(Duration::from_secs(3)).max(Duration::from_millis(500));
    macro_rules! rounds {
        ($conn:expr, $create:expr, $indexes:expr) => {{
            let conn = $conn;
            sqlx::raw_sql(sqlx::AssertSqlSafe($create)).execute(&mut *conn).await?;
            let mut timed = Duration::ZERO;
            let mut inserted = 0usize;
            while timed < min_time {
                sqlx::query("DELETE FROM bench_ceiling_events").execute(&mut *conn).await?;
                let t = Instant::now();
                for chunk in rows.chunks(PER_STATEMENT) {
                    let sql: Arc<str> =
                        if chunk.len() == PER_STATEMENT { full.clone() } else { insert(chunk.len()).into() };
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for r in chunk {
                        q = q
                            .bind(r.position)
                            .bind(r.stream_id.as_str())
                            .bind(r.stream_version)
                            .bind(r.event_type.as_str())
                            .bind(r.schema_version)
                            .bind(r.payload.as_str())
                            .bind(r.metadata.as_str())
                            .bind(r.recorded_at)
                            .bind(r.hash.as_slice());
                    }
                    q.execute(&mut *conn).await?;
                }
                timed += t.elapsed();
                inserted += rows.len();
            }
            let multi = inserted as f64 / timed.as_secs_f64();
            // The same rows one per statement, each its own durable transaction: the cost of
            // a commit, which one-command-one-transaction appends pay per event.
            sqlx::query("DELETE FROM bench_ceiling_events").execute(&mut *conn).await?;
            let single_sql: Arc<str> = insert(1).into();
            let t = Instant::now();
            let mut singles = 0usize;
            for r in &rows {
                if t.elapsed() >= min_time / 2 {
                    break;
                }
                sqlx::query(sqlx::AssertSqlSafe(single_sql.clone()))
                    .bind(r.position)
                    .bind(r.stream_id.as_str())
                    .bind(r.stream_version)
                    .bind(r.event_type.as_str())
                    .bind(r.schema_version)
                    .bind(r.payload.as_str())
                    .bind(r.metadata.as_str())
                    .bind(r.recorded_at)
                    .bind(r.hash.as_slice())
                    .execute(&mut *conn)
                    .await?;
                singles += 1;
            }
            let single = singles as f64 / t.elapsed().as_secs_f64();
            let indexes: i64 = sqlx::query_scalar($indexes).bind("bench_ceiling_events").fetch_one(&mut *conn).await?;
            sqlx::query("DROP TABLE bench_ceiling_events").execute(&mut *conn).await?;
            (multi, single, entries_per_row(indexes))
        }};
    }
    let (rate, single, entries) = if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let mut c = sqlx::SqliteConnection::connect_with(&options).await?;
        rounds!(
            &mut c,
            "CREATE TABLE bench_ceiling_events (
                position        INTEGER     PRIMARY KEY CHECK (position > 0),
                stream_id       TEXT        NOT NULL,
                stream_version  INTEGER     NOT NULL CHECK (stream_version > 0),
                event_type      TEXT        NOT NULL,
                schema_version  INTEGER     NOT NULL CHECK (schema_version > 0),
                payload         TEXT        NOT NULL,
                metadata        TEXT        NOT NULL,
                recorded_at     TEXT        NOT NULL,
                hash            BLOB        NOT NULL CHECK (length(hash) = 32),
                UNIQUE (stream_id, stream_version))",
            SQLITE_INDEXES
        )
    } else {
        let mut c = sqlx::PgConnection::connect(url).await?;
        rounds!(&mut c, "CREATE TABLE bench_ceiling_events (LIKE events INCLUDING ALL)", POSTGRES_INDEXES)
    };
    Ok((rows.len(), rate, single, entries))
}

/// Starts `techmarket serve` on the database, then runs the GraphQL and /health phases.
async fn http_phases(
    config: &Config,
    url: &str,
    payable: &Arc<Vec<ContractId>>,
    next: &Arc<AtomicUsize>,
    settled_at: DateTime<Utc>,
    report: &mut EngineReport,
) -> anyhow::Result<()> {
    let server_log = config.work_dir.join(format!("server-{}.log", report.name.to_lowercase()));
    let mut server = Server::start(&config.server_exe, url, &server_log).await?;
    let addr = server.addr;
    let token = crate::auth::TokenKeys::from_secret(crate::config::DEVELOPMENT_JWT_SECRET.as_bytes()).issue(
        &Actor { user_id: "bench-registrar".into(), role: Role::Registrar, organisation_id: None, broker_id: None },
        chrono::Duration::hours(2),
    );
    let settled = settled_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (payable, next) = (payable.clone(), next.clone());
    let graphql: RequestFn = Arc::new(move |n| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            r#"{{"query":"mutation($input: RecordPaymentInput!) {{ recordPayment(input: $input) {{ lastPosition }} }}","variables":{{"input":{{"contractId":"{}","amount":"0.01","settledAt":"{settled}","bankReference":"BENCH-H-{i}-{n}"}}}}}}"#,
            payable[i % payable.len()].0
        );
        format!(
            "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/graphql-response+json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let no_errors: CheckFn = Arc::new(|body: &[u8]| !body.windows(9).any(|w| w == b"\"errors\":"));
    // The first mutation after start waits for the server's fold of the whole log into its
    // policy cache (started at launch, in the background).
    let t = Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(1800), single_request(addr, &graphql(u64::MAX))).await;
    report.first_mutation_secs = t.elapsed().as_secs_f64();
    match first {
        Ok(Ok((200, body))) if no_errors(&body) => {}
        other => {
            server.stop().await;
            bail!("the first recordPayment over HTTP failed: {other:?}");
        }
    }
    report.graphql = run_load(addr, config.connections, config.phase, graphql, no_errors).await;
    eprintln!(
        "GraphQL recordPayment: {:.0} rps, p50 {:.1} ms, p99 {:.1} ms (errors {}) {}",
        report.graphql.rps(),
        report.graphql.quantile_ms(0.5),
        report.graphql.quantile_ms(0.99),
        report.graphql.errors,
        report.graphql.first_error.as_deref().unwrap_or("")
    );
    let health: RequestFn = Arc::new(move |_| format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes());
    let ok: CheckFn = Arc::new(|body: &[u8]| body.windows(4).any(|w| w == b"\"ok\""));
    report.health = run_load(addr, config.connections, config.phase, health, ok).await;
    eprintln!(
        "/health: {:.0} rps, p50 {:.1} ms, p99 {:.1} ms",
        report.health.rps(),
        report.health.quantile_ms(0.5),
        report.health.quantile_ms(0.99)
    );
    server.stop().await;
    Ok(())
}

/// A `techmarket serve` child process on 127.0.0.1 and a free port.
struct Server {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Server {
    async fn start(exe: &Path, url: &str, log: &Path) -> anyhow::Result<Server> {
        let log_file = std::fs::File::create(log)?;
        let mut child = tokio::process::Command::new(exe)
            .args(["serve", "--database-url", url, "--bind", "127.0.0.1:0"])
            .env("TECHMARKET_ENV", "development")
            // The load comes from one token: the per-caller rate limit (1,000/s by default)
            // would measure the limiter, not the server.
            .env("TECHMARKET_RATE_PER_SECOND", "10000000")
            .env("TECHMARKET_RATE_BURST", "10000000")
            .env_remove("TECHMARKET_JWT_SECRET")
            .env_remove("TECHMARKET_BIND")
            .env_remove("TECHMARKET_WORKERS")
            .env_remove("TECHMARKET_DB_CONNECTIONS_MAX")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    return Ok::<_, anyhow::Error>(rest.trim().parse::<SocketAddr>()?);
                }
            }
            bail!("the server exited before it listened (see {})", log.display())
        })
        .await
        .context("the server did not start within 120 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, addr })
    }

    /// SIGTERM, then SIGKILL after 10 s.
    async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The machine and the report

struct Machine {
    cores: usize,
    cpu: String,
    memory: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(|| "unknown".into(), |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0));
        Machine { cores: std::thread::available_parallelism().map_or(0, |n| n.get()), cpu, memory }
    }
}

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    status_kib("/proc/self/status", "VmHWM:").map(|kib| kib * 1024)
}

/// 1234567.8 -> "1,234,568".
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn secs(x: f64) -> String {
    if x < 10.0 { format!("{x:.2} s") } else { format!("{x:.1} s") }
}

fn percent(part: f64, whole: f64) -> String {
    if !part.is_finite() || !whole.is_finite() || whole <= 0.0 {
        return "n/a".into();
    }
    let p = part / whole * 100.0;
    if p < 1.0 { format!("{p:.2} %") } else { format!("{p:.0} %") }
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn render(config: &Config, machine: &Machine, common: &Common, reports: &[EngineReport], total: Duration) -> String {
    let mut out = String::new();
    let s = &common.stats;
    let national = common.national_events;
    let scale = common.events as f64 / national;
    let measured_national = config.contracts >= NATIONAL_CONTRACTS;
    let extrapolated = |secs_measured: f64| secs_measured / scale;
    let _ = writeln!(
        out,
        "# techmarket bench{}",
        if config.quick { " (--quick: smoke run, figures not meaningful)" } else { "" }
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "- command: `techmarket {}`", config.command_line);
    let _ = writeln!(out, "- date: {}", Utc::now().format("%Y-%m-%d %H:%M UTC"));
    let _ = writeln!(out, "- machine: {} cores ({}), {} RAM", machine.cores, machine.cpu, machine.memory);
    let _ = writeln!(
        out,
        "- data: {} contracts over {} year(s) from {} (seed {}): {} events ({} organisations, {} achievements, {} demands, {} matches, {} registered contracts, {} payments, {} reversals), generated through the domain rules in {} ({} commands/s); peak memory of the process after generating: {}",
        thousands(s.contracts_signed as f64),
        config.years,
        config.first_year,
        config.seed,
        thousands(common.events as f64),
        thousands(s.organisations as f64),
        thousands(s.achievements as f64),
        thousands(s.demands as f64),
        thousands(s.matches as f64),
        thousands(s.contracts_registered as f64),
        thousands(s.payments as f64),
        thousands(s.reversals as f64),
        secs(common.generate_secs),
        thousands(s.commands as f64 / common.generate_secs.max(1e-9)),
        common.peak_rss_after_generate.map_or("n/a".into(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)),
    );
    let _ = writeln!(
        out,
        "- a national year (1,000,000 contracts) at this data's {:.2} events per contract is about {} events{}",
        common.events as f64 / s.contracts_signed.max(1) as f64,
        thousands(national),
        if measured_national {
            ""
        } else {
            "; rows marked *extrapolated* scale the time measured here linearly by event count"
        }
    );
    let _ = writeln!(out, "- phases: {} s each; whole run {}", config.phase.as_secs_f64(), secs(total.as_secs_f64()));
    for r in reports {
        let _ = writeln!(out);
        let _ = writeln!(out, "## {} ({})", r.name, r.version);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| # | measurement | result | ceiling (same run, same database) | result / ceiling | target | met? |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        let ceiling = format!(
            "plain multi-row INSERT of the same {} rows (1,000 per statement, each committed): {} rows/s (one row per commit: {} rows/s)",
            thousands(r.ceiling_rows as f64),
            thousands(r.ceiling_rate),
            thousands(r.single_row_rate)
        );
        let max_callers = r.appends.iter().map(|(c, _, _)| *c).max().unwrap_or(0);
        for (callers, a, batches) in &r.appends {
            let (target, ok) = if *callers == max_callers && *callers >= 64 {
                ("≥ 50,000 events/s".to_owned(), met(a.rps() >= 50_000.0 && a.errors == 0).to_owned())
            } else {
                ("—".to_owned(), String::new())
            };
            let _ = writeln!(
                out,
                "| 1 | append: single-event commands (`recordPayment`) through `Ledger::execute`, {callers} concurrent caller{} | {} events/s (p50 {:.1} ms, p99 {:.1} ms{}; {}) | {ceiling} | {} | {target} | {ok} |",
                if *callers == 1 { "" } else { "s" },
                thousands(a.rps()),
                a.quantile_ms(0.5),
                a.quantile_ms(0.99),
                if a.errors > 0 { format!(", {} errors", a.errors) } else { String::new() },
                describe_batches(*batches),
                percent(a.rps(), r.ceiling_rate),
            );
        }
        let g = &r.graphql;
        let h = &r.health;
        let _ = writeln!(
            out,
            "| 2 | GraphQL `recordPayment` mutations over HTTP, {} connections | {} rps, p50 {:.1} ms, p99 {:.1} ms{} | `GET /health` on the same server: {} rps (p50 {:.1} ms, p99 {:.1} ms) | {} | ≥ 30 % of /health rps and p99 ≤ 20 ms | {} |",
            config.connections,
            thousands(g.rps()),
            g.quantile_ms(0.5),
            g.quantile_ms(0.99),
            if g.errors > 0 { format!(", {} errors", g.errors) } else { String::new() },
            thousands(h.rps()),
            h.quantile_ms(0.5),
            h.quantile_ms(0.99),
            percent(g.rps(), h.rps()),
            met(g.rps() >= 0.3 * h.rps() && g.quantile_ms(0.99) <= 20.0 && g.errors == 0),
        );
        let rebuild_rate = common.events as f64 / r.rebuild_secs.max(1e-9);
        let rebuild_national = extrapolated(r.rebuild_secs);
        let _ = writeln!(
            out,
            "| 3 | projection rebuild (`rebuild_projections`: read models + policy projections) | {} events/s ({} events in {}); national year: {} | pure in-memory fold (`Projections::apply`): {} events/s | {} | national year ≤ 30 s | {} |",
            thousands(rebuild_rate),
            thousands(common.events as f64),
            secs(r.rebuild_secs),
            if measured_national { secs(r.rebuild_secs) } else { format!("{} *extrapolated*", secs(rebuild_national)) },
            thousands(common.fold_rate()),
            percent(rebuild_rate, common.fold_rate()),
            met(rebuild_national <= 30.0),
        );
        let _ = writeln!(
            out,
            "| 3 | pure in-memory fold of the same events | {} events/s (median of {} runs: {}) | — | — | ≥ 1,000,000 events/s | {} |",
            thousands(common.fold_rate()),
            common.fold_runs.len(),
            common.fold_runs.iter().map(|r| thousands(*r)).collect::<Vec<_>>().join(", "),
            met(common.fold_rate() >= 1_000_000.0),
        );
        let replay_national =
            extrapolated(r.replay_secs) * (common.events as f64 / common.first_year_end.max(1) as f64);
        let _ = writeln!(
            out,
            "| 4 | completer statement {} as of position {} (end of that year), replayed from the log | {} ({} lines); national year: {} | the same statement at the head, from the tables: {} ({} lines) | {} | national year ≤ 5 s | {} |",
            config.first_year,
            thousands(common.first_year_end as f64),
            secs(r.replay_secs),
            thousands(r.replay_lines as f64),
            if measured_national { secs(r.replay_secs) } else { format!("{} *extrapolated*", secs(replay_national)) },
            secs(r.head_secs),
            thousands(r.head_lines as f64),
            percent(r.head_secs, r.replay_secs),
            met(replay_national <= 5.0),
        );
        let _ = writeln!(
            out,
            "| 4 | completer statement {} at the head, from the tables | {} ({} lines) | — | — | — | |",
            config.first_year,
            secs(r.head_secs),
            thousands(r.head_lines as f64),
        );
        for (half, whole) in &r.exports {
            let (limit, name) = if whole.format == "csv" { (3.0, "CSV") } else { (15.0, "XLSX") };
            let national = whole.secs * 1_000_000.0 / whole.lines.max(1) as f64;
            let mib =
                |b: Option<u64>| b.map_or("n/a".to_owned(), |b| format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64));
            // Flat: the whole year takes at most 20 % (and 16 MiB) more memory than half of it.
            let flat = match (half.peak_rss, whole.peak_rss) {
                (Some(h), Some(w)) => w as f64 <= h as f64 * 1.2 + 16.0 * (1u64 << 20) as f64,
                _ => false,
            };
            let _ = writeln!(
                out,
                "| 5 | {name} export of the completer subsidy statement {} (`api::export::export` to a file; peak memory of `techmarket export` doing the same in its own process) | {} lines ({} rows, {:.1} MB) in {}, peak RSS {}; 1,000,000 lines: {} *extrapolated* | the same export as of the middle of the year: {} lines in {}, peak RSS {} | {} | {name} of 1,000,000 lines ≤ {limit:.0} s, memory flat | {} |",
                config.first_year,
                thousands(whole.lines as f64),
                thousands(whole.rows as f64),
                whole.bytes as f64 / 1e6,
                secs(whole.secs),
                mib(whole.peak_rss),
                secs(national),
                thousands(half.lines as f64),
                secs(half.secs),
                mib(half.peak_rss),
                percent(half.secs, whole.secs),
                met(national <= limit && flat),
            );
        }
        if r.exports.is_empty() {
            let _ = writeln!(
                out,
                "| 5 | CSV and XLSX export of a year with 1,000,000 lines: time and peak memory | pending: exports not built yet | — | — | XLSX ≤ 15 s, CSV ≤ 3 s, memory flat | pending |"
            );
        }
        let verify_rate = common.events as f64 / r.verify_secs.max(1e-9);
        let _ = writeln!(
            out,
            "| 6 | hash-chain verification (`verify_chain`) | {} events/s ({} events in {}) | hashing the same rows in memory, on one core: {} events/s (reading them page by page through sqlx: {} rows/s; decoding them: {} events/s) | {} | ≥ 1,000,000 events/s | {} |",
            thousands(verify_rate),
            thousands(common.events as f64),
            secs(r.verify_secs),
            thousands(r.hash_rate),
            thousands(r.read_rate),
            thousands(r.decode_rate),
            percent(verify_rate, r.hash_rate),
            met(verify_rate >= 1_000_000.0),
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Also measured: bulk import (`Store::import_events`, how the data got in) {} events/s ({}); the server's first `recordPayment` after start took {} (it waits for the fold of the whole log into the policy cache, which the server starts in the background at launch, outside the append lock).",
            thousands(common.events as f64 / r.import_secs.max(1e-9)),
            secs(r.import_secs),
            secs(r.first_mutation_secs),
        );
        let _ = writeln!(out, "{}", describe_written(&r.written, r.ceiling_rate, r.ceiling_entries));
        for n in &r.notes {
            let _ = writeln!(out, "{n}");
        }
        let errors: Vec<String> = r
            .appends
            .iter()
            .filter_map(|(c, a, _)| a.first_error.as_ref().map(|e| format!("append with {c} callers: {e}")))
            .chain(r.graphql.first_error.iter().map(|e| format!("GraphQL: {e}")))
            .chain(r.health.first_error.iter().map(|e| format!("/health: {e}")))
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "First errors: {}", errors.join("; "));
        }
    }
    out
}
