//! A small closed-loop HTTP/1.1 load generator for the benchmark: N keep-alive connections to
//! a server on this machine, each sending its next request as soon as the previous answer is
//! read, for a fixed time. Hand-written on tokio's TCP stream (no HTTP client library) so the
//! client costs little CPU next to the server it measures on the same two cores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Builds the bytes of request number `n` (numbers are unique across connections).
pub type RequestFn = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;
/// Whether a 200 response body counts as a success.
pub type CheckFn = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// What one load phase measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latency of every successful request, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    /// A request that succeeded after `latency`.
    pub fn succeeded(&mut self, latency: Duration) {
        self.ok += 1;
        self.latencies_us.push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    /// A request that failed; the first error is kept for the report.
    pub fn failed(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    /// Waits for the parts of a phase (one per connection or caller, started at `start`) and
    /// adds them up, with the latencies sorted.
    pub async fn join(parts: Vec<tokio::task::JoinHandle<LoadResult>>, start: Instant) -> LoadResult {
        let mut result = LoadResult::default();
        for part in parts {
            let part = part.await.expect("a load task panicked");
            result.ok += part.ok;
            result.errors += part.errors;
            if result.first_error.is_none() {
                result.first_error = part.first_error;
            }
            result.latencies_us.extend(part.latencies_us);
        }
        result.elapsed = start.elapsed();
        result.latencies_us.sort_unstable();
        result
    }

    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Runs `connections` closed-loop connections to `addr` for `duration`.
pub async fn run_load(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    request: RequestFn,
    check: CheckFn,
) -> LoadResult {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (request, check, counter) = (request.clone(), check.clone(), counter.clone());
        tasks.push(tokio::spawn(async move { connection(addr, deadline, request, check, counter).await }));
    }
    LoadResult::join(tasks, start).await
}

async fn connection(
    addr: SocketAddr,
    deadline: Instant,
    request: RequestFn,
    check: CheckFn,
    counter: Arc<AtomicU64>,
) -> LoadResult {
    let mut result = LoadResult::default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    while Instant::now() < deadline {
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(e) => {
                    result.failed(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected");
        let bytes = request(counter.fetch_add(1, Ordering::Relaxed));
        let sent = Instant::now();
        let answer = match s.write_all(&bytes).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok((200, body_start, close)) => {
                if check(&buf[body_start..]) {
                    result.succeeded(sent.elapsed());
                } else {
                    let body: String = String::from_utf8_lossy(&buf[body_start..]).chars().take(300).collect();
                    result.failed(body);
                }
                if close {
                    stream = None;
                }
            }
            Ok((status, body_start, _)) => {
                let body: String = String::from_utf8_lossy(&buf[body_start..]).chars().take(300).collect();
                result.failed(format!("HTTP {status}: {body}"));
                stream = None;
            }
            Err(e) => {
                result.failed(format!("I/O: {e}"));
                stream = None;
            }
        }
    }
    result
}

/// Sends one request on a new connection; returns the status and the body.
pub async fn single_request(addr: SocketAddr, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request).await?;
    let mut buf = Vec::new();
    let (status, body_start, _) = read_response(&mut stream, &mut buf).await?;
    Ok((status, buf.split_off(body_start)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response into `buf` (cleared first): the status, where the body starts in
/// `buf` (the body is decoded in place for chunked responses), and whether the server closes.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, usize, bool)> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let header = |name: &str| {
        head.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_owned()))
    };
    let close = header("connection").is_some_and(|v| v == "close");
    if let Some(length) = header("content-length") {
        let length: usize =
            length.parse().map_err(|_| std::io::Error::other(format!("bad content-length {length}")))?;
        while buf.len() < header_end + length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.truncate(header_end + length);
        return Ok((status, header_end, close));
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Decode the chunks into `body`, then put it after the head.
        let mut body = Vec::new();
        let mut at = header_end;
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[at..], b"\r\n") {
                    break at + i;
                }
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let size_text = String::from_utf8_lossy(&buf[at..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size_text}")))?;
            let data_start = line_end + 2;
            while buf.len() < data_start + size + 2 {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            if size == 0 {
                break;
            }
            body.extend_from_slice(&buf[data_start..data_start + size]);
            at = data_start + size + 2;
        }
        buf.truncate(header_end);
        buf.extend_from_slice(&body);
        return Ok((status, header_end, close));
    }
    // Neither: the body runs to the end of the connection.
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok((status, header_end, true));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
