//! Demo and benchmark data, and the benchmark (issue 7, "fast at national scale"):
//! `techmarket generate` fills a database with a realistic market, `techmarket bench`
//! measures the ledger on it (see BENCHMARKS.md).
//!
//! - [`generate`]: the market generator (every command decided by the real domain rules);
//! - [`run`]: the benchmark command and its report;
//! - [`http_load`]: the closed-loop HTTP load generator the benchmark uses.

pub mod generate;
pub mod http_load;
pub mod run;
mod written;

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use ledger::service::{CommandContext, Ledger};
use ledger::store::Store;

use crate::config::DatabaseArgs;
pub use generate::{GenerateOptions, GenerateStats, GeneratedLog, Generator, Step, generate_log};
pub use run::{BenchArgs, bench_command};

/// How `techmarket generate` writes the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Decide every command in memory with the domain rules, write the events with the bulk
    /// import path (`Store::import_events`: the same rows and hashes the command path writes
    /// for the same recording instants), then rebuild the read models. Fast.
    Import,
    /// Send every command through the ledger's command path (`Ledger::execute`), one
    /// transaction each. Slow; recording instants are the clock's, not the simulated ones.
    Commands,
}

/// Fills an empty database with a generated market.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Contracts signed over the whole period (Chongqing registers about 7,000-10,000 a year,
    /// China about 1,000,000).
    #[arg(long, default_value_t = 10_000)]
    pub contracts: u64,

    /// Calendar years the contracts are spread over.
    #[arg(long, default_value_t = 1)]
    pub years: u32,

    /// First calendar year (Asia/Shanghai).
    #[arg(long, default_value_t = 2024)]
    pub first_year: i32,

    /// Seed of the generator: the same seed gives the same commands, ids and events.
    #[arg(long, default_value_t = 20_240_101)]
    pub seed: u64,

    /// How the data is written: `import` (bulk, then rebuild) or `commands` (the command path).
    #[arg(long, value_enum, default_value_t = Via::Import)]
    pub via: Via,
}

/// `techmarket generate`.
pub async fn generate_command(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let store =
        Store::connect(&args.database.database_url, &args.database.store_options()).await.with_context(|| {
            format!("cannot open the database at {}", crate::startup::redact(&args.database.database_url))
        })?;
    store.migrate().await.context("cannot apply the database migrations")?;
    if let Some((head, _)) = store.head().await? {
        bail!("the database already holds {head} events: generate into an empty database");
    }
    let options = GenerateOptions {
        contracts: args.contracts,
        years: args.years,
        first_year: args.first_year,
        seed: args.seed,
        recorded_at: None,
    };
    let started = std::time::Instant::now();
    let stats = match args.via {
        Via::Import => {
            let progress = progress_bar(args.contracts, "generating");
            let generated = {
                let progress = progress.clone();
                tokio::task::spawn_blocking(move || {
                    generate_log(&options, |s| progress.set_position(s.contracts_signed))
                })
                .await?
            };
            progress.finish_and_clear();
            let events = generated.events;
            let progress = progress_bar(events.len() as u64, "importing");
            store.import_events_with_progress(&events, |n| progress.set_position(n as u64)).await?;
            progress.finish_and_clear();
            drop(events);
            let progress = progress_bar(generated.stats.events, "rebuilding");
            store.rebuild_projections(|p| progress.set_position(p as u64)).await?;
            progress.finish_and_clear();
            generated.stats
        }
        Via::Commands => {
            let ledger = Ledger::new(store.clone());
            let mut generator = Generator::new(options);
            let progress = progress_bar(args.contracts, "generating");
            while let Some(step) = generator.next_step() {
                let ctx = CommandContext { actor: step.actor, request_id: None, idempotency_key: None };
                let name = step.command.name();
                ledger.execute(&ctx, step.command, "").await.with_context(|| format!("{name} was refused"))?;
                progress.set_position(generator.stats.contracts_signed);
            }
            progress.finish_and_clear();
            generator.stats
        }
    };
    if stats.refused > 0 {
        bail!("the generator made {} commands the domain refused (first: {:?})", stats.refused, stats.first_refusal);
    }
    println!(
        "generated {} events in {:.1} s: {} organisations, {} achievements, {} demands, {} matches, {} contracts ({} registered), {} payments, {} reversals",
        stats.events,
        started.elapsed().as_secs_f64(),
        stats.organisations,
        stats.achievements,
        stats.demands,
        stats.matches,
        stats.contracts_signed,
        stats.contracts_registered,
        stats.payments,
        stats.reversals
    );
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(len: u64, message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(message.to_owned());
    bar
}
