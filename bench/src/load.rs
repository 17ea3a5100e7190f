//! An open-loop HTTP load generator with coordinated-omission correction, in the manner of wrk2.
//!
//! Requests are *scheduled* at a fixed rate whatever the target does: request *i* is due at
//! `start + i / rate`, handed round robin to one of `connections` connections. Its latency is
//! measured from that intended time, not from when it was actually sent, so a target that stalls
//! is charged for every request that should have gone out meanwhile (a closed-loop generator
//! would politely wait and report a flattering percentile: coordinated omission).
//!
//! How: one OS thread keeps the schedule with `std::thread::sleep` after lowering the thread's
//! timer slack to 1 ns (Linux; tokio's timer has 1 ms granularity, which at 8,000 rps would be
//! most of what we measure), and passes each due time to its connection's task on a
//! current-thread tokio runtime on a second thread. HTTP/1.1 connections carry one request at a
//! time (a due request waits for its connection, and that wait counts); HTTP/2 connections
//! multiplex. Connections are hyper's own client connections, one TCP connection each.
//!
//! Not here: TLS to the target, request bodies, and ramping rates (the matrix runs one rate per
//! point). Loopback only: nothing stops a non-loopback target, but the numbers assume one.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // the wall clock and OS threads are what a real-socket bench runs on

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::registry::Protocol;
use reports::bench::LoadStats;
use tokio::sync::mpsc;

/// What to send, how fast, for how long.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Where to connect.
    pub target: SocketAddr,
    /// `Host` header (a proxy routes by it).
    pub host: String,
    /// Path of every request (`GET`).
    pub path: String,
    /// HTTP/1.1 or HTTP/2 (h2c, prior knowledge).
    pub protocol: Protocol,
    /// Requests per second, over all connections.
    pub rate_rps: f64,
    /// TCP connections.
    pub connections: usize,
    /// Sending time, warm-up included.
    pub duration: Duration,
    /// Requests due before this are sent but not measured.
    pub warmup: Duration,
    /// Stop after this many requests (warm-up included), if set.
    pub max_requests: Option<u64>,
    /// A request unanswered after this is an error (`timeout`).
    pub timeout: Duration,
}

/// What the measured part of a run saw.
#[derive(Debug)]
pub struct LoadResult {
    /// Latency from intended send time to the last body byte, µs, successful requests only.
    pub histogram: Histogram<u64>,
    /// Measured requests that were due (sent or not).
    pub due: u64,
    /// Of those, answered with 2xx.
    pub ok: u64,
    /// Failures by kind (`connect`, `http_503`, `timeout`, `io`).
    pub errors: BTreeMap<String, u64>,
    /// The measured window: from the end of warm-up to the last answer (at least the scheduled
    /// time).
    pub window: Duration,
}

impl LoadResult {
    /// Percentiles and rates.
    pub fn summary(&self, rate_rps: f64) -> LoadStats {
        let q = |p: f64| self.histogram.value_at_quantile(p);
        LoadStats {
            rate_rps,
            achieved_rps: self.ok as f64 / self.window.as_secs_f64().max(1e-9),
            due: self.due,
            ok: self.ok,
            errors: self.errors.clone(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: self.histogram.max(),
        }
    }

    /// Latency at fixed percentiles, (fraction, µs), for a percentile-spectrum plot.
    pub fn spectrum(&self) -> Vec<[f64; 2]> {
        [
            0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999,
        ]
        .into_iter()
        .map(|q| [q, self.histogram.value_at_quantile(q) as f64])
        .collect()
    }

    /// The percentile distribution in HdrHistogram's text format (`.hgrm`, values in ms), as
    /// wrk2 and HdrHistogram's plotter read it.
    pub fn hgrm(&self) -> String {
        let h = &self.histogram;
        let mut out = format!(
            "{:>12} {:>14} {:>10} {:>14}\n\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let p = v.quantile_iterated_to();
            let inv = if p < 1.0 {
                format!("{:>14.2}", 1.0 / (1.0 - p))
            } else {
                format!("{:>14}", "inf")
            };
            out.push_str(&format!(
                "{:>12.3} {:>14.12} {:>10} {inv}\n",
                v.value_iterated_to() as f64 / 1000.0,
                p,
                total
            ));
        }
        out.push_str(&format!(
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]\n#[Max     = {:>12.3}, Total count    = {:>12}]\n",
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.max() as f64 / 1000.0,
            h.len()
        ));
        out
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad settings.
    #[error("invalid load: {0}")]
    Invalid(String),
    /// The generator's runtime could not start.
    #[error("load generator runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

#[derive(Default)]
struct Tally {
    hist: Option<Histogram<u64>>,
    due: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// When the last measured request finished.
    last_done: Option<Instant>,
}

impl Tally {
    fn record(&mut self, measured: bool, outcome: Result<Duration, String>) {
        if !measured {
            return;
        }
        self.due += 1;
        let now = Instant::now();
        self.last_done = Some(self.last_done.map_or(now, |t| t.max(now)));
        match outcome {
            Ok(lat) => {
                self.ok += 1;
                if let Some(h) = &mut self.hist {
                    h.saturating_record(lat.as_micros().max(1) as u64);
                }
            }
            Err(kind) => *self.errors.entry(kind).or_insert(0) += 1,
        }
    }
}

/// Run `spec` to completion (blocking): schedule, send, wait for the stragglers, tally.
pub fn run(spec: &LoadSpec) -> Result<LoadResult, LoadError> {
    if !(spec.rate_rps > 0.0 && spec.rate_rps.is_finite()) || spec.connections == 0 {
        return Err(LoadError::Invalid(
            "rate must be above 0 and connections at least 1".into(),
        ));
    }
    if spec.warmup >= spec.duration {
        return Err(LoadError::Invalid(
            "warm-up must be shorter than the run".into(),
        ));
    }
    let tally = Arc::new(Mutex::new(Tally {
        hist: Some(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")),
        ..Tally::default()
    }));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..spec.connections {
        let (tx, rx) = mpsc::unbounded_channel::<Instant>();
        senders.push(tx);
        receivers.push(rx);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + spec.warmup;
    let spec2 = spec.clone();
    let tally2 = tally.clone();
    let worker = std::thread::Builder::new()
        .name("load-conns".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for rx in receivers {
                    let spec = spec2.clone();
                    let tally = tally2.clone();
                    tasks.push(tokio::spawn(connection(spec, rx, measure_from, tally)));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })?;
    // The schedule, on this thread.
    set_timer_slack_ns(1);
    let interval = Duration::from_secs_f64(1.0 / spec.rate_rps);
    let end = start + spec.duration;
    let mut i: u64 = 0;
    loop {
        let due = start + interval.mul_f64(i as f64);
        if due >= end || spec.max_requests.is_some_and(|m| i >= m) {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if senders[(i % senders.len() as u64) as usize]
            .send(due)
            .is_err()
        {
            break;
        }
        i += 1;
    }
    drop(senders);
    let _ = worker.join();
    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
    // Throughput is what finished per second of the time it took: a target that falls behind
    // drains its backlog after the schedule ends, and that time counts.
    let scheduled = Duration::from_secs_f64(
        (i as f64 * interval.as_secs_f64() - spec.warmup.as_secs_f64()).max(1e-3),
    );
    let window = t.last_done.map_or(scheduled, |d| {
        scheduled.max(d.saturating_duration_since(measure_from))
    });
    Ok(LoadResult {
        histogram: t.hist.take().expect("histogram"),
        due: t.due,
        ok: t.ok,
        errors: std::mem::take(&mut t.errors),
        window,
    })
}

/// Lower this thread's timer slack so `sleep` wakes within microseconds instead of the default
/// 50 µs late (Linux; elsewhere a no-op).
#[allow(unsafe_code)]
fn set_timer_slack_ns(ns: u64) {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer and changes only this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = ns;
}

type H1 = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;
type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

enum Conn {
    H1(H1),
    H2(H2),
}

async fn connect(spec: &LoadSpec) -> Result<Conn, String> {
    let tcp = tokio::net::TcpStream::connect(spec.target)
        .await
        .map_err(|_| "connect".to_string())?;
    let _ = tcp.set_nodelay(true);
    let io = TokioIo::new(tcp);
    match spec.protocol {
        Protocol::Http1 => {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|_| "connect".to_string())?;
            tokio::spawn(conn);
            Ok(Conn::H1(send))
        }
        Protocol::Http2 => {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| "connect".to_string())?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        }
    }
}

fn request(spec: &LoadSpec) -> http::Request<Empty<Bytes>> {
    let uri = match spec.protocol {
        // Origin form on HTTP/1.1; HTTP/2 needs scheme and authority for its pseudo-headers.
        Protocol::Http1 => spec.path.clone(),
        Protocol::Http2 => format!("http://{}{}", spec.host, spec.path),
    };
    let mut b = http::Request::get(uri);
    if spec.protocol == Protocol::Http1 {
        // HTTP/2 carries the name as :authority only; nginx refuses a request with both.
        b = b.header(http::header::HOST, spec.host.as_str());
    }
    b.body(Empty::new()).expect("valid request")
}

async fn exchange(
    send: impl std::future::Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
) -> Result<(), String> {
    let resp = send.await.map_err(|_| "io".to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|_| "io".to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("http_{}", status.as_u16()))
    }
}

async fn connection(
    spec: LoadSpec,
    mut rx: mpsc::UnboundedReceiver<Instant>,
    measure_from: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut conn: Option<Conn> = None;
    let mut streams = tokio::task::JoinSet::new();
    while let Some(due) = rx.recv().await {
        while streams.try_join_next().is_some() {}
        let measured = due >= measure_from;
        // A peer may close an HTTP/2 connection whenever it likes (nginx sends GOAWAY after
        // 1,000 requests by default); the next request then opens a new one.
        if matches!(&conn, Some(Conn::H2(s)) if s.is_closed()) {
            conn = None;
        }
        if conn.is_none() {
            match connect(&spec).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    record(&tally, measured, Err(e));
                    continue;
                }
            }
        }
        match conn.as_mut().expect("connected") {
            Conn::H1(send) => {
                let outcome = tokio::time::timeout(spec.timeout, async {
                    send.ready().await.map_err(|_| "io".to_string())?;
                    exchange(send.send_request(request(&spec))).await
                })
                .await
                .unwrap_or_else(|_| Err("timeout".into()));
                let failed_io = matches!(&outcome, Err(e) if e == "io" || e == "timeout");
                record(&tally, measured, outcome.map(|_| due.elapsed()));
                if failed_io {
                    conn = None;
                }
            }
            Conn::H2(send) => {
                let mut send = send.clone();
                let spec = spec.clone();
                let tally = tally.clone();
                streams.spawn(async move {
                    let outcome = tokio::time::timeout(spec.timeout, async {
                        send.ready().await.map_err(|_| "io".to_string())?;
                        exchange(send.send_request(request(&spec))).await
                    })
                    .await
                    .unwrap_or_else(|_| Err("timeout".into()));
                    record(&tally, measured, outcome.map(|_| due.elapsed()));
                });
            }
        }
    }
    while streams.join_next().await.is_some() {}
}

fn record(tally: &Mutex<Tally>, measured: bool, outcome: Result<Duration, String>) {
    tally
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record(measured, outcome);
}
