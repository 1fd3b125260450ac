//! A small hand-written Prometheus registry: counters and histograms kept in atomics or behind a
//! short mutex, rendered as text exposition format at scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_llm::{Completion, RunningModel};

use crate::AppState;

const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const TOKENS_PER_SECOND_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative count per bound; the `+Inf` bucket is `count`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b)
            && let Some(c) = self.counts.get_mut(i)
        {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The server's metrics. Label sets are bounded: routes are the router's patterns (or
/// `unmatched`), methods a fixed list (or `other`), statuses three digits.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    prompt_tokens: AtomicU64,
    cached_prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    tokens_per_second: Mutex<Histogram>,
    in_flight: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            durations: Mutex::default(),
            prompt_tokens: AtomicU64::new(0),
            cached_prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            tokens_per_second: Mutex::new(Histogram::new(TOKENS_PER_SECOND_BUCKETS)),
            in_flight: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts a generation as in flight (waiting or generating) while alive.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let _ = self
            .0
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

impl Metrics {
    /// One finished HTTP exchange. For streaming answers `elapsed` ends when the headers are sent.
    pub fn record_request(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let method = method_label(method);
        *lock(&self.requests)
            .entry((route.to_owned(), method, status))
            .or_insert(0) += 1;
        lock(&self.durations)
            .entry(route.to_owned())
            .or_insert_with(|| Histogram::new(DURATION_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// Counts of a finished generation.
    pub fn record_generation(&self, c: &Completion) {
        self.prompt_tokens
            .fetch_add(u64::from(c.prompt_tokens), Ordering::Relaxed);
        self.cached_prompt_tokens
            .fetch_add(u64::from(c.cached_prompt_tokens), Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(u64::from(c.completion_tokens), Ordering::Relaxed);
        let secs = c.eval_duration.as_secs_f64();
        if c.completion_tokens > 0 && secs > 0.0 {
            lock(&self.tokens_per_second).observe(f64::from(c.completion_tokens) / secs);
        }
    }

    pub fn generation_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Prometheus text exposition format.
    pub fn render(&self, running: &[RunningModel]) -> String {
        let mut out = String::new();
        out.push_str("# HELP hearth_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE hearth_http_requests_total counter\n");
        for ((route, method, status), n) in lock(&self.requests).iter() {
            let route = escape(route);
            let _ = writeln!(
                out,
                "hearth_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP hearth_http_request_duration_seconds Time to answer a request (to the first byte for streams).\n",
        );
        out.push_str("# TYPE hearth_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.durations).iter() {
            let labels = format!("route=\"{}\"", escape(route));
            h.render(&mut out, "hearth_http_request_duration_seconds", &labels);
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "hearth_prompt_tokens_total",
            "Prompt tokens evaluated by finished generations.",
            self.prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "hearth_prompt_tokens_cached_total",
            "Of the prompt tokens, those reused from the prefix cache or a running request instead of computed.",
            self.cached_prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "hearth_generated_tokens_total",
            "Tokens generated by finished generations.",
            self.generated_tokens.load(Ordering::Relaxed),
        );
        out.push_str(
            "# HELP hearth_generation_tokens_per_second Generation speed of finished generations.\n",
        );
        out.push_str("# TYPE hearth_generation_tokens_per_second histogram\n");
        lock(&self.tokens_per_second).render(&mut out, "hearth_generation_tokens_per_second", "");
        gauge(
            &mut out,
            "hearth_queue_depth",
            "Generation requests in flight (waiting for the model or generating).",
            self.in_flight.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "hearth_loaded_models",
            "Models loaded in memory.",
            u64::try_from(running.len()).unwrap_or(u64::MAX),
        );
        out
    }
}

/// Middleware counting every request under its route pattern.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let start = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .record_request(&route, &method, response.status().as_u16(), start.elapsed());
    response
}

/// `GET /metrics`
pub async fn scrape(State(state): State<AppState>) -> Response {
    let running = state.models.running().await;
    let text = state.metrics.render(&running);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
