//! Building and running the server (zero2prod's `Application`): connect and migrate the
//! store, build the schema, bind the listener; tests build the same thing on port 0.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, guard, web};
use anyhow::Context as _;
use ledger::service::Ledger;
use ledger::store::Store;

use crate::auth::TokenKeys;
use crate::config::ServeArgs;
use crate::graphql::{SchemaLimits, build_schema};
use crate::http::{self, AppState};

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Connects, migrates and binds; the server runs once [`run_until_stopped`] is awaited.
    pub async fn build(args: &ServeArgs) -> anyhow::Result<Application> {
        let (secret, development_secret) = args.security.token_secret()?;
        let (vault, development_vault) = args.security.personal_data_key()?;
        if development_vault {
            tracing::warn!(
                "DEVELOPMENT MODE: completers' ID numbers are sealed with the built-in development key; \
                 set TECHMARKET_PII_KEY for real data."
            );
        }
        if development_secret {
            tracing::warn!(
                "DEVELOPMENT MODE: tokens are signed with the built-in development secret; \
                 anyone can mint them. Set TECHMARKET_ENV=production and TECHMARKET_JWT_SECRET for real use."
            );
        }
        let store = Store::connect(&args.database.database_url, &args.database.store_options())
            .await
            .with_context(|| format!("cannot open the database at {}", redact(&args.database.database_url)))?;
        store.migrate().await.context("cannot apply the database migrations")?;
        let warm_up = store.spawn_policy_warm_up();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match warm_up.await {
                Ok(Ok(head)) => tracing::info!(
                    head,
                    seconds = started.elapsed().as_secs_f64(),
                    "policy projections folded up to the log head"
                ),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not fold the policy projections ahead of time; the first append will")
                }
                Err(error) => tracing::warn!(%error, "the policy projections' warm-up stopped"),
            }
        });
        let ledger = Ledger::new(store);
        let limits = SchemaLimits { introspection: args.introspection_enabled(), ..SchemaLimits::default() };
        let (metrics, lag) = crate::metrics::build(&ledger)?;
        lag.spawn_refresh(ledger.clone(), std::time::Duration::from_secs(5));
        let state = web::Data::new(AppState {
            schema: build_schema(ledger.clone(), vault.clone(), limits),
            tokens: TokenKeys::from_secret(&secret),
            ledger,
            graphiql: args.graphiql_enabled(),
            body_bytes_max: args.body_bytes_max,
            rate_limiter: crate::limits::CallerRateLimiter::new(args.limits.rate_per_second, args.limits.rate_burst),
            personal_data_key: vault,
        });
        {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    state.rate_limiter.forget_idle();
                }
            });
        }
        let listener = TcpListener::bind(&args.bind).with_context(|| format!("cannot listen on {}", args.bind))?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap_fn(echo_request_id)
                .wrap(metrics.clone())
                .wrap(tracing_actix_web::TracingLogger::default())
                .app_data(state.clone())
                .service(
                    web::resource("/graphql")
                        .route(web::get().to(http::graphql_get))
                        .route(web::post().to(http::graphql_post))
                        .route(
                            web::route()
                                .guard(guard::Any(guard::Put()).or(guard::Delete()).or(guard::Patch()))
                                .to(http::graphql_other),
                        ),
                )
                .route("/exports/{statement}/{file}", web::get().to(crate::export::http::download))
                .route("/health", web::get().to(http::health))
                .route("/ready", web::get().to(http::ready))
        })
        .shutdown_timeout(args.shutdown_timeout().as_secs())
        .listen(listener)?;
        if let Some(workers) = args.workers {
            server = server.workers(workers);
        }
        Ok(Application { port, server: server.run() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests (up to the shutdown timeout).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Sends the request id of the log lines back as `x-request-id`, so a caller can quote it.
fn echo_request_id<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>> + use<S, B>
where
    S: actix_web::dev::Service<
            actix_web::dev::ServiceRequest,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
{
    use actix_web::HttpMessage;
    let id = req.extensions().get::<tracing_actix_web::RequestId>().map(|id| id.to_string());
    let response = srv.call(req);
    async move {
        let mut response = response.await?;
        if let Some(value) = id.and_then(|id| actix_web::http::header::HeaderValue::from_str(&id).ok()) {
            response.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-request-id"), value);
        }
        Ok(response)
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `postgres://u@h:p/db?x` with its database name replaced (throwaway databases of the
/// benchmark and the tests).
pub fn database_url_with_name(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let without_db = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{without_db}/{name}?{q}"),
        None => format!("{without_db}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            database_url_with_name("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url_with_name("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(database_url_with_name("postgres://h", "x"), "postgres://h/x");
    }
}
