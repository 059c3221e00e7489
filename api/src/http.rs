//! HTTP endpoints: `/graphql` following the GraphQL-over-HTTP specification (the stock
//! handler answers `application/graphql-response+json` even to `Accept: application/json`,
//! failing a MUST), GraphiQL on a browser's GET, and `/health` + `/ready` probes.
//!
//! Media types: a request accepting `application/graphql-response+json` gets it, with 400 for
//! requests that fail before execution (parse, validation, bad variables); otherwise
//! `application/json` with 200. POST needs `Content-Type: application/json`; GET never runs a
//! mutation (405).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::TokenKeys;
use crate::graphql::{AppSchema, RequestContext};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// What every handler shares.
pub struct AppState {
    pub schema: AppSchema,
    pub tokens: TokenKeys,
    pub ledger: ledger::service::Ledger,
    pub graphiql: bool,
    pub body_bytes_max: usize,
    pub rate_limiter: crate::limits::CallerRateLimiter,
    /// Opens completers' ID numbers for finance's full exports.
    pub personal_data_key: ledger::personal::PersonalDataKey,
}

/// The response media type the client asked for, or `None` when it accepts neither.
fn negotiate(req: &HttpRequest) -> Option<&'static str> {
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if accept.trim().is_empty() {
        return Some(JSON);
    }
    if accept.contains(GRAPHQL_RESPONSE) {
        return Some(GRAPHQL_RESPONSE);
    }
    if accept.contains(JSON) || accept.contains("*/*") || accept.contains("application/*") {
        return Some(JSON);
    }
    None
}

/// An error answer before GraphQL execution: `{ "errors": [...] }` with an HTTP status.
fn request_error(media: &'static str, status: StatusCode, code: &str, message: &str) -> HttpResponse {
    // A malformed HTTP request (bad JSON, wrong parameter types) is a 4xx whatever the media
    // type; only GraphQL validation errors answer 200 under application/json (see `execute`).
    HttpResponse::build(status)
        .content_type(media)
        .json(json!({ "errors": [{ "message": message, "extensions": { "code": code } }] }))
}

#[derive(Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

/// A GraphQL request as parsed from the wire, before execution.
struct WireRequest {
    query: String,
    operation_name: Option<String>,
    variables: Option<Value>,
}

/// GET /graphql: GraphiQL for a browser, otherwise a query (never a mutation).
pub async fn graphql_get(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let params = web::Query::<GetParams>::from_query(req.query_string()).ok().map(web::Query::into_inner);
    let wants_html =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html && params.as_ref().is_none_or(|p| p.query.is_none()) {
        if !state.graphiql {
            return HttpResponse::NotFound().content_type("text/plain").body("GraphiQL is disabled on this server\n");
        }
        let page = GraphiQLSource::build().endpoint("/graphql").title("Technology-transfer ledger").finish();
        return HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page);
    }
    let Some(media) = negotiate(&req) else { return not_acceptable() };
    let Some(params) = params else {
        return request_error(media, StatusCode::BAD_REQUEST, "BAD_REQUEST", "the query string is not valid");
    };
    let Some(query) = params.query else {
        return request_error(media, StatusCode::BAD_REQUEST, "BAD_REQUEST", "missing the `query` parameter");
    };
    let variables = match params.variables.as_deref().map(serde_json::from_str::<Value>) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return request_error(media, StatusCode::BAD_REQUEST, "BAD_REQUEST", "`variables` is not valid JSON");
        }
    };
    if params
        .extensions
        .as_deref()
        .is_some_and(|e| serde_json::from_str::<Value>(e).map(|v| !v.is_object()).unwrap_or(true))
    {
        return request_error(media, StatusCode::BAD_REQUEST, "BAD_REQUEST", "`extensions` must be a JSON object");
    }
    let wire = WireRequest { query, operation_name: params.operation_name, variables };
    if is_mutation(&wire) {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .content_type(media)
            .json(json!({ "errors": [{ "message": "mutations are only accepted with POST", "extensions": { "code": "METHOD_NOT_ALLOWED" } }] }));
    }
    execute(&state, &req, media, wire).await
}

/// POST /graphql with a JSON body `{ query, operationName?, variables?, extensions? }`.
pub async fn graphql_post(state: web::Data<AppState>, req: HttpRequest, mut payload: web::Payload) -> HttpResponse {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = negotiate(&req);
    if !content_type.to_ascii_lowercase().starts_with(JSON) {
        return request_error(
            media.unwrap_or(JSON),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the request as `Content-Type: application/json`",
        );
    }
    let Some(media) = media else { return not_acceptable() };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return request_error(media, StatusCode::BAD_REQUEST, "BAD_REQUEST", "the request body could not be read");
        };
        if body.len() + chunk.len() > state.body_bytes_max {
            return request_error(
                media,
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("the request body is larger than {} bytes", state.body_bytes_max),
            );
        }
        body.extend_from_slice(&chunk);
    }
    match parse_post_body(&body) {
        Ok(wire) => execute(&state, &req, media, wire).await,
        Err(message) => request_error(media, StatusCode::BAD_REQUEST, "BAD_REQUEST", message),
    }
}

fn parse_post_body(body: &[u8]) -> Result<WireRequest, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "the body is not valid JSON")?;
    let Value::Object(map) = value else { return Err("the body must be a JSON object") };
    let query = match map.get("query") {
        Some(Value::String(q)) => q.clone(),
        _ => return Err("`query` must be a string"),
    };
    let operation_name = match map.get("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(o)) => Some(o.clone()),
        Some(_) => return Err("`operationName` must be a string"),
    };
    let variables = match map.get("variables") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err("`variables` must be a JSON object"),
    };
    match map.get("extensions") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err("`extensions` must be a JSON object"),
    }
    Ok(WireRequest { query, operation_name, variables })
}

/// Whether the operation that would run is a mutation (or subscription).
fn is_mutation(wire: &WireRequest) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(&wire.query) else { return false };
    let ty = match (&doc.operations, &wire.operation_name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name.as_str()).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next().map(|op| op.node.ty),
        _ => None,
    };
    matches!(ty, Some(OperationType::Mutation | OperationType::Subscription))
}

fn not_acceptable() -> HttpResponse {
    HttpResponse::NotAcceptable()
        .content_type("text/plain")
        .body("accept application/graphql-response+json or application/json\n")
}

async fn execute(state: &AppState, req: &HttpRequest, media: &'static str, wire: WireRequest) -> HttpResponse {
    let actor =
        match state.tokens.actor_from_header(req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) {
            Ok(actor) => actor,
            Err(e) => {
                return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
                .content_type(media)
                .json(json!({ "errors": [{ "message": e.to_string(), "extensions": { "code": "UNAUTHENTICATED" } }] }));
            }
        };
    let caller = match &actor {
        Some(a) => format!("user:{}", a.user_id),
        None => format!("addr:{}", req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default()),
    };
    if let Err(wait) = state.rate_limiter.check(&caller) {
        let seconds = wait.as_secs().max(1);
        return HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, seconds.to_string()))
            .content_type(media)
            .json(json!({ "errors": [{ "message": format!("too many requests; retry in {seconds} s"), "extensions": { "code": "RATE_LIMITED" } }] }));
    }
    let request_id = req.extensions().get::<tracing_actix_web::RequestId>().map(|id| id.to_string());
    let mut request = async_graphql::Request::new(wire.query);
    if let Some(op) = wire.operation_name {
        request = request.operation_name(op);
    }
    if let Some(vars) = wire.variables {
        request = request.variables(async_graphql::Variables::from_json(vars));
    }
    let request = request.data(RequestContext { actor, request_id });
    let mut response = state.schema.execute(request).await;
    // Errors before execution have no path and leave no data: a request error (400 under
    // application/graphql-response+json). Field errors keep 200.
    let request_failed = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let status = if media == GRAPHQL_RESPONSE && request_failed { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    add_missing_codes(&mut response.errors, request_failed);
    if request_failed {
        return HttpResponse::build(status).content_type(media).json(json!({ "errors": response.errors }));
    }
    // Serialised as is: async-graphql keeps the fields in the order they were selected.
    HttpResponse::build(status).content_type(media).json(&response)
}

/// Gives every error a stable `extensions.code`. Ours carry one already (internal failures
/// included: `graphql::internal` sets INTERNAL); an error without one comes from
/// async-graphql itself: parsing and validation (a request error) or coercing an input value
/// while executing (a field error) — either way the client's input.
fn add_missing_codes(errors: &mut [async_graphql::ServerError], request_failed: bool) {
    for e in errors {
        let has_code = e.extensions.as_ref().is_some_and(|x| x.get("code").is_some());
        if !has_code {
            let code = if request_failed { "GRAPHQL_VALIDATION_FAILED" } else { "VALIDATION_FAILED" };
            e.extensions.get_or_insert_with(Default::default).set("code", code);
        }
    }
}

/// Liveness: the process answers.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// How long the readiness probe waits for the database. Probes give up after a second or two,
/// so a slow answer must be a 503, not a hang (the pool would wait its whole acquire timeout
/// for a database that refuses connections).
const READY_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// Readiness: the database answers, promptly.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let unavailable =
        |reason: &str| HttpResponse::ServiceUnavailable().json(json!({ "status": "unavailable", "reason": reason }));
    match tokio::time::timeout(READY_PING_TIMEOUT, state.ledger.store().ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: database unavailable");
            unavailable("database unavailable")
        }
        Err(_) => {
            tracing::warn!(timeout = ?READY_PING_TIMEOUT, "not ready: the database did not answer in time");
            unavailable("database not answering")
        }
    }
}

/// Any other method on /graphql.
pub async fn graphql_other() -> HttpResponse {
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, "GET, POST")).finish()
}
