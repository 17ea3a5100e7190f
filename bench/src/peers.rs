//! Processes the bench measures: meshsim sidecars, and nginx and HAProxy as the peer reverse
//! proxies, each configured like for like (one worker thread, keep-alive to the upstream, no
//! access logs). A peer that is not installed is reported as missing, never faked.
#![allow(clippy::disallowed_methods)] // real processes and the wall clock

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_core::registry::Protocol;

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// What it is (`meshsim`, `nginx`, `haproxy`).
    pub name: String,
    dir: Option<PathBuf>,
}

impl Process {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The program is not installed.
    #[error("{0} is not installed (install it with `bash bench/install-peers.sh`)")]
    Missing(String),
    /// It started but never listened.
    #[error("{name} did not listen on {addr} within 5 s{log}")]
    NotListening {
        /// Program.
        name: String,
        /// Where it should have listened.
        addr: SocketAddr,
        /// Its error log, if any.
        log: String,
    },
    /// Spawning or writing its config failed.
    #[error("starting {0}: {1}")]
    Io(String, std::io::Error),
}

/// Where a program is, from `PATH` or the usual sbin directories (Debian puts nginx and haproxy
/// in /usr/sbin, which is not on every user's `PATH`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_program_in(
        name,
        ["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from),
    )
}

/// Where a program is, from `PATH` and then the folders `extra`.
pub fn find_program_in(name: &str, extra: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn wait_listening(p: Process, addr: SocketAddr, log: Option<&Path>) -> Result<Process, PeerError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = log
        .and_then(|l| std::fs::read_to_string(l).ok())
        .map(|s| format!(": {}", s.trim()))
        .unwrap_or_default();
    Err(PeerError::NotListening {
        name: p.name.clone(),
        addr,
        log,
    })
}

fn scratch(name: &str) -> Result<PathBuf, PeerError> {
    let d = std::env::temp_dir().join(format!("meshsim-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| PeerError::Io(name.into(), e))?;
    Ok(d)
}

/// A meshsim sidecar process: `exe` is a binary that runs [`crate::sidecar`] given `args`.
pub fn start_sidecar(
    exe: &Path,
    prefix: &[String],
    args: &[String],
    listen: SocketAddr,
) -> Result<Process, PeerError> {
    let child = Command::new(exe)
        .args(prefix)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| PeerError::Io("meshsim sidecar".into(), e))?;
    wait_listening(
        Process {
            child,
            name: "meshsim".into(),
            dir: None,
        },
        listen,
        None,
    )
}

/// nginx as a reverse proxy on `listen` to `upstream`: one worker, no master, upstream
/// keep-alive, access log off. `h2`: the client side speaks h2c (nginx speaks HTTP/1.1 to
/// upstreams whatever the client side does).
pub fn start_nginx(
    listen: SocketAddr,
    upstream: SocketAddr,
    h2: bool,
) -> Result<Process, PeerError> {
    let exe = find_program("nginx").ok_or_else(|| PeerError::Missing("nginx".into()))?;
    let dir = scratch("nginx")?;
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           upstream app {{ server {upstream}; keepalive 128; }}\n\
           keepalive_requests 1000000;\n  http2_max_requests 1000000;\n\
           server {{\n    listen {listen}{};\n    location / {{\n      proxy_pass http://app;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
        if h2 { " http2" } else { "" }
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| PeerError::Io("nginx".into(), e))?;
    let child = Command::new(exe)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| PeerError::Io("nginx".into(), e))?;
    let log = dir.join("error.log");
    wait_listening(
        Process {
            child,
            name: "nginx".into(),
            dir: Some(dir),
        },
        listen,
        Some(&log),
    )
}

/// HAProxy as a reverse proxy on `listen` to `upstream`: one thread, HTTP mode, connection
/// reuse to the upstream, speaking `protocol` on both sides.
pub fn start_haproxy(
    listen: SocketAddr,
    upstream: SocketAddr,
    protocol: Protocol,
) -> Result<Process, PeerError> {
    let exe = find_program("haproxy").ok_or_else(|| PeerError::Missing("haproxy".into()))?;
    let dir = scratch("haproxy")?;
    let proto = if protocol == Protocol::Http2 {
        " proto h2"
    } else {
        ""
    };
    let conf = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  option http-keep-alive\n\
         frontend fe\n  bind {listen}{proto}\n  default_backend be\n\
         backend be\n  http-reuse always\n  server app {upstream}{proto}\n"
    );
    let conf_path = dir.join("haproxy.cfg");
    std::fs::write(&conf_path, conf).map_err(|e| PeerError::Io("haproxy".into(), e))?;
    let child = Command::new(exe)
        .arg("-db")
        .arg("-f")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| PeerError::Io("haproxy".into(), e))?;
    wait_listening(
        Process {
            child,
            name: "haproxy".into(),
            dir: Some(dir),
        },
        listen,
        None,
    )
}
