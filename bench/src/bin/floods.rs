//! Hostile floods against a real `meshsim sidecar` process on loopback, one after another,
//! while a good client keeps calling through it: for each flood, the sidecar's resident memory
//! (before, peak during, after) and the good client's latency (during, after), how many of its
//! requests failed, and what the sidecar counted. Prints the Markdown table the README shows.
//!
//! `cargo build --release --bin meshsim && cargo run --release -p bench --bin floods`
//! (`--meshsim PATH` for another binary). About a minute; needs ~6,000 file descriptors.
//!
//! Not a test: the figures depend on the machine. What each flood must do (status, counter,
//! recovery) is asserted by the loopback tests in `mesh-core/tests/` (limits, hostile_*).
#![allow(clippy::disallowed_methods)] // real sockets, wall-clock measurement, a child process

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const APP: &str = "127.0.0.1:24400";
const OUTBOUND: &str = "127.0.0.1:24401";
const INBOUND: &str = "127.0.0.1:24402";
const ADMIN: &str = "127.0.0.1:24403";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The sidecar's resident memory, MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1000.0)
        .unwrap_or(0.0)
}

/// One request on a keep-alive connection: the status and whether the connection is to be
/// closed, or `None` if it failed.
async fn exchange(s: &mut BufReader<TcpStream>, request: &[u8]) -> Option<(u16, bool)> {
    s.get_mut().write_all(request).await.ok()?;
    let mut line = String::new();
    s.read_line(&mut line).await.ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    let mut close = false;
    loop {
        line.clear();
        if s.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        close |= lower.starts_with("connection: close");
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    s.read_exact(&mut body).await.ok()?;
    Some((status, close))
}

async fn connect() -> Option<BufReader<TcpStream>> {
    TcpStream::connect(addr(OUTBOUND))
        .await
        .ok()
        .map(BufReader::new)
}

/// The good client: one GET every 10 ms on a keep-alive connection (reconnecting if it is
/// closed), latencies in µs, and how many failed.
struct Good {
    lat: hdrhistogram::Histogram<u64>,
    failed: u64,
}

async fn good_client(stop: Arc<AtomicBool>) -> Good {
    let mut g = Good {
        lat: hdrhistogram::Histogram::new(3).unwrap(),
        failed: 0,
    };
    let mut conn = connect().await;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if conn.is_none() {
            conn = connect().await;
        }
        let Some(c) = conn.as_mut() else {
            g.failed += 1;
            continue;
        };
        let t = Instant::now();
        match exchange(c, b"GET /good HTTP/1.1\r\nhost: echo\r\n\r\n").await {
            Some((200, close)) => {
                let _ = g.lat.record(t.elapsed().as_micros() as u64);
                if close {
                    conn = None;
                }
            }
            _ => {
                g.failed += 1;
                conn = None;
            }
        }
    }
    g
}

/// A flood: what it sends, as a future that ends when the flood is over.
type Flood = std::pin::Pin<Box<dyn std::future::Future<Output = String>>>;

/// `n` requests over `conns` keep-alive connections, each made by `req(i)`; a summary of the
/// statuses seen.
fn requests(
    n: usize,
    conns: usize,
    req: impl Fn(usize) -> Vec<u8> + Clone + Send + Sync + 'static,
) -> Flood {
    Box::pin(async move {
        let mut tasks = Vec::new();
        for c in 0..conns {
            let req = req.clone();
            tasks.push(tokio::spawn(async move {
                let mut seen = std::collections::BTreeMap::<String, u64>::new();
                let mut conn = connect().await;
                for i in (c..n).step_by(conns) {
                    if conn.is_none() {
                        conn = connect().await;
                    }
                    let status = match conn.as_mut() {
                        Some(s) => exchange(s, &req(i)).await,
                        None => None,
                    };
                    if status.is_none_or(|(_, close)| close) {
                        conn = None;
                    }
                    let key = status.map_or("closed".to_string(), |(s, _)| s.to_string());
                    *seen.entry(key).or_default() += 1;
                }
                seen
            }));
        }
        let mut all = std::collections::BTreeMap::<String, u64>::new();
        for t in tasks {
            for (k, v) in t.await.unwrap() {
                *all.entry(k).or_default() += v;
            }
        }
        all.iter()
            .map(|(k, v)| format!("{v}× {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// `n` connections that send `first` and then one byte of `drip` a second, held `hold`; how
/// many the sidecar had closed by then.
fn connections(n: usize, first: &'static [u8], drip: bool, hold: Duration) -> Flood {
    Box::pin(async move {
        let mut tasks = Vec::new();
        for i in 0..n {
            tasks.push(tokio::spawn(async move {
                // Spread over a second: a burst of thousands of SYNs overflows the kernel's
                // accept queue and measures the client's SYN retries, not the sidecar.
                tokio::time::sleep(Duration::from_micros(200 * i as u64)).await;
                let Ok(mut s) = TcpStream::connect(addr(OUTBOUND)).await else {
                    return true;
                };
                let _ = s.write_all(first).await;
                let end = Instant::now() + hold;
                let mut buf = [0u8; 64];
                while Instant::now() < end {
                    if drip && s.write_all(b"x").await.is_err() {
                        return true;
                    }
                    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return true,
                        _ => {}
                    }
                }
                false
            }));
        }
        let mut closed = 0;
        for t in tasks {
            closed += u64::from(t.await.unwrap());
        }
        format!(
            "{closed} of {n} closed by the sidecar within {} s",
            hold.as_secs()
        )
    })
}

/// The sidecar's counters whose names contain any of `keys`, from `/metrics`.
async fn counters(keys: &[&str]) -> String {
    let text = bench::sidecar::get_from(addr(ADMIN), "/metrics")
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && keys.iter().any(|k| l.contains(k)))
        .filter(|l| !l.ends_with(" 0"))
        .map(|l| l.replace("meshsim_", ""))
        .collect::<Vec<_>>()
        .join("; ")
}

fn pct(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let meshsim = std::env::args()
        .skip_while(|a| a != "--meshsim")
        .nth(1)
        .unwrap_or_else(|| "target/release/meshsim".into());
    // The app: echo, on its own runtime threads in this process.
    let app = tokio::net::TcpListener::bind(APP).await.unwrap();
    tokio::spawn(mesh_core::server::serve_http(
        mesh_core::net::TokioNet,
        app,
        mesh_core::testkit::echo,
        Arc::new(|_| {}),
    ));
    let mut child = std::process::Command::new(&meshsim)
        .args([
            "sidecar",
            "--outbound",
            OUTBOUND,
            "--inbound",
            INBOUND,
            "--app",
            APP,
        ])
        .args(["--admin", ADMIN, "--route", &format!("echo={APP}@http1")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{meshsim}: {e} (build it: cargo build --release --bin meshsim)")
        });
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let floods: Vec<(&str, Flood, &[&str])> = vec![
        (
            "20,000 requests, each to a different unknown `Host`",
            requests(20_000, 50, |i| {
                format!("GET / HTTP/1.1\r\nhost: h{i}.example\r\n\r\n").into_bytes()
            }),
            &["service=\"unknown\",reason"],
        ),
        (
            "200 scrapes of `/metrics` back to back",
            Box::pin(async {
                for _ in 0..200 {
                    counters(&["never"]).await;
                }
                "200 scrapes".to_string()
            }),
            &[],
        ),
        (
            "5,000 connections that send nothing",
            connections(5_000, b"", false, Duration::from_secs(12)),
            &["header_timeout"],
        ),
        (
            "the same 5,000 again (memory is reused, not grown)",
            connections(5_000, b"", false, Duration::from_secs(12)),
            &["header_timeout"],
        ),
        (
            "1,000 slowloris connections (a header byte a second)",
            connections(
                1_000,
                b"GET / HTTP/1.1\r\nhost: echo\r\nx-a: ",
                true,
                Duration::from_secs(12),
            ),
            &["header_timeout"],
        ),
        (
            "2,000 requests with a 64 KiB header",
            requests(2_000, 20, |_| {
                format!(
                    "GET / HTTP/1.1\r\nhost: echo\r\nx-big: {}\r\n\r\n",
                    "a".repeat(64 << 10)
                )
                .into_bytes()
            }),
            &["headers_too_large"],
        ),
        (
            "2,000 requests with malformed chunked bodies",
            requests(2_000, 20, |_| {
                b"POST / HTTP/1.1\r\nhost: echo\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"
                    .to_vec()
            }),
            &["downstream", "upstream_reset"],
        ),
        (
            "5,000 `OPTIONS *`",
            requests(5_000, 20, |_| {
                b"OPTIONS * HTTP/1.1\r\nhost: echo\r\n\r\n".to_vec()
            }),
            &["bad_target"],
        ),
        (
            "2,000 requests with two `Host` headers",
            requests(2_000, 20, |_| {
                b"GET / HTTP/1.1\r\nhost: echo\r\nhost: other\r\n\r\n".to_vec()
            }),
            &["bad_authority"],
        ),
    ];

    println!(
        "| flood | sidecar RSS before → peak → after (MB) | good client P50 / P99 during (ms) | after (ms) | good requests failed | the flood saw | the sidecar counted |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, flood, keys) in floods {
        // A quiet second first: the "before" figures.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_mb(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let good = tokio::spawn(good_client(stop.clone()));
        let sampling = Arc::new(AtomicBool::new(false));
        let peak = {
            let sampling = sampling.clone();
            tokio::spawn(async move {
                let mut peak: f64 = 0.0;
                while !sampling.load(Ordering::Relaxed) {
                    peak = peak.max(rss_mb(pid));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                peak
            })
        };
        let saw = flood.await;
        stop.store(true, Ordering::Relaxed);
        sampling.store(true, Ordering::Relaxed);
        let during = good.await.unwrap();
        let peak = peak.await.unwrap();
        // Two seconds after: does the good client get its old latency back, and memory?
        let stop = Arc::new(AtomicBool::new(false));
        let good = tokio::spawn(good_client(stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let after = good.await.unwrap();
        let rss_after = rss_mb(pid);
        println!(
            "| {name} | {before:.1} → {peak:.1} → {rss_after:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {} of {} | {saw} | {} |",
            pct(&during.lat, 0.5),
            pct(&during.lat, 0.99),
            pct(&after.lat, 0.5),
            pct(&after.lat, 0.99),
            during.failed + after.failed,
            during.lat.len() + after.lat.len() + during.failed + after.failed,
            counters(keys).await,
        );
    }
    let alive = child.try_wait().unwrap().is_none();
    println!(
        "\nThe sidecar was {} at the end.",
        if alive { "still serving" } else { "GONE" }
    );
    let _ = child.kill();
    let _ = child.wait();
}
