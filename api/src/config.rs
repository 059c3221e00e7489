//! Server configuration: every setting is a command-line flag with an environment variable
//! behind it (clap `env`), documented where it is declared. Production defaults are safe;
//! development ones are convenient and say so loudly.

use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

/// The default embedded database: a file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/techmarket.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Local work: a built-in token secret is allowed (with a warning), GraphiQL is on.
    Development,
    /// Real money: a token secret is required; GraphiQL and introspection are off unless
    /// turned on explicitly.
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// Where the ledger lives.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite:<path>` (created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Most database connections the pool opens.
    #[arg(long, env = "TECHMARKET_DB_CONNECTIONS_MAX", default_value_t = 16)]
    pub db_connections_max: u32,

    /// Seconds a request waits for a database connection before answering UNAVAILABLE.
    #[arg(long, env = "TECHMARKET_DB_ACQUIRE_SECONDS", default_value_t = 5)]
    pub db_acquire_seconds: u64,
}

impl DatabaseArgs {
    pub fn store_options(&self) -> ledger::store::StoreOptions {
        ledger::store::StoreOptions {
            max_connections: self.db_connections_max,
            acquire_timeout: std::time::Duration::from_secs(self.db_acquire_seconds.max(1)),
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address and port to listen on.
    #[arg(long, env = "TECHMARKET_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    #[command(flatten)]
    pub security: SecurityArgs,

    #[command(flatten)]
    pub limits: LimitsArgs,

    /// GraphiQL in the browser at GET /graphql (default: on in development, off in production).
    #[arg(long, env = "TECHMARKET_GRAPHIQL")]
    pub graphiql: Option<bool>,

    /// GraphQL introspection (default: on in development, off in production).
    #[arg(long, env = "TECHMARKET_INTROSPECTION")]
    pub introspection: Option<bool>,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TECHMARKET_BODY_BYTES_MAX", default_value_t = 1_048_576)]
    pub body_bytes_max: usize,

    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "TECHMARKET_SHUTDOWN_SECONDS", default_value_t = 30)]
    pub shutdown_seconds: u64,

    /// Worker threads of the HTTP server (default: one per core).
    #[arg(long, env = "TECHMARKET_WORKERS")]
    pub workers: Option<usize>,
}

/// How much one caller may ask.
#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    /// Requests per second one caller (token subject, or address when anonymous) may make.
    #[arg(long, env = "TECHMARKET_RATE_PER_SECOND", default_value_t = 1000)]
    pub rate_per_second: u32,

    /// Requests one caller may make at once before the rate applies.
    #[arg(long, env = "TECHMARKET_RATE_BURST", default_value_t = 2000)]
    pub rate_burst: u32,
}

impl Default for LimitsArgs {
    fn default() -> Self {
        LimitsArgs { rate_per_second: 1000, rate_burst: 2000 }
    }
}

/// Tokens and the mode that decides how strict to be about them.
#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// `development` or `production`.
    #[arg(long, env = "TECHMARKET_ENV", value_enum, default_value_t = Environment::Development)]
    pub environment: Environment,

    /// Secret that signs bearer tokens (HS256), at least 32 bytes. Required in production.
    #[arg(long, env = "TECHMARKET_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// Secret that seals completers' ID numbers in the database (ChaCha20-Poly1305), at least 32
    /// bytes. Required in production; losing it makes the stored numbers unreadable.
    #[arg(long, env = "TECHMARKET_PII_KEY", hide_env_values = true)]
    pub pii_key: Option<SecretString>,

    /// Log format: `text` or `json` (default: text in development, json in production).
    #[arg(long, env = "TECHMARKET_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// A vault key only for local development; anyone can read it here, so production refuses it.
pub const DEVELOPMENT_PII_KEY: &str = "techmarket-development-personal-data-key-not-secret";

/// A secret only for local development; anyone can read it here, so production refuses it.
pub const DEVELOPMENT_JWT_SECRET: &str = "techmarket-development-secret-do-not-use-in-production";
/// Shortest secret accepted.
pub const JWT_SECRET_BYTES_MIN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "TECHMARKET_JWT_SECRET is not set: production mode refuses to start without a token secret \
         (set it to a random string of at least {JWT_SECRET_BYTES_MIN} bytes, e.g. `openssl rand -hex 32`)"
    )]
    MissingSecret,
    #[error("TECHMARKET_JWT_SECRET is {0} bytes; use at least {JWT_SECRET_BYTES_MIN}")]
    ShortSecret(usize),
    #[error("production mode refuses the published development secret")]
    DevelopmentSecretInProduction,
    #[error(
        "TECHMARKET_PII_KEY is not set: production mode refuses to start without a key for personal data \
         (at least {JWT_SECRET_BYTES_MIN} random bytes; keep it safe: stored ID numbers cannot be read without it)"
    )]
    MissingPiiKey,
    #[error("TECHMARKET_PII_KEY is {0} bytes; use at least {JWT_SECRET_BYTES_MIN}")]
    ShortPiiKey(usize),
}

impl SecurityArgs {
    /// The secret to sign and verify tokens with, and whether it is the development one.
    pub fn token_secret(&self) -> Result<(Vec<u8>, bool), ConfigError> {
        match (&self.jwt_secret, self.environment) {
            (Some(secret), env) => {
                let bytes = secret.expose_secret().as_bytes().to_vec();
                if bytes.len() < JWT_SECRET_BYTES_MIN {
                    return Err(ConfigError::ShortSecret(bytes.len()));
                }
                if env == Environment::Production && bytes == DEVELOPMENT_JWT_SECRET.as_bytes() {
                    return Err(ConfigError::DevelopmentSecretInProduction);
                }
                Ok((bytes, false))
            }
            (None, Environment::Production) => Err(ConfigError::MissingSecret),
            (None, Environment::Development) => Ok((DEVELOPMENT_JWT_SECRET.as_bytes().to_vec(), true)),
        }
    }

    /// The key that seals personal data, and whether it is the development one.
    pub fn personal_data_key(&self) -> Result<(ledger::personal::PersonalDataKey, bool), ConfigError> {
        match (&self.pii_key, self.environment) {
            (Some(key), env) => {
                let bytes = key.expose_secret().as_bytes();
                if bytes.len() < JWT_SECRET_BYTES_MIN {
                    return Err(ConfigError::ShortPiiKey(bytes.len()));
                }
                if env == Environment::Production && bytes == DEVELOPMENT_PII_KEY.as_bytes() {
                    return Err(ConfigError::DevelopmentSecretInProduction);
                }
                Ok((ledger::personal::PersonalDataKey::from_secret(bytes), false))
            }
            (None, Environment::Production) => Err(ConfigError::MissingPiiKey),
            (None, Environment::Development) => {
                Ok((ledger::personal::PersonalDataKey::from_secret(DEVELOPMENT_PII_KEY.as_bytes()), true))
            }
        }
    }

    pub fn log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(match self.environment {
            Environment::Development => LogFormat::Text,
            Environment::Production => LogFormat::Json,
        })
    }
}

impl ServeArgs {
    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(self.security.environment == Environment::Development)
    }

    pub fn introspection_enabled(&self) -> bool {
        self.introspection.unwrap_or(self.security.environment == Environment::Development)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_seconds)
    }
}
