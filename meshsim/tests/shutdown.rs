//! A sidecar stopped the way Kubernetes stops a pod (SIGTERM), on real sockets: the requests in
//! flight finish and are logged, a keep-alive connection is closed after its answer, an idle one
//! is closed, new connections are refused, `/ready` says draining, the process exits 0 as soon as
//! the last request is answered; a sidecar started again on the same ports serves at once.
#![allow(clippy::disallowed_methods)] // real processes, real sockets, wall-clock waits

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests the app has begun to answer.
static SEEN: AtomicUsize = AtomicUsize::new(0);

const APP: &str = "127.0.0.1:24300";
const OUTBOUND: &str = "127.0.0.1:24301";
const INBOUND: &str = "127.0.0.1:24302";
const ADMIN: &str = "127.0.0.1:24303";
/// How long the app takes to answer: the window in which the sidecar is told to stop.
const SLOW: Duration = Duration::from_millis(1_500);

/// The child killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sidecar(log: &std::path::Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_meshsim"))
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
        .args(["--drain", "5s", "--access-log"])
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// An app that answers every request `SLOW` after reading its head, and keeps connections open.
fn slow_app() {
    let listener = TcpListener::bind(APP).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    // Read one request head.
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    SEEN.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(SLOW);
                    let ok = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nslow\n");
                    if ok.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// One request on `s`; the response head and body, read by its content-length.
fn exchange(s: &mut TcpStream, close: bool) -> String {
    let conn = if close { "close" } else { "keep-alive" };
    write!(
        s,
        "GET /slow HTTP/1.1\r\nhost: echo\r\nconnection: {conn}\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return head;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let s =
        TcpStream::connect_timeout(&addr.parse::<SocketAddr>().unwrap(), Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn ready() -> Option<String> {
    let mut s = connect(ADMIN).ok()?;
    s.write_all(b"GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().next().map(str::to_string)
}

fn wait_ready() {
    let start = Instant::now();
    while ready().as_deref() != Some("HTTP/1.1 200 OK") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sidecar never ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_drains_in_flight_requests_refuses_new_ones_and_loses_nothing() {
    slow_app();
    let log = std::env::temp_dir().join(format!("meshsim-drain-{}.log", std::process::id()));
    let mut proc = sidecar(&log);
    wait_ready();

    // Before the signal: three requests in flight (one on a keep-alive connection) and one
    // idle keep-alive connection.
    let mut idle = connect(OUTBOUND).unwrap();
    let in_flight: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(OUTBOUND).unwrap();
                let keep_alive = i == 0;
                let answer = exchange(&mut s, !keep_alive);
                // After its answer, a keep-alive connection is closed by the draining sidecar.
                let mut rest = Vec::new();
                let closed = s.read_to_end(&mut rest).is_ok() && rest.is_empty();
                (answer, keep_alive, closed)
            })
        })
        .collect();
    // Signal once all three are at the app (so in flight in the sidecar).
    let start = Instant::now();
    while SEEN.load(Ordering::SeqCst) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "requests never reached the app"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let signalled = Instant::now();
    let pid = proc.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

    // During the drain: new connections are refused (from the moment the signal is handled),
    // `/ready` says not ready, the idle connection is closed.
    while connect(OUTBOUND).is_ok() {
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "new connections still accepted 1 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(ready().as_deref(), Some("HTTP/1.1 503 Service Unavailable"));
    let mut rest = Vec::new();
    assert_eq!(
        idle.read_to_end(&mut rest).unwrap(),
        0,
        "idle connection not closed"
    );

    // The requests in flight all finish, answered by the app.
    for t in in_flight {
        let (answer, keep_alive, closed) = t.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("slow\n"), "{answer}");
        if keep_alive {
            assert!(
                closed,
                "a keep-alive connection stayed open after the drain"
            );
        }
    }

    // The process exits by itself, successfully, once they have: well before the grace ends.
    let status = loop {
        if let Some(s) = proc.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(4),
            "still running after the drain"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");

    // Nothing lost: every answered request is in the access log, written before the exit.
    let text = std::fs::read_to_string(&log).unwrap();
    let served = text
        .lines()
        .filter(|l| l.contains("\"status\":200"))
        .count();
    assert_eq!(served, 3, "{text}");

    // Restarted on the same ports, it serves again.
    let _again = sidecar(&log);
    wait_ready();
    let mut s = connect(OUTBOUND).unwrap();
    let answer = exchange(&mut s, true);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _ = std::fs::remove_file(&log);
}
