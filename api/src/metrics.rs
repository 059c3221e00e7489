//! Prometheus metrics at `/metrics`: HTTP requests and latencies (actix-web-prom), and the
//! ledger's own figures: commands committed, events appended, concurrency conflicts,
//! idempotent replays, group commits (with histograms of their duration and size), lookups
//! in the cache of folded streams, the log's head position and the projections' lag behind it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use ledger::service::{Ledger, LedgerStats};
use ledger::state_cache::StateCache;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts};

/// Reads the ledger's counters at scrape time.
struct LedgerCollector {
    stats: Arc<LedgerStats>,
    store: ledger::store::Store,
    states: Arc<StateCache>,
    descs: Vec<Desc>,
}

const COUNTERS: [(&str, &str); 8] = [
    ("techmarket_commands_committed_total", "Commands whose events were committed."),
    ("techmarket_events_appended_total", "Events appended to the log by this process."),
    (
        "techmarket_concurrency_conflicts_total",
        "Appends refused because a stream changed meanwhile (then decided again).",
    ),
    ("techmarket_idempotent_replays_total", "Requests answered from an earlier request with the same idempotency key."),
    ("techmarket_append_batches_total", "Transactions (group commits) the appends of this process took."),
    (
        "techmarket_append_batch_requests_total",
        "Append requests carried by those transactions (requests / batches = the mean batch size).",
    ),
    (
        "techmarket_state_cache_hits_total",
        "Streams a decision found in the cache of folded streams (nothing read from the log).",
    ),
    ("techmarket_state_cache_misses_total", "Streams a decision looked for in that cache and read from the log."),
];

impl LedgerCollector {
    fn values(&self) -> [u64; 8] {
        let s = &self.stats;
        let group = self.store.group_commit_stats();
        let cache = self.states.lookups();
        [
            s.commands_committed.load(Ordering::Relaxed),
            s.events_appended.load(Ordering::Relaxed),
            s.concurrency_conflicts.load(Ordering::Relaxed),
            s.idempotent_replays.load(Ordering::Relaxed),
            group.batches,
            group.requests,
            cache.hits,
            cache.misses,
        ]
    }
}

impl Collector for LedgerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        COUNTERS
            .iter()
            .zip(self.values())
            .flat_map(|((name, help), value)| {
                let counter = IntCounter::new(*name, *help).expect("valid metric name");
                counter.inc_by(value);
                counter.collect()
            })
            .collect()
    }
}

/// The middleware (which serves `/metrics`) with the ledger's metrics registered in it.
pub fn build(ledger: &Ledger) -> anyhow::Result<(PrometheusMetrics, LagGauges)> {
    let prometheus = PrometheusMetricsBuilder::new("techmarket")
        .endpoint("/metrics")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the metrics middleware: {e}"))?;
    let descs = COUNTERS
        .iter()
        .flat_map(|(name, help)| {
            IntCounter::new(*name, *help).expect("valid metric name").desc().into_iter().cloned().collect::<Vec<_>>()
        })
        .collect();
    prometheus.registry.register(Box::new(LedgerCollector {
        stats: ledger.stats_handle(),
        store: ledger.store().clone(),
        states: ledger.state_cache_handle(),
        descs,
    }))?;
    let lag = LagGauges {
        head: IntGauge::with_opts(Opts::new("techmarket_log_head_position", "The last position of the event log."))?,
        lag: IntGauge::with_opts(Opts::new(
            "techmarket_projection_lag_events",
            "Events in the log not yet applied by the slowest projection (0 when projections keep up).",
        ))?,
    };
    observe_append_batches(&prometheus.registry, ledger)?;
    prometheus.registry.register(Box::new(lag.head.clone()))?;
    prometheus.registry.register(Box::new(lag.lag.clone()))?;
    Ok((prometheus, lag))
}

/// Histograms of the append batches (group commits) of this process: how long each took from
/// `BEGIN` to its commit, and how many requests it carried.
fn observe_append_batches(registry: &prometheus::Registry, ledger: &Ledger) -> anyhow::Result<()> {
    let seconds = Histogram::with_opts(
        HistogramOpts::new(
            "techmarket_append_batch_seconds",
            "Time an append batch (one transaction, one commit) took from BEGIN to its commit.",
        )
        .buckets(vec![0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
    )?;
    let requests = Histogram::with_opts(
        HistogramOpts::new("techmarket_append_batch_size", "Append requests one batch carried.")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
    )?;
    registry.register(Box::new(seconds.clone()))?;
    registry.register(Box::new(requests.clone()))?;
    ledger.store().observe_append_batches(std::sync::Arc::new(move |size, took| {
        seconds.observe(took.as_secs_f64());
        requests.observe(size as f64);
    }));
    Ok(())
}

/// Gauges refreshed in the background from the database.
#[derive(Clone)]
pub struct LagGauges {
    head: IntGauge,
    lag: IntGauge,
}

impl LagGauges {
    /// Refreshes the gauges every `every` until the process ends.
    pub fn spawn_refresh(self, ledger: Ledger, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let store = ledger.store();
                let head = match store.head().await {
                    Ok(h) => h.map_or(0, |(p, _)| p),
                    Err(_) => continue,
                };
                let mut slowest = head;
                for projection in [ledger::readmodel::PROJECTION, ledger::store::POLICY_PROJECTION] {
                    if let Ok(p) = store.projection_position(projection).await {
                        slowest = slowest.min(p);
                    }
                }
                self.head.set(head);
                self.lag.set(head - slowest);
            }
        });
    }
}
