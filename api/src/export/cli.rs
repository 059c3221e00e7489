//! `techmarket export`: a statement to a file (or standard output), with a progress bar on a
//! terminal when it runs long. Reads the database and the keys from the same flags and
//! environment as `serve`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, FixedOffset, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger::reports::AsOfRequest;
use ledger::service::Ledger;
use ledger::store::Store;

use super::{ExportRequest, Format, IdNumbers, Lang, Progress, Statement, YEARS};
use crate::config::{DatabaseArgs, SecurityArgs};
use crate::startup::redact;

/// Writes a finance statement of a year as CSV or XLSX.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The statement: completer-subsidy, operating-center-incentive or turnover.
    #[arg(value_enum)]
    pub statement: Statement,

    /// The calendar year (Asia/Shanghai) whose lines the statement holds.
    #[arg(long, value_parser = clap::value_parser!(i32).range(i64::from(*YEARS.start())..=i64::from(*YEARS.end())))]
    pub year: i32,

    /// csv or xlsx (default: from the --output file's extension, else xlsx).
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Compute the statement as of this ledger position (default: the head).
    #[arg(long, conflicts_with = "as_of_time", value_parser = clap::value_parser!(i64).range(0..))]
    pub as_of: Option<i64>,

    /// Compute the statement as of the last position recorded at or before this instant
    /// (RFC 3339, e.g. 2025-01-01T00:00:00+08:00).
    #[arg(long, value_parser = parse_instant)]
    pub as_of_time: Option<DateTime<Utc>>,

    /// Headers and labels in zh (Chinese) or en (English).
    #[arg(long, value_enum, default_value_t = Lang::Zh)]
    pub lang: Lang,

    /// Completers' ID numbers: masked, or full (finance only; needs TECHMARKET_PII_KEY).
    #[arg(long, value_enum, default_value_t = IdNumbers::Masked)]
    pub id_numbers: IdNumbers,

    /// The file to write (`-` for standard output). Default: <statement>-<year>.<format> in
    /// the current directory. Written under a temporary name and renamed when complete.
    #[arg(long, short)]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub security: SecurityArgs,
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::<FixedOffset>::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{text}` is not an RFC 3339 instant ({e})"))
}

/// A bar on standard error that shows up only once the export has run for a second (and
/// only on a terminal: indicatif hides it otherwise).
struct Bar {
    bar: ProgressBar,
    started: Instant,
    shown: AtomicBool,
}

impl Bar {
    fn new() -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} lines ({per_sec}, eta {eta})",
            )
            .expect("a valid template"),
        );
        bar.set_message("exporting");
        Bar { bar, started: Instant::now(), shown: AtomicBool::new(false) }
    }

    fn show_when_long(&self) {
        if self.started.elapsed() >= Duration::from_secs(1) && !self.shown.swap(true, Ordering::Relaxed) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}

impl Progress for Bar {
    fn lines(&self, done: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.show_when_long();
    }

    fn finishing(&self) {
        self.bar.set_message("finishing");
        self.show_when_long();
    }
}

/// `techmarket export`.
pub async fn export_command(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let format = args
        .format
        .or_else(|| args.output.as_deref().and_then(|p| p.extension()).and_then(|e| e.to_str()).and_then(Format::parse))
        .unwrap_or(Format::Xlsx);
    let request = ExportRequest {
        statement: args.statement,
        year: args.year,
        format,
        lang: args.lang,
        id_numbers: args.id_numbers,
    };
    let key = match args.id_numbers {
        IdNumbers::Masked => None,
        IdNumbers::Full => {
            let (key, development) = args.security.personal_data_key()?;
            if development {
                eprintln!("note: opening ID numbers with the development key (TECHMARKET_PII_KEY is not set)");
            }
            Some(key)
        }
    };
    let store = Store::connect(&args.database.database_url, &args.database.store_options())
        .await
        .with_context(|| format!("cannot open the database at {}", redact(&args.database.database_url)))?;
    store.migrate().await.context("cannot apply the database migrations")?;
    let ledger = Ledger::new(store);
    let as_of_request = match (args.as_of, args.as_of_time) {
        (Some(p), _) => AsOfRequest::Position(p),
        (None, Some(t)) => AsOfRequest::Time(t),
        (None, None) => AsOfRequest::Head,
    };
    let as_of = ledger.resolve_as_of(as_of_request).await.context("--as-of")?;
    let requested = (as_of_request != AsOfRequest::Head).then_some(as_of.position);
    let output = args.output.clone().unwrap_or_else(|| PathBuf::from(request.file_name(requested)));
    let bar = Bar::new();

    let outcome = if output.as_os_str() == "-" {
        let out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
        super::export(&ledger, key.as_ref(), &request, as_of, out, &bar).await?
    } else {
        let partial = partial_path(&output);
        let file = std::fs::File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
        let out = std::io::BufWriter::with_capacity(64 * 1024, file);
        match super::export(&ledger, key.as_ref(), &request, as_of, out, &bar).await {
            Ok(outcome) => {
                std::fs::rename(&partial, &output)
                    .with_context(|| format!("cannot rename {} to {}", partial.display(), output.display()))?;
                outcome
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                bail!("the export failed, nothing was written to {}: {e}", output.display());
            }
        }
    };
    bar.bar.finish_and_clear();
    let target = if output.as_os_str() == "-" { "standard output".to_owned() } else { output.display().to_string() };
    eprintln!(
        "wrote {target}: {} {}, {} lines, {} rows, as of ledger position {} (hash {})",
        request.statement.slug(),
        request.year,
        outcome.lines,
        outcome.rows,
        outcome.as_of.position,
        outcome.as_of.hash
    );
    std::io::stderr().flush().ok();
    Ok(ExitCode::SUCCESS)
}

/// `dir/name.xlsx` -> `dir/.name.xlsx.partial`.
fn partial_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export".to_owned());
    output.with_file_name(format!(".{name}.partial"))
}
