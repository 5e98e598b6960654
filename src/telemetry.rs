//! Logging: human-readable on a terminal, JSON lines otherwise; and traces
//! (OpenTelemetry over OTLP/HTTP) when `telemetry.otlp` is configured.
//!
//! `RUST_LOG`, when set at start, overrides the configured level, and keeps
//! overriding it across config reloads: [`set_level`] leaves it in place.
//!
//! Spans for traces are all on the target [`TRACE_TARGET`]. The level
//! filter always carries a directive for it: `info` when traces are on,
//! `off` when they are not, so with traces off no span is ever built,
//! whatever the log level. With traces on, the OpenTelemetry layer sees
//! those spans and nothing else (no log event becomes a span event), and
//! each JSON log line written inside a request starts with its `trace_id`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, reload, EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat, OtlpConfig, TelemetryConfig};
use crate::error::BoxError;

/// The target of every span exported as a trace. Span macros need it
/// written out: `target: "cloakroom::trace"`.
pub const TRACE_TARGET: &str = "cloakroom::trace";

/// The span field that carries the request's trace id into log lines.
const TRACE_ID_FIELD: &str = "trace_id";

/// The installed filter, swapped by a reload of `log.level`.
struct Filter {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The filter came from `RUST_LOG`: a reload does not replace it.
    from_env: bool,
}

static FILTER: OnceLock<Filter> = OnceLock::new();

/// The trace pipeline, flushed by [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Traces are exported: spans are built and `traceparent` is sent.
static TRACES: AtomicBool = AtomicBool::new(false);

/// What [`set_level`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    Applied,
    /// `RUST_LOG` was set at start; it still decides.
    KeptRustLog,
    /// No subscriber of ours is installed (a test running the library).
    NotInstalled,
}

/// Installs the global subscriber and, when `telemetry.otlp` is set, the
/// trace exporter. A second call (tests) is a no-op. Fails only when the
/// exporter cannot be built.
pub fn init(config: &LogConfig, telemetry: &TelemetryConfig) -> Result<(), BoxError> {
    if FILTER.get().is_some() {
        return Ok(());
    }
    let provider = telemetry.otlp.as_ref().map(provider).transpose()?;
    let traces = provider.is_some();
    let (filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, true),
        Err(_) => (
            EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info")),
            false,
        ),
    };
    let filter = with_trace_directive(filter, traces);
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("cloakroom"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_level(false)
            .with_target(false)
            // Requests interleave on a worker thread: a span's parent is
            // its tracing parent, never a thread-local OpenTelemetry context.
            .with_context_activation(false)
            .with_filter(filter::filter_fn(|meta| {
                meta.is_span() && meta.target() == TRACE_TARGET
            }))
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(traces.then_some(TraceIds))
        .with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stdout);
    let installed = if json {
        let format = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false);
        registry
            .with(fmt.json().event_format(WithTraceId(format)))
            .try_init()
    } else {
        registry.with(fmt).try_init()
    };
    if installed.is_ok() {
        let _ = FILTER.set(Filter { handle, from_env });
        if let Some(provider) = provider {
            let _ = PROVIDER.set(provider);
            TRACES.store(true, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Replaces the level filter with `level` (already checked by the config
/// loader), unless `RUST_LOG` chose the filter at start.
pub fn set_level(level: &str) -> LevelChange {
    let Some(filter) = FILTER.get() else {
        return LevelChange::NotInstalled;
    };
    if filter.from_env {
        return LevelChange::KeptRustLog;
    }
    let Ok(new) = EnvFilter::try_new(level) else {
        // Unreachable for a loaded config: `log_filter::check` parses it too.
        return LevelChange::NotInstalled;
    };
    match filter.handle.reload(with_trace_directive(new, traces_on())) {
        Ok(()) => LevelChange::Applied,
        Err(_) => LevelChange::NotInstalled,
    }
}

/// Whether traces are exported.
pub fn traces_on() -> bool {
    TRACES.load(Ordering::Relaxed)
}

/// Exports every span still buffered. Blocks until the collector answered
/// or the exporter's timeout passed; call it off the async threads.
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "traces could not be flushed");
        }
    }
}

/// Flushes and stops the exporter; at the end of the process.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
        }
    }
}

/// Continues the trace of an incoming `traceparent` (and `tracestate`) on
/// `span`. Only for a request from a trusted proxy: anyone else's trace
/// context is ignored, so a client cannot pick the trace its requests
/// join, nor force them to be sampled.
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The trace id of `span`, recorded on it as `trace_id` so every log line
/// inside it carries the id. `None` when traces are off.
pub fn record_trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    let id = span_context.trace_id().to_string();
    span.record(TRACE_ID_FIELD, id.as_str());
    Some(id)
}

/// Renames a span already started (its trace id was read), as `otel.name`
/// can only rename a span not started yet.
pub fn rename(span: &Span, name: String) {
    if !span.is_disabled() {
        span.context().span().update_name(name);
    }
}

/// Writes `span`'s W3C trace context into `headers` (`traceparent`, and
/// `tracestate` when there is one), replacing whatever the request carried.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    headers.remove(&TRACEPARENT);
    headers.remove(&TRACESTATE);
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeadersMut(headers));
}

/// Removes the W3C trace context (`traceparent`, `tracestate`) and
/// `baggage` a request came with: for any peer but a trusted proxy, whether
/// traces are on or off, so a client can neither join a trace of its
/// choosing nor hand the upstream values it would take for a proxy's
/// (PX-38).
pub fn forget_context(headers: &mut HeaderMap) {
    for name in [&TRACEPARENT, &TRACESTATE, &BAGGAGE] {
        headers.remove(name);
    }
}

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
static BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// The OTLP/HTTP (protobuf) pipeline for `otlp`: batched, sampled by ratio
/// unless a (trusted) parent decided.
fn provider(otlp: &OtlpConfig) -> Result<SdkTracerProvider, BoxError> {
    // reqwest is built without a default crypto provider (see oidc/http.rs);
    // an https collector needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(otlp.traces_url())
        .build()?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(otlp.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(otlp.service_name.clone())
                .build(),
        )
        .build())
}

/// `filter` with the directive that turns trace spans on or off.
fn with_trace_directive(filter: EnvFilter, traces: bool) -> EnvFilter {
    let directive = if traces {
        "cloakroom::trace=info"
    } else {
        "cloakroom::trace=off"
    };
    match directive.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

// === the trace id in log lines ===

/// A span's `trace_id` field, kept where the log formatter finds it.
struct TraceId(String);

/// Keeps the `trace_id` a span records as its [`TraceId`] extension.
struct TraceIds;

impl<S> Layer<S> for TraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut found = FindTraceId(None);
        attrs.record(&mut found);
        if let (Some(trace_id), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().replace(TraceId(trace_id));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut found = FindTraceId(None);
        values.record(&mut found);
        if let (Some(trace_id), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().replace(TraceId(trace_id));
        }
    }
}

struct FindTraceId(Option<String>);

impl Visit for FindTraceId {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACE_ID_FIELD {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// A JSON line format with `"trace_id"` first when the event happens
/// inside a span that recorded one.
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let trace_id = ctx.event_scope().and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<TraceId>().map(|t| t.0.clone()))
        });
        let Some(trace_id) = trace_id else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            // A trace id is hex: nothing to escape.
            Some(rest) => write!(writer, "{{\"{TRACE_ID_FIELD}\":\"{trace_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

// === W3C trace context in HTTP headers ===

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is sent as no header at all.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}
