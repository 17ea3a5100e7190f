//! The control plane on real sockets, as the README's quick start runs it: `meshsim
//! control-plane` serving a mesh file, three `meshsim sidecar --control-plane` processes, two
//! `meshsim echo` services. A request through the web sidecar reaches the endpoint the file names;
//! editing the file moves it; `meshsim proxy-status` shows every proxy SYNCED; with the control
//! plane killed the sidecars keep routing, and they resync when it returns.
#![allow(clippy::disallowed_methods)] // real processes, real sockets, wall-clock waits

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn meshsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
}

/// Children killed when the test ends, however it ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[&str]) -> Child {
    meshsim()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// GET `path` with `Host: echo` through the sidecar outbound at `addr`: the status line and body.
fn get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /hello HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Wait (up to `secs`) until `ok` holds of what `probe` returns; the last value either way.
fn until<T: std::fmt::Debug>(
    secs: u64,
    what: &str,
    mut probe: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let start = Instant::now();
    loop {
        let v = probe();
        if ok(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; last: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mesh_file(path: &Path, endpoints: &[&str]) {
    let list = endpoints
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[[services]]\nname = \"echo\"\nendpoints = [{list}]\n[services.policy]\ntimeout = \"2s\"\n"
    );
    std::fs::write(path, text).unwrap();
}

fn status(cp: &str) -> String {
    let out = meshsim()
        .args(["proxy-status", "--control-plane", cp])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn all_synced(text: &str, proxies: usize) -> bool {
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("connected")).collect();
    rows.len() == proxies
        && rows
            .iter()
            .all(|l| l.matches("SYNCED").count() == 2 && !l.contains("behind"))
}

#[test]
fn sidecars_take_their_routes_from_the_control_plane_and_keep_them_through_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = dir.path().join("mesh.toml");
    let mesh_arg = mesh.to_str().unwrap();
    // echo-a and echo-b behind their sidecars; web's sidecar is where requests come in.
    let (a_in, b_in, web_out, cp) = (
        "127.0.0.1:24211",
        "127.0.0.1:24212",
        "127.0.0.1:24223",
        "127.0.0.1:24210",
    );
    mesh_file(&mesh, &[a_in]);
    let mut procs = Procs(vec![
        spawn(&["echo", "--listen", "127.0.0.1:24201", "--name", "echo-a"]),
        spawn(&["echo", "--listen", "127.0.0.1:24202", "--name", "echo-b"]),
        spawn(&["control-plane", mesh_arg, "--listen", cp]),
    ]);
    for (node, app, inbound, outbound) in [
        ("echo-0", "127.0.0.1:24201", a_in, "127.0.0.1:24221"),
        ("echo-1", "127.0.0.1:24202", b_in, "127.0.0.1:24222"),
        ("web-0", "127.0.0.1:24203", "127.0.0.1:24213", web_out),
    ] {
        procs.0.push(spawn(&[
            "sidecar",
            "--control-plane",
            cp,
            "--node",
            node,
            "--app",
            app,
            "--inbound",
            inbound,
            "--outbound",
            outbound,
        ]));
    }
    let answer = |who: &'static str| {
        move |r: &Option<String>| {
            r.as_deref().is_some_and(|t| {
                t.starts_with("HTTP/1.1 200") && t.contains(&format!("{who} GET /hello"))
            })
        }
    };
    until(20, "the first route", || get(web_out), answer("echo-a"));
    let text = until(
        10,
        "every proxy SYNCED",
        || status(cp),
        |t| all_synced(t, 3),
    );
    assert!(text.contains("web-0") && text.contains("echo-1"), "{text}");

    // An edit of the file moves the route.
    mesh_file(&mesh, &[b_in]);
    until(10, "the edited route", || get(web_out), answer("echo-b"));
    let text = until(
        10,
        "SYNCED on the new version",
        || status(cp),
        |t| all_synced(t, 3) && t.contains("endpoints v2"),
    );
    assert!(text.contains("SYNCED v2"), "{text}");

    // The control plane dies: the sidecars keep their last good routes.
    let mut cp_proc = procs.0.remove(2);
    cp_proc.kill().unwrap();
    cp_proc.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..5 {
        assert!(
            answer("echo-b")(&get(web_out)),
            "routing survives the outage"
        );
    }

    // It returns, from a file that lists both: everyone resyncs and both answer.
    mesh_file(&mesh, &[a_in, b_in]);
    procs
        .0
        .push(spawn(&["control-plane", mesh_arg, "--listen", cp]));
    until(40, "resync", || status(cp), |t| all_synced(t, 3));
    let mut seen = std::collections::BTreeSet::new();
    until(
        10,
        "both endpoints",
        || {
            if let Some(t) = get(web_out) {
                for who in ["echo-a", "echo-b"] {
                    if t.contains(&format!("{who} GET")) {
                        seen.insert(who);
                    }
                }
            }
            seen.len()
        },
        |n| *n == 2,
    );
}

#[test]
fn a_broken_mesh_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = dir.path().join("mesh.toml");
    std::fs::write(
        &mesh,
        "[[services]]\nname = \"echo\"\nendpoints = [\"nope\"]\n",
    )
    .unwrap();
    let out = meshsim()
        .args([
            "control-plane",
            mesh.to_str().unwrap(),
            "--listen",
            "127.0.0.1:24230",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mesh.toml") && err.contains("line 3"), "{err}");
}

/// With `--mtls` the control plane is the CA: sidecars fetch its root, get a certificate for
/// their service, and talk mutual TLS. The callee's access log names the caller by the identity
/// the CA issued, plaintext to its inbound port is refused, and the proxies are SYNCED.
#[test]
fn sidecars_take_their_certificates_from_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = dir.path().join("mesh.toml");
    let log = dir.path().join("echo-access.log");
    let (echo_in, web_out, cp) = ("127.0.0.1:24241", "127.0.0.1:24253", "127.0.0.1:24240");
    std::fs::write(
        &mesh,
        // web calls and serves nothing, but it is a workload of the mesh: the CA signs only
        // for services the mesh file lists.
        format!("[[services]]\nname = \"echo\"\nendpoints = [{echo_in:?}]\n[[services]]\nname = \"web\"\n"),
    )
    .unwrap();
    let mut procs = Procs(vec![
        spawn(&["echo", "--listen", "127.0.0.1:24231", "--name", "echo-a"]),
        spawn(&[
            "control-plane",
            mesh.to_str().unwrap(),
            "--listen",
            cp,
            "--mtls",
        ]),
    ]);
    let sidecar = |service: &str, node: &str, app: &str, inbound: &str, outbound: &str| {
        let mut args = vec![
            "sidecar",
            "--control-plane",
            cp,
            "--mtls",
            "--service",
            service,
            "--node",
            node,
            "--app",
            app,
            "--inbound",
            inbound,
            "--outbound",
            outbound,
        ];
        if service == "echo" {
            args.extend(["--access-log", log.to_str().unwrap()]);
        }
        spawn(&args)
    };
    procs.0.push(sidecar(
        "echo",
        "echo-0",
        "127.0.0.1:24231",
        echo_in,
        "127.0.0.1:24251",
    ));
    procs.0.push(sidecar(
        "web",
        "web-0",
        "127.0.0.1:24233",
        "127.0.0.1:24243",
        web_out,
    ));
    let ok = |r: &Option<String>| {
        r.as_deref()
            .is_some_and(|t| t.starts_with("HTTP/1.1 200") && t.contains("echo-a GET /hello"))
    };
    until(20, "a request over mTLS", || get(web_out), ok);
    let line = until(
        5,
        "the access log line",
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |t| t.contains("inbound"),
    );
    assert!(
        line.contains("spiffe://cluster.local/ns/default/sa/web"),
        "{line}"
    );
    // Plaintext straight to the callee's inbound port: refused (strict mTLS).
    assert!(!ok(&get(echo_in)), "plaintext must not get through");
    until(
        10,
        "every proxy SYNCED",
        || status(cp),
        |t| all_synced(t, 2),
    );
}
