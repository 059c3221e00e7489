//! A real server for a test: the same `Application` the binary runs, on 127.0.0.1 port 0,
//! over a fresh database, with a small GraphQL client and tokens for every role.

use api::auth::TokenKeys;
use api::config::{DEVELOPMENT_JWT_SECRET, DatabaseArgs, Environment, SecurityArgs, ServeArgs};
use api::startup::Application;
use ledger::ids::{BrokerId, OrganisationId};
use ledger::{Actor, Role};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::TestDb;

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub client: reqwest::Client,
    tokens: TokenKeys,
}

/// Starts a server over `db` (a fresh test database).
pub async fn spawn_app(db: TestDb) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

/// Starts a server over `db` with settings changed by `configure`.
pub async fn spawn_app_with(db: TestDb, configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    // Server logs only on request: `TEST_LOG=1 cargo test ...` (zero2prod's switch).
    if std::env::var_os("TEST_LOG").is_some() {
        api::telemetry::init(api::config::LogFormat::Text);
    }
    let mut args = ServeArgs {
        database: DatabaseArgs { database_url: db.url.clone(), db_connections_max: 8, db_acquire_seconds: 5 },
        bind: "127.0.0.1:0".into(),
        security: SecurityArgs {
            environment: Environment::Development,
            jwt_secret: None,
            pii_key: None,
            log_format: None,
        },
        limits: api::config::LimitsArgs::default(),
        graphiql: Some(true),
        introspection: Some(true),
        body_bytes_max: 1_048_576,
        shutdown_seconds: 1,
        workers: Some(2),
    };
    configure(&mut args);
    let app = Application::build(&args).await.expect("build the application");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        db,
        client: reqwest::Client::new(),
        tokens: TokenKeys::from_secret(DEVELOPMENT_JWT_SECRET.as_bytes()),
    }
}

/// A GraphQL response: `data` and `errors`.
#[derive(Debug, Clone)]
pub struct GqlResponse {
    pub status: u16,
    pub body: Value,
}

impl GqlResponse {
    /// `data`, after asserting there were no errors.
    #[track_caller]
    pub fn data(&self) -> &Value {
        assert!(self.body.get("errors").is_none(), "unexpected errors: {}", self.body);
        &self.body["data"]
    }

    /// The `extensions.code` of the first error.
    #[track_caller]
    pub fn error_code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
    }

    pub fn error(&self) -> &Value {
        &self.body["errors"][0]
    }
}

impl TestApp {
    /// A token for a user of `role` acting for `organisation` (or as `broker`).
    pub fn token(&self, role: Role, organisation: Option<Uuid>, broker: Option<Uuid>) -> String {
        let actor = Actor {
            user_id: format!(
                "{}-{}",
                role.as_str(),
                organisation.or(broker).map(|u| u.to_string()).unwrap_or_default()
            ),
            role,
            organisation_id: organisation.map(OrganisationId),
            broker_id: broker.map(BrokerId),
        };
        self.tokens.issue(&actor, chrono::Duration::hours(1))
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin, None, None)
    }

    pub fn registrar(&self) -> String {
        self.token(Role::Registrar, None, None)
    }

    /// POSTs a GraphQL request (with a token, if any).
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> GqlResponse {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.expect("a JSON body");
        GqlResponse { status, body }
    }

    /// Runs a mutation `name(input: $input)` and returns the created/affected id.
    pub async fn mutate(&self, token: &str, name: &str, input: Value) -> Uuid {
        let response = self.try_mutate(token, name, input, None).await;
        let id = response.data()[name]["id"].as_str().unwrap_or_else(|| panic!("no id in {}", response.body));
        Uuid::parse_str(id).expect("a UUID")
    }

    /// Registers an organisation (`registerOrganisation`) as `token`; returns its id.
    pub async fn register_organisation(
        &self,
        token: &str,
        name: &str,
        kind: &str,
        credit_code: &str,
        division_code: &str,
    ) -> Uuid {
        let input = json!({ "name": name, "kind": kind, "creditCode": credit_code, "divisionCode": division_code });
        self.mutate(token, "registerOrganisation", input).await
    }

    /// Runs a mutation and returns the whole response (for checking errors).
    pub async fn try_mutate(
        &self,
        token: &str,
        name: &str,
        input: Value,
        idempotency_key: Option<&str>,
    ) -> GqlResponse {
        let input_type = format!("{}{}Input", name[..1].to_uppercase(), &name[1..]);
        let query = format!(
            "mutation($input: {input_type}!, $key: String) {{ {name}(input: $input, idempotencyKey: $key) \
             {{ id command firstPosition lastPosition eventCount }} }}"
        );
        self.gql(Some(token), &query, json!({ "input": input, "key": idempotency_key })).await
    }
}
