//! `techmarket`: the technology-transfer ledger's command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use api::auth::TokenKeys;
use api::config::{DatabaseArgs, SecurityArgs, ServeArgs};
use api::startup::{Application, redact};
use clap::{Parser, Subcommand};
use ledger::ids::{BrokerId, OrganisationId};
use ledger::store::Store;
use ledger::{Actor, Role};
use uuid::Uuid;

/// mimalloc instead of glibc's malloc: replays, imports and the generator make many small,
/// short-lived allocations (events decoded, folded and dropped), which mimalloc serves faster.
/// Version 2 without transparent huge pages (the `v2` and `no_thp` features): with the default
/// version 3 an export's peak memory varied by up to 18 MiB from run to run and grew by up to
/// 20 MiB from 100,000 to 200,000 rows, with or without huge pages, and memory flat in the
/// number of lines is a target (BENCHMARKS.md, thirteenth and fourteenth stops).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Chongqing technology-transfer marketplace and its subsidy ledger.
///
/// Every setting can also come from the environment variable named in `--help`.
#[derive(Parser)]
#[command(name = "techmarket", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the GraphQL server (migrates the database first). GraphiQL: open /graphql in a browser.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Recompute the event log's hash chain; exit 1 at the first broken position.
    VerifyLedger(DatabaseArgs),
    /// Recompute every read model from the event log.
    RebuildProjections(DatabaseArgs),
    /// Write the GraphQL schema (SDL) to a file, or check that the file is current.
    PrintSchema(PrintSchemaArgs),
    /// Issue a bearer token (for administrators and local development).
    IssueToken(IssueTokenArgs),
    /// Fill an empty database with a generated market (demo and benchmark data).
    Generate(api::bench::GenerateArgs),
    /// Measure the ledger at scale on SQLite and PostgreSQL; print a markdown table (BENCHMARKS.md).
    Bench(api::bench::BenchArgs),
    /// Write a finance statement of a year (completer subsidy, operating-center incentive,
    /// turnover) as CSV or XLSX, as of any ledger position.
    Export(api::export::ExportArgs),
}

#[derive(clap::Args)]
struct PrintSchemaArgs {
    /// Where to write the SDL (`-` for standard output).
    #[arg(long, default_value = "schema.graphql")]
    output: PathBuf,
    /// Do not write: exit 1 if the file differs from the live schema.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args)]
struct IssueTokenArgs {
    /// research_institution, enterprise, broker, operating_center, registrar, finance or admin.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// The user the token names (its subject).
    #[arg(long, default_value = "dev-user")]
    user: String,
    /// The organisation the user acts for.
    #[arg(long)]
    organisation: Option<Uuid>,
    /// For brokers: the registered broker the user is.
    #[arg(long)]
    broker: Option<Uuid>,
    /// How long the token is valid, in hours.
    #[arg(long, default_value_t = 12)]
    hours: i64,
    #[command(flatten)]
    security: SecurityArgs,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        format!(
            "unknown role `{text}`; one of: {}",
            Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(args) => args.security.log_format(),
        _ => api::config::LogFormat::Text,
    };
    api::telemetry::init(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            let app = Application::build(&args).await?;
            let host = args.bind.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
            tracing::info!(database = %redact(&args.database.database_url), "ledger opened");
            println!("techmarket is serving on http://{host}:{}", app.port());
            if args.graphiql_enabled() {
                println!("GraphiQL: open http://{host}:{}/graphql in a browser", app.port());
            }
            std::io::stdout().flush().ok();
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(db) => {
            open(&db).await?;
            println!("migrations applied to {}", redact(&db.database_url));
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyLedger(db) => {
            let store = open(&db).await?;
            let head = store.head().await?.map_or(0, |(p, _)| p);
            let report = store
                .verify_chain(|p| {
                    if head > 0 {
                        eprint!("\rverifying: {p} / {head} events ({}%)", p * 100 / head);
                    }
                })
                .await?;
            eprintln!();
            match &report.first_break {
                None => {
                    println!(
                        "ledger intact: {} events verified, head position {} hash {}",
                        report.events_checked, report.head_position, report.head_hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    println!("ledger BROKEN at position {}: {}", b.position, b.problem);
                    println!(
                        "{} events before it verified (last good hash {})",
                        report.events_checked, report.head_hash
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::RebuildProjections(db) => {
            let store = open(&db).await?;
            let head = store.head().await?.map_or(0, |(p, _)| p);
            let report = store
                .rebuild_projections(|p| {
                    if head > 0 {
                        eprint!("\rrebuilding: {p} / {head} events ({}%)", p * 100 / head);
                    }
                })
                .await?;
            eprintln!();
            println!(
                "read models rebuilt from {} events (head position {})",
                report.events_replayed, report.head_position
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::PrintSchema(args) => {
            let sdl = api::graphql::sdl();
            if args.check {
                let current = std::fs::read_to_string(&args.output)
                    .with_context(|| format!("cannot read {}", args.output.display()))?;
                if current == sdl {
                    println!("{} is current", args.output.display());
                    return Ok(ExitCode::SUCCESS);
                }
                println!("{} differs from the live schema; run `techmarket print-schema`", args.output.display());
                return Ok(ExitCode::FAILURE);
            }
            if args.output.as_os_str() == "-" {
                print!("{sdl}");
            } else {
                std::fs::write(&args.output, &sdl)
                    .with_context(|| format!("cannot write {}", args.output.display()))?;
                println!("wrote {}", args.output.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::IssueToken(args) => {
            let (secret, development) = args.security.token_secret()?;
            if development {
                eprintln!("note: signed with the development secret; the server accepts it only in development mode");
            }
            let actor = Actor {
                user_id: args.user,
                role: args.role,
                organisation_id: args.organisation.map(OrganisationId),
                broker_id: args.broker.map(BrokerId),
            };
            println!("{}", TokenKeys::from_secret(&secret).issue(&actor, chrono::Duration::hours(args.hours)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => api::bench::generate_command(args).await,
        Command::Bench(args) => api::bench::bench_command(args).await,
        Command::Export(args) => api::export::export_command(args).await,
    }
}

async fn open(db: &DatabaseArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&db.database_url, &db.store_options())
        .await
        .with_context(|| format!("cannot open the database at {}", redact(&db.database_url)))?;
    store.migrate().await.context("cannot apply the database migrations")?;
    Ok(store)
}
