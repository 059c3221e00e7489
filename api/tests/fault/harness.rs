//! The machinery of the fault harness: the real `techmarket` server as a child process on a
//! fixed port of 127.0.0.1 (so clients can retry across restarts), a private throwaway
//! PostgreSQL instance (so restarting it never hits anybody else), a small GraphQL client,
//! tokens, fixtures and the summary line.

use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use api::auth::TokenKeys;
use api::config::DEVELOPMENT_JWT_SECRET;
use ledger::{Actor, Role};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long the server under test gives in-flight requests after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The server binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_techmarket");

/// A port of 127.0.0.1 that was free a moment ago (the listener is dropped so the server can
/// bind it, and bind it again after every restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// An integer setting from the environment (`FAULT_KILLS=30 cargo test ...`).
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// A scratch directory for one backend's run: databases and server logs. Removed when the
/// run passes, kept (and named) when it fails.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("techmarket-fault-{tag}-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "fault harness: kept {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The server process

/// The real server, spawned from the test binary's sibling `techmarket`, always on the same
/// port. Its output (both streams, all starts) goes to one log file.
pub struct Server {
    pub port: u16,
    pub database_url: String,
    pub log: PathBuf,
    child: Option<tokio::process::Child>,
    /// How many times it was started.
    pub starts: u32,
    /// `RUST_LOG` of the child (quiet by default).
    pub rust_log: String,
}

impl Server {
    pub fn new(database_url: &str, log: PathBuf) -> Server {
        Server {
            port: free_port(),
            database_url: database_url.to_owned(),
            log,
            child: None,
            starts: 0,
            rust_log: "warn".to_owned(),
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until `/health` answers 200.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the server log file");
        writeln!(&log, "---- start {} ----", self.starts + 1).ok();
        let child = tokio::process::Command::new(BIN)
            .arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--database-url")
            .arg(&self.database_url)
            .env("TECHMARKET_WORKERS", "2")
            .env("RUST_LOG", &self.rust_log)
            .env("TECHMARKET_SHUTDOWN_SECONDS", SHUTDOWN_TIMEOUT.as_secs().to_string())
            .env("TECHMARKET_ENV", "development")
            .env("TECHMARKET_LOG_FORMAT", "text")
            .env_remove("TECHMARKET_JWT_SECRET")
            .env_remove("TECHMARKET_BIND")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        self.child = Some(child);
        self.starts += 1;
        self.wait_healthy(Duration::from_secs(30)).await;
    }

    async fn wait_healthy(&mut self, limit: Duration) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client");
        let deadline = Instant::now() + limit;
        let url = format!("{}/health", self.base());
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().expect("started").try_wait().expect("poll the server") {
                self.child = None;
                panic!("the server exited during startup ({status}); its log ends:\n{}", tail(&self.log, 40));
            }
            assert!(
                Instant::now() < deadline,
                "the server did not answer /health within {limit:?}; its log ends:\n{}",
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("the server is running")
    }

    /// Whether the process is still alive (it has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// SIGKILL: no cleanup, no drain, exactly like a crash or the OOM killer.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        child.start_kill().expect("send SIGKILL");
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("a SIGKILLed server is gone within 10 s")
            .expect("wait for the server");
        assert_eq!(status.signal(), Some(9), "the server should have died of SIGKILL, not {status}");
    }

    /// SIGTERM: the server stops accepting and drains what is in flight.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit after a signal.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => {
                let _ = child.start_kill();
                panic!("the server did not exit within {limit:?}; its log ends:\n{}", tail(&self.log, 40));
            }
        }
    }

    /// SIGTERM and wait: the orderly end of a scenario; the server must exit 0.
    pub async fn stop(&mut self) {
        self.sigterm();
        let status = self.wait_exit(Duration::from_secs(20)).await;
        assert_eq!(status.code(), Some(0), "the server should exit 0 after SIGTERM, not {status}");
    }
}

// ---------------------------------------------------------------------------------------------
// GraphQL over HTTP

/// What a GraphQL request came back with.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `data`, no errors.
    Data(Value),
    /// An error with its `extensions.code` (and `rule`, for RULE_VIOLATED).
    Refused { code: String, rule: Option<String>, message: String },
    /// No complete GraphQL answer: connection refused or reset, timeout, a body that is not
    /// JSON. `connect` says the connection was never made (the request was not in flight).
    Transport { message: String, connect: bool },
}

pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(2)).build().expect("an HTTP client")
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// POSTs `{query, variables}` to `/graphql` with a bearer token.
pub async fn gql(client: &reqwest::Client, base: &str, token: &str, query: &str, variables: Value) -> Answer {
    let sent = client
        .post(format!("{base}/graphql"))
        .header("accept", "application/json")
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return Answer::Transport { message: describe(&e), connect: e.is_connect() },
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Answer::Transport { message: describe(&e), connect: false },
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Answer::Transport {
            message: format!("HTTP {status} with a body that is not JSON: {text}"),
            connect: false,
        };
    };
    if let Some(error) = value.get("errors").and_then(|e| e.get(0)) {
        return Answer::Refused {
            code: error["extensions"]["code"].as_str().unwrap_or("NO_CODE").to_owned(),
            rule: error["extensions"]["rule"].as_str().map(str::to_owned),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
        };
    }
    if !status.is_success() {
        return Answer::Transport { message: format!("HTTP {status}: {value}"), connect: false };
    }
    Answer::Data(value["data"].clone())
}

/// The data of an answer that must have succeeded (fixtures).
#[track_caller]
pub fn must(answer: Answer, what: &str) -> Value {
    match answer {
        Answer::Data(d) => d,
        other => panic!("{what} failed: {other:?}"),
    }
}

/// A bearer token signed with the development secret (the child server runs in development
/// mode, so it accepts it).
pub fn token(user: &str, role: Role) -> String {
    let actor = Actor { user_id: user.to_owned(), role, organisation_id: None, broker_id: None };
    TokenKeys::from_secret(DEVELOPMENT_JWT_SECRET.as_bytes()).issue(&actor, chrono::Duration::hours(2))
}

/// Fen as the API's decimal string: 1234 -> "12.34".
pub fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// A valid unified social credit code (GB 32100-2015 check character), distinct per `n`.
pub fn credit_code(n: u32) -> String {
    const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let body = format!("91500106{:09}", n);
    let sum: u32 = body.chars().zip(WEIGHTS).map(|(c, w)| ALPHABET.find(c).expect("in alphabet") as u32 * w).sum();
    let check = ALPHABET.as_bytes()[((31 - sum % 31) % 31) as usize] as char;
    format!("{body}{check}")
}

/// A seller, a buyer and the tokens to sign contracts between them.
pub struct Market {
    pub seller: Uuid,
    pub buyer: Uuid,
    pub registrar: String,
}

fn id_of(data: &Value, field: &str) -> Uuid {
    let id = data[field]["id"].as_str().unwrap_or_else(|| panic!("no id in {data}"));
    Uuid::parse_str(id).expect("a UUID")
}

/// Registers a university and an enterprise through the API.
pub async fn setup_market(base: &str) -> Market {
    let client = http_client(Duration::from_secs(30));
    let admin = token("fault-admin", Role::Admin);
    let mut ids = Vec::new();
    for (n, kind) in [(1, "UNIVERSITY"), (2, "ENTERPRISE")] {
        let data = must(
            gql(
                &client,
                base,
                &admin,
                "mutation($input: RegisterOrganisationInput!) { registerOrganisation(input: $input) { id } }",
                json!({ "input": { "name": format!("故障测试单位{n}"), "kind": kind,
                                    "creditCode": credit_code(n), "divisionCode": "500106" } }),
            )
            .await,
            "registerOrganisation",
        );
        ids.push(id_of(&data, "registerOrganisation"));
    }
    Market { seller: ids[0], buyer: ids[1], registrar: token("fault-registrar", Role::Registrar) }
}

/// Signs a transfer contract for `amount_fen`.
pub async fn sign_contract(base: &str, market: &Market, number: &str, amount_fen: i64) -> Uuid {
    let client = http_client(Duration::from_secs(30));
    let data = must(
        gql(
            &client,
            base,
            &market.registrar,
            "mutation($input: SignContractInput!) { signContract(input: $input) { id } }",
            json!({ "input": { "contractNumber": number, "contractType": "TRANSFER", "title": "故障测试合同",
                    "sellerId": market.seller, "buyerId": market.buyer,
                    "contractAmount": yuan(amount_fen), "techTransactionAmount": yuan(amount_fen),
                    "signedOn": "2024-03-01" } }),
        )
        .await,
        "signContract",
    );
    id_of(&data, "signContract")
}

pub const RECORD_PAYMENT: &str = "mutation($key: String, $input: RecordPaymentInput!) { \
     recordPayment(idempotencyKey: $key, input: $input) { id lastPosition recordedAt } }";

/// The input of a payment; the same key always sends exactly the same input, so a retry is
/// a repeat, not a new request.
pub fn payment_input(contract: Uuid, fen: i64, reference: &str) -> Value {
    json!({ "contractId": contract, "amount": yuan(fen), "settledAt": "2024-04-01T10:00:00+08:00",
            "bankReference": reference })
}

// ---------------------------------------------------------------------------------------------
// The summary line

/// The figures of one scenario's run, printed as one `fault-summary` line.
pub struct Figures {
    pub backend: &'static str,
    pub scenario: &'static str,
    pub clients: usize,
    pub requests: u64,
    pub kills: u32,
    pub acknowledged: usize,
    pub found: usize,
    pub lost: usize,
    pub duplicates: usize,
    /// Scenario-specific figures, appended in order.
    pub extra: Vec<(&'static str, String)>,
}

impl Figures {
    pub fn line(&self) -> String {
        let mut line = format!(
            "fault-summary backend={} scenario={} clients={} requests={} kills={} acknowledged={} found={} lost={} duplicates={}",
            self.backend,
            self.scenario,
            self.clients,
            self.requests,
            self.kills,
            self.acknowledged,
            self.found,
            self.lost,
            self.duplicates
        );
        for (k, v) in &self.extra {
            line.push_str(&format!(" {k}={v}"));
        }
        line
    }

    /// Prints the line on the real standard error (not captured by the test harness, so it
    /// shows in the test command's output) and appends it to
    /// `target/tmp/fault-summary.log`.
    pub fn print(&self) {
        let line = self.line();
        let _ = writeln!(std::io::stderr(), "{line}");
        let record = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-summary.log");
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(record) {
            let _ = writeln!(f, "{} {line}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL instance

/// A throwaway PostgreSQL cluster under /tmp on its own port, run as the `postgres` OS user
/// when the tests run as root (initdb refuses root). Stopped and removed on drop.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// `Some("postgres")` when the commands must run as that user (we are root).
    run_as: Option<String>,
    running: bool,
}

/// Where initdb and pg_ctl are: `FAULT_PG_BIN`, the newest `/usr/lib/postgresql/*/bin`
/// (Debian/Ubuntu), or the PATH.
fn find_pg_bin() -> Result<PathBuf, String> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("FAULT_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if usable(&dir) {
            Ok(dir)
        } else {
            Err(format!("FAULT_PG_BIN={} has no initdb and pg_ctl", dir.display()))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| usable(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if usable(&dir) {
                return Ok(dir);
            }
        }
    }
    Err("no PostgreSQL server binaries (initdb and pg_ctl) were found in FAULT_PG_BIN, \
         /usr/lib/postgresql/*/bin or the PATH"
        .to_owned())
}

/// Whether `program` is on the PATH.
fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn command_output(cmd: &mut std::process::Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl PrivatePostgres {
    /// initdb + start. Every failure says what is missing.
    pub fn create() -> Result<PrivatePostgres, String> {
        const HELP: &str = "the PostgreSQL fault scenarios need a private PostgreSQL instance they may stop and \
             restart (the shared server is never touched): install the server binaries (Debian: \
             `apt-get install postgresql`) or point FAULT_PG_BIN at the directory holding initdb and pg_ctl; \
             when the tests run as root an OS user `postgres` must exist to run them";
        let bin = find_pg_bin().map_err(|e| format!("{e}; {HELP}"))?;
        let uid = command_output(std::process::Command::new("id").arg("-u"))
            .map_err(|e| format!("{e}; {HELP}"))?
            .trim()
            .to_owned();
        let run_as = if uid == "0" {
            command_output(std::process::Command::new("id").arg("-u").arg("postgres")).map_err(|e| {
                format!("running as root and there is no OS user `postgres` to run initdb as ({e}); {HELP}")
            })?;
            Some("postgres".to_owned())
        } else {
            None
        };
        // Under /tmp: the socket path must stay short and the postgres user must reach it.
        let dir = PathBuf::from(format!("/tmp/fault-pg-{}", &Uuid::now_v7().simple().to_string()[20..]));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut pg = PrivatePostgres { dir, bin, port: free_port(), run_as, running: false };
        if let Some(user) = pg.run_as.clone() {
            let ids = |flag: &str| -> Result<u32, String> {
                command_output(std::process::Command::new("id").arg(flag).arg(&user))?
                    .trim()
                    .parse::<u32>()
                    .map_err(|e| e.to_string())
            };
            let (uid, gid) = (ids("-u")?, ids("-g")?);
            std::os::unix::fs::chown(&pg.dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand {} to {user}: {e}", pg.dir.display()))?;
        }
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )
        .map_err(|e| format!("initdb failed: {e}; {HELP}"))?;
        pg.start_blocking().map_err(|e| format!("the private PostgreSQL did not start: {e}; {HELP}"))?;
        Ok(pg)
    }

    /// Runs one of the PostgreSQL programs (as the postgres user when we are root).
    fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let program = self.bin.join(program);
        let mut cmd = match &self.run_as {
            None => std::process::Command::new(&program),
            Some(user) if which("runuser") => {
                let mut c = std::process::Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&program).args(args);
                c
            }
            Some(user) => {
                // No runuser: su with a shell command line, every word single-quoted.
                let quote = |w: &str| format!("'{}'", w.replace('\'', r"'\''"));
                let line = std::iter::once(quote(&program.display().to_string()))
                    .chain(args.iter().map(|a| quote(a)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut c = std::process::Command::new("su");
                c.arg(user).arg("-s").arg("/bin/sh").arg("-c").arg(line);
                c
            }
        };
        if self.run_as.is_none() {
            cmd.args(args);
        }
        cmd.current_dir(&self.dir);
        command_output(&mut cmd)
    }

    fn start_blocking(&mut self) -> Result<(), String> {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200", self.port, self.dir.display());
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("postgres.log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start"])
            .map_err(|e| format!("{e}\n{}", tail(&self.dir.join("postgres.log"), 20)))?;
        self.running = true;
        Ok(())
    }

    fn stop_blocking(&mut self, mode: &str) -> Result<(), String> {
        let data = self.dir.join("data").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", mode, "-w", "-t", "60", "stop"])?;
        self.running = false;
        Ok(())
    }

    /// Starts the (stopped) instance again; waits until it accepts connections.
    pub async fn start(&mut self) {
        let started = tokio::task::block_in_place(|| self.start_blocking());
        started.unwrap_or_else(|e| panic!("restarting the private PostgreSQL failed: {e}"));
    }

    /// Stops it: `immediate` is a crash (no checkpoint, clients cut off), `fast` an orderly
    /// shutdown that terminates sessions (57P01).
    pub async fn stop(&mut self, mode: &str) {
        let stopped = tokio::task::block_in_place(|| self.stop_blocking(mode));
        stopped.unwrap_or_else(|e| panic!("stopping the private PostgreSQL ({mode}) failed: {e}"));
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a fresh database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        use sqlx::Connection as _;
        let mut admin =
            sqlx::PgConnection::connect(&self.url("postgres")).await.expect("connect to the private PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create a database");
        let _ = admin.close().await;
        self.url(name)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_blocking("immediate");
        }
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "fault harness: kept the private PostgreSQL cluster {} (stopped) for inspection",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
