//! `GET /metrics`: the service in Prometheus' (OpenMetrics) text format — what the engine holds,
//! operations by result, each operation's latency as a histogram, events delivered, the stores'
//! queues and failures.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tapir::core::gate::{AddressOperation, CallOperation, SessionOperation};
use tapir::core::state::CallStateKind;
use tapir_cdr::Recorder;

/// One label: its name and value, both from the service's own tables.
type Label = [(&'static str, &'static str); 1];

/// A constructor of latency histograms: 100 µs to about 3 s, doubling.
type NewHistogram = fn() -> Histogram;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// The service's metrics. Counters and histograms are updated as things happen; the gauges are
/// read from the engine and the stores when scraped.
pub(crate) struct Metrics {
    registry: Registry,
    operations: Family<Label, Counter>,
    latency: Family<Label, Histogram, NewHistogram>,
    events_delivered: Counter,
    store_errors: Counter,
    socket_commands: Counter,
    /// Totals the engine keeps, brought up to date when scraped.
    provider_faults: Counter,
    refused_reports: Counter,
    gauges: Gauges,
}

/// What is read from the engine and the stores when scraped.
struct Gauges {
    sessions: Gauge,
    calls: Gauge,
    call_handles: Gauge,
    line_handles: Gauge,
    pending_requests: Gauge,
    logons: Gauge,
    queue_depth: Gauge,
    queue_longest: Gauge,
    store_queue: Gauge,
    cdr_queue: Gauge,
    calls_by_state: Family<Label, Gauge>,
}

impl Metrics {
    /// The metrics of a service whose call records (if it keeps them) `records` writes.
    pub(crate) fn new(records: Option<Recorder>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(RecordTotals(records)));
        let operations = Family::<Label, Counter>::default();
        registry.register(
            "tapir_operations",
            "API operations by result: ok, or the error code",
            operations.clone(),
        );
        let latency =
            Family::<Label, Histogram, NewHistogram>::new_with_constructor(latency_histogram);
        registry.register(
            "tapir_operation_duration_seconds",
            "Time from an operation's request to its completion, by operation",
            latency.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let events_delivered = counter(
            &mut registry,
            "tapir_events_delivered",
            "Events sent to WebSocket clients",
        );
        let store_errors = counter(
            &mut registry,
            "tapir_store_errors",
            "Writes the store could not make",
        );
        let socket_commands = counter(
            &mut registry,
            "tapir_socket_commands",
            "Requests received over command sockets (/v1/commands)",
        );
        let provider_faults = counter(
            &mut registry,
            "tapir_provider_faults",
            "Provider operations that panicked or did not finish within the engine's deadline",
        );
        let refused_reports = counter(
            &mut registry,
            "tapir_provider_refused_reports",
            "Provider reports the engine refused (unknown calls or lines, forbidden transitions, text too long …)",
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let gauges = Gauges {
            sessions: gauge(&mut registry, "tapir_sessions", "Application sessions"),
            calls: gauge(&mut registry, "tapir_calls", "Calls the engine tracks"),
            call_handles: gauge(&mut registry, "tapir_call_handles", "Call handles held"),
            line_handles: gauge(&mut registry, "tapir_line_handles", "Line opens held"),
            pending_requests: gauge(
                &mut registry,
                "tapir_pending_requests",
                "Call-creating requests waiting for their provider",
            ),
            logons: gauge(&mut registry, "tapir_clients", "Network log-ons"),
            queue_depth: gauge(
                &mut registry,
                "tapir_event_queue_depth",
                "Events waiting in sessions' queues",
            ),
            queue_longest: gauge(
                &mut registry,
                "tapir_event_queue_longest",
                "The longest backlog of one event reader",
            ),
            store_queue: gauge(
                &mut registry,
                "tapir_store_queue_depth",
                "Journal events waiting to be written to the store",
            ),
            cdr_queue: gauge(
                &mut registry,
                "tapir_cdr_queue_depth",
                "Call detail records waiting to be written",
            ),
            calls_by_state: Family::default(),
        };
        registry.register(
            "tapir_calls_by_state",
            "Calls by state",
            gauges.calls_by_state.clone(),
        );
        Self {
            registry,
            operations,
            latency,
            events_delivered,
            store_errors,
            socket_commands,
            provider_faults,
            refused_reports,
            gauges,
        }
    }

    /// Counts an operation's result: `ok`, or the error's code.
    pub(crate) fn operation(&self, result: &'static str) {
        self.operations.get_or_create(&[("result", result)]).inc();
    }

    /// Records how long operation `name` took, if it is one of the gate's operations (anything
    /// else a client sends is no label).
    pub(crate) fn observe(&self, name: &str, took: Duration) {
        let Some(name) = operation_name(name) else {
            return;
        };
        self.latency
            .get_or_create(&[("operation", name)])
            .observe(took.as_secs_f64());
    }

    pub(crate) fn events_delivered(&self, n: u64) {
        self.events_delivered.inc_by(n);
    }

    pub(crate) fn store_error(&self) {
        self.store_errors.inc();
    }

    pub(crate) fn socket_command(&self) {
        self.socket_commands.inc();
    }
}

/// The record writer's own totals, read when scraped.
struct RecordTotals(Option<Recorder>);

impl std::fmt::Debug for RecordTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordTotals")
    }
}

impl Collector for RecordTotals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.0.as_ref().map(|r| r.stats()).unwrap_or_default();
        for (name, help, value) in [
            (
                "tapir_cdr_written",
                "Call detail records written to the store",
                totals.written,
            ),
            (
                "tapir_cdr_lost",
                "Call detail records lost (write queue full, or the store refused their batch)",
                totals.lost,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// The gate's own spelling of an operation's name (so a label is always one of a known few).
fn operation_name(name: &str) -> Option<&'static str> {
    CallOperation::ALL
        .iter()
        .map(|o| o.name())
        .chain(AddressOperation::ALL.iter().map(|o| o.name()))
        .chain(SessionOperation::ALL.iter().map(|o| o.name()))
        .find(|n| *n == name)
}

/// What the engine and the stores hold when scraped.
pub(crate) struct Holding {
    pub(crate) engine: tapir::EngineStats,
    pub(crate) logons: usize,
    pub(crate) store_queue: usize,
    pub(crate) cdr_queue: usize,
}

impl Metrics {
    /// The exposition, with the gauges set from `now`.
    pub(crate) fn render(&self, now: &Holding) -> String {
        let stats = &now.engine;
        let g = &self.gauges;
        let set = |gauge: &Gauge, v: usize| {
            gauge.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&g.sessions, stats.sessions);
        set(&g.calls, stats.calls);
        set(&g.call_handles, stats.call_handles);
        set(&g.line_handles, stats.line_handles);
        set(&g.pending_requests, stats.pending_requests);
        set(&g.logons, now.logons);
        set(&g.queue_depth, stats.queued_events);
        set(&g.queue_longest, stats.longest_queue);
        set(&g.store_queue, now.store_queue);
        set(&g.cdr_queue, now.cdr_queue);
        // The engine's totals only grow: each counter is moved up to its total.
        for (counter, total) in [
            (&self.provider_faults, stats.provider_faults),
            (&self.refused_reports, stats.refused_reports),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        for kind in CallStateKind::ALL {
            let n = stats
                .calls_by_state
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |(_, n)| *n);
            set(
                &g.calls_by_state.get_or_create(&[("state", kind.name())]),
                n,
            );
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            out = format!("# the metrics could not be written: {e}\n");
        }
        out
    }
}
