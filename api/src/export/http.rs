//! `GET /exports/{statement}/{year}.{format}`: a statement as a file download, streamed.
//!
//! - `statement`: `completer-subsidy`, `operating-center-incentive` or `turnover`;
//! - `format`: `csv` or `xlsx`;
//! - query: `asOf` (a ledger position) or `asOfTime` (RFC 3339), `lang` (`zh`, the default,
//!   or `en`), `idNumbers` (`masked`, the default, or `full`).
//!
//! Finance and administrators may export; full ID numbers only finance, and only when asked
//! for. Errors are JSON like the rest of the API (`{ "errors": [{ "message", "extensions":
//! { "code" } }] }`): 401 without a valid token, 403 for other roles, 400 naming the bad
//! parameter. Once the file has started, a failure aborts the response (the download is
//! visibly incomplete rather than silently short).

use std::io::{self, Write};

use actix_web::http::StatusCode;
use actix_web::http::header::{
    self, Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue, HeaderValue,
};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use ledger::Role;
use ledger::reports::{AsOfRequest, ReportError};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{ExportRequest, Format, IdNumbers, Lang, Silent, Statement, YEARS};
use crate::http::AppState;

/// Who may export statements.
const EXPORTERS: &[Role] = &[Role::Finance, Role::Admin];
/// Bytes per chunk of the response body.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight between the writer and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;

fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> HttpResponse {
    let mut extensions = json!({ "code": code });
    if let Some(f) = field {
        extensions["field"] = json!(f);
    }
    HttpResponse::build(status)
        .content_type("application/json")
        .json(json!({ "errors": [{ "message": message, "extensions": extensions }] }))
}

/// A bad parameter: answered 400 `VALIDATION_FAILED` with the parameter in `extensions.field`.
#[derive(Debug)]
struct Invalid {
    field: &'static str,
    message: String,
}

impl Invalid {
    fn response(&self) -> HttpResponse {
        let message = format!("{}: {}", self.field, self.message);
        error(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", &message, Some(self.field))
    }
}

fn invalid(field: &'static str, message: String) -> Invalid {
    Invalid { field, message }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[serde(rename = "asOf")]
    as_of: Option<String>,
    #[serde(rename = "asOfTime")]
    as_of_time: Option<String>,
    lang: Option<String>,
    #[serde(rename = "idNumbers")]
    id_numbers: Option<String>,
}

/// The request's statement, year, format and options, or the 400 that names what is wrong.
fn parse(statement: &str, file: &str, query: &str) -> Result<(ExportRequest, AsOfRequest), Invalid> {
    let names = || Statement::ALL.iter().map(|s| s.slug()).collect::<Vec<_>>().join(", ");
    let statement = Statement::parse(statement)
        .ok_or_else(|| invalid("statement", format!("`{statement}` is not one of {}", names())))?;
    let Some((year, extension)) = file.rsplit_once('.') else {
        return Err(invalid("format", format!("`{file}` names no format: ask for {{year}}.csv or {{year}}.xlsx")));
    };
    let year = year
        .parse::<i32>()
        .ok()
        .filter(|y| YEARS.contains(y) && year.len() == 4)
        .ok_or_else(|| invalid("year", format!("`{year}` is not a four-digit calendar year")))?;
    let format =
        Format::parse(extension).ok_or_else(|| invalid("format", format!("`{extension}` is not csv or xlsx")))?;
    let q = web::Query::<ExportQuery>::from_query(query)
        .map_err(|e| invalid("query", format!("{e}; the parameters are asOf, asOfTime, lang and idNumbers")))?
        .into_inner();
    let lang = match q.lang.as_deref() {
        None => Lang::Zh,
        Some(l) => Lang::parse(l).ok_or_else(|| invalid("lang", format!("`{l}` is not zh or en")))?,
    };
    let id_numbers = match q.id_numbers.as_deref() {
        None | Some("masked") => IdNumbers::Masked,
        Some("full") => IdNumbers::Full,
        Some(other) => return Err(invalid("idNumbers", format!("`{other}` is not masked or full"))),
    };
    let as_of = match (q.as_of.as_deref(), q.as_of_time.as_deref()) {
        (Some(_), Some(_)) => return Err(invalid("asOf", "give asOf or asOfTime, not both".to_owned())),
        (Some(p), None) => AsOfRequest::Position(
            p.parse::<i64>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| invalid("asOf", format!("`{p}` is not a ledger position")))?,
        ),
        (None, Some(t)) => {
            // A `+` left unencoded in a query string arrives as a space.
            let parsed =
                DateTime::parse_from_rfc3339(t).or_else(|_| DateTime::parse_from_rfc3339(&t.replace(' ', "+")));
            AsOfRequest::Time(
                parsed
                    .map_err(|_| invalid("asOfTime", format!("`{t}` is not an RFC 3339 instant")))?
                    .with_timezone(&Utc),
            )
        }
        (None, None) => AsOfRequest::Head,
    };
    Ok((ExportRequest { statement, year, format, lang, id_numbers }, as_of))
}

/// `attachment; filename="completer-subsidy-2024.xlsx"`, and in Chinese the Chinese name
/// as `filename*=UTF-8''...` (RFC 5987/6266), which browsers prefer.
fn content_disposition(request: &ExportRequest, as_of: Option<i64>) -> ContentDisposition {
    let mut parameters = vec![DispositionParam::Filename(request.file_name(as_of))];
    if request.lang == Lang::Zh {
        parameters.push(DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".to_owned()),
            language_tag: None,
            value: request.file_name_zh(as_of).into_bytes(),
        }));
    }
    ContentDisposition { disposition: DispositionType::Attachment, parameters }
}

/// GET /exports/{statement}/{file}.
pub async fn download(state: web::Data<AppState>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let actor = match state.tokens.actor_from_header(authorization) {
        Ok(Some(actor)) => actor,
        Ok(None) => {
            return unauthenticated("exports need a bearer token (Authorization: Bearer <token>)");
        }
        Err(e) => return unauthenticated(&e.to_string()),
    };
    if !EXPORTERS.contains(&actor.role) {
        let message = format!("a {} user may not export statements", actor.role.as_str());
        return error(StatusCode::FORBIDDEN, "FORBIDDEN", &message, None);
    }
    let (statement, file) = path.into_inner();
    let (request, as_of_request) = match parse(&statement, &file, req.query_string()) {
        Ok(parsed) => parsed,
        Err(invalid) => return invalid.response(),
    };
    if request.id_numbers == IdNumbers::Full && actor.role != Role::Finance {
        let message = format!("a {} user may not export full ID numbers (finance only)", actor.role.as_str());
        return error(StatusCode::FORBIDDEN, "FORBIDDEN", &message, Some("idNumbers"));
    }
    let as_of = match state.ledger.resolve_as_of(as_of_request).await {
        Ok(a) => a,
        Err(e @ ReportError::BeyondHead { .. }) => return invalid("asOf", e.to_string()).response(),
        Err(ReportError::Store(e)) => {
            tracing::error!(error = %e, "export: cannot resolve asOf");
            return if e.is_transient() {
                error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "the database is not available; retry", None)
            } else {
                error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error", None)
            };
        }
    };
    let requested_position = (as_of_request != AsOfRequest::Head).then_some(as_of.position);
    if request.id_numbers == IdNumbers::Full {
        tracing::info!(user = %actor.user_id, statement = request.statement.slug(), year = request.year, "export with full ID numbers");
    }

    let (chunks, body) = mpsc::channel::<Result<Bytes, io::Error>>(CHUNKS_IN_FLIGHT);
    let out = ChunkWriter { chunks: chunks.clone(), buffer: Vec::with_capacity(CHUNK_BYTES) };
    let (ledger, key, job) = (state.ledger.clone(), state.personal_data_key.clone(), request.clone());
    let position = as_of.clone();
    actix_web::rt::spawn(async move {
        let key = (job.id_numbers == IdNumbers::Full).then_some(&key);
        match super::export(&ledger, key, &job, position, out, &Silent).await {
            Ok(done) => tracing::info!(
                statement = job.statement.slug(),
                year = job.year,
                position = done.as_of.position,
                lines = done.lines,
                rows = done.rows,
                "export sent"
            ),
            Err(e) => {
                tracing::warn!(error = %e, statement = job.statement.slug(), year = job.year, "export aborted");
                // Abort the response: the client sees a broken transfer, not a short file.
                let _ = chunks.send(Err(io::Error::other(e.to_string()))).await;
            }
        }
    });
    let body =
        futures_util::stream::unfold(body, |mut body| async move { body.recv().await.map(|chunk| (chunk, body)) });
    HttpResponse::Ok()
        .content_type(request.format.content_type())
        .insert_header((header::CONTENT_DISPOSITION, content_disposition(&request, requested_position)))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header(("X-Ledger-Position", as_of.position.to_string()))
        .insert_header(("X-Ledger-Hash", as_of.hash.clone()))
        .streaming(body)
}

fn unauthenticated(message: &str) -> HttpResponse {
    let mut response = error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message, None);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The response body as a `Write` for the writer thread: bytes go out in chunks over a
/// bounded channel, so a slow client slows the export down instead of filling memory.
struct ChunkWriter {
    chunks: mpsc::Sender<Result<Bytes, io::Error>>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES)));
        self.chunks
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client closed the connection"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_say_what_and_which_year_and_the_chinese_one_is_percent_encoded() {
        let request = ExportRequest {
            statement: Statement::CompleterSubsidy,
            year: 2024,
            format: Format::Xlsx,
            lang: Lang::Zh,
            id_numbers: IdNumbers::Masked,
        };
        let header = content_disposition(&request, None).to_string();
        assert!(
            header.starts_with("attachment; filename=\"completer-subsidy-2024.xlsx\"; filename*=UTF-8''2024"),
            "{header}"
        );
        assert!(header.contains("%E5%B9%B4"), "年 percent-encoded: {header}");
        let english = ExportRequest { lang: Lang::En, format: Format::Csv, ..request };
        assert_eq!(
            content_disposition(&english, Some(57)).to_string(),
            "attachment; filename=\"completer-subsidy-2024-asof-57.csv\""
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let field = |r: Result<(ExportRequest, AsOfRequest), Invalid>| r.err().map(|e| e.field);
        assert_eq!(field(parse("nope", "2024.csv", "")), Some("statement"));
        assert_eq!(field(parse("turnover", "2024", "")), Some("format"));
        assert_eq!(field(parse("turnover", "24.csv", "")), Some("year"));
        assert_eq!(field(parse("turnover", "2024.pdf", "")), Some("format"));
        assert_eq!(field(parse("turnover", "2024.csv", "asOf=-1")), Some("asOf"));
        assert_eq!(field(parse("turnover", "2024.csv", "asOf=1&asOfTime=2024-01-01T00:00:00Z")), Some("asOf"));
        assert_eq!(field(parse("turnover", "2024.csv", "colour=red")), Some("query"));
        let (request, as_of) = parse("turnover", "2024.xlsx", "asOfTime=2025-01-01T00:00:00+08:00&lang=en").unwrap();
        assert_eq!((request.format, request.lang), (Format::Xlsx, Lang::En));
        assert_eq!(as_of, AsOfRequest::Time("2024-12-31T16:00:00Z".parse().unwrap()));
        let (_, as_of) = parse("turnover", "2024.xlsx", "asOfTime=2025-01-01T00:00:00 08:00").unwrap();
        assert_eq!(as_of, AsOfRequest::Time("2024-12-31T16:00:00Z".parse().unwrap()));
    }
}
