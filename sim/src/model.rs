//! Service models: the apps behind the sidecars, and the client side every caller (apps and
//! workload generators) uses to reach a service, with or without the mesh.
//!
//! An app is a real HTTP server on the simulated network (port 8080) whose behaviour is a model:
//! a latency distribution, a worker pool with a bounded queue (503 when full), an error rate,
//! and downstream calls with fan-out. Faults switch it into slow or erroring modes. Service time
//! holds a worker for exactly the drawn microseconds ([`crate::time::sleep_us`]). A request whose
//! caller gave up is finished anyway (`cancellation = "continue"`, the default: its worker time is
//! counted as wasted) or stopped at once (`"abort"`); every visit is counted in the service's
//! [`crate::queueing::Tally`].
//! Apps never see the mesh: with sidecars they call `127.0.0.1:15001` with the service name in
//! `Host`; without, they pick a pod of the service round robin and call it directly, as an
//! unmeshed Kubernetes client behind a ClusterIP roughly does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_core::body::{self, Body};
use mesh_core::client::HttpClients;
use mesh_core::net::Network;
use mesh_core::proxy::{ERROR_HEADER, classify};
use mesh_core::registry::Protocol;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};

use crate::queueing::{self, Visit};
use crate::scenario::{CallSpec, Cancellation, LatencySpec};
use crate::substrate::SimNet;

/// Response header naming why an app failed a request.
pub const APP_ERROR_HEADER: &str = "x-app-error";

/// Port every app listens on.
pub const APP_PORT: u16 = 8080;

/// Fault-driven modes, keyed by service or pod name (a pod's entry wins over its service's).
#[derive(Debug, Default)]
pub struct Modes {
    /// Extra latency, µs.
    pub slow_us: BTreeMap<String, u64>,
    /// Error-rate override.
    pub errors: BTreeMap<String, f64>,
}

impl Modes {
    fn slow(&self, service: &str, pod: &str) -> u64 {
        self.slow_us
            .get(pod)
            .or_else(|| self.slow_us.get(service))
            .copied()
            .unwrap_or(0)
    }
    fn error_rate(&self, service: &str, pod: &str) -> Option<f64> {
        self.errors
            .get(pod)
            .or_else(|| self.errors.get(service))
            .copied()
    }
}

/// Draw a latency in µs.
pub fn sample_latency(spec: &LatencySpec, rng: &mut ChaCha8Rng) -> u64 {
    let us = match spec {
        LatencySpec::Constant { value } => value.as_us() as f64,
        LatencySpec::Uniform { min, max } => {
            let (a, b) = (min.as_us() as f64, max.as_us() as f64);
            a + (b - a) * rng.random::<f64>()
        }
        LatencySpec::Exponential { mean } => {
            let m = mean.as_us() as f64;
            if m <= 0.0 {
                0.0
            } else {
                Exp::new(1.0 / m).map(|d| d.sample(rng)).unwrap_or(m)
            }
        }
        LatencySpec::Lognormal { p50, p99 } => {
            let mu = (p50.as_us() as f64).ln();
            // z(0.99) of the standard normal.
            let sigma = ((p99.as_us() as f64).ln() - mu) / 2.326_347_874;
            LogNormal::new(mu, sigma)
                .map(|d| d.sample(rng))
                .unwrap_or(p50.as_us() as f64)
        }
    };
    us.round().max(0.0) as u64
}

/// How a caller reaches services.
#[derive(Debug)]
pub enum Route {
    /// Through the local sidecar's outbound listener, speaking `protocol`.
    Mesh {
        /// The sidecar's outbound address.
        sidecar: SocketAddr,
        /// The caller's own protocol.
        protocol: Protocol,
    },
    /// Straight to the pods, round robin, each service on its own protocol.
    Direct {
        /// Pod addresses and protocol per service.
        endpoints: Arc<BTreeMap<String, (Vec<SocketAddr>, Protocol)>>,
        /// Round-robin cursors.
        cursors: Mutex<BTreeMap<String, usize>>,
    },
}

/// What a call came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResult {
    /// `None` when it succeeded, else the failure reason.
    pub failure: Option<String>,
}

/// The client side of a host: reaches services by name.
#[derive(Debug)]
pub struct Caller {
    clients: HttpClients<SimNet>,
    route: Route,
}

impl Caller {
    /// A caller on `net` reaching services by `route`.
    pub fn new(net: SimNet, route: Route) -> Self {
        Self {
            // Without the mesh, a connect to a dead pod waits for the OS: ~1 s of SYN retries is
            // the shortest Linux gives up after, so that is what an unmeshed client sees.
            clients: HttpClients::new(net, std::time::Duration::from_secs(1)),
            route,
        }
    }

    /// Call `service` and read the whole response.
    pub async fn call(
        &self,
        service: &str,
        method: &str,
        path: &str,
        headers: &BTreeMap<String, String>,
    ) -> CallResult {
        let (addr, protocol) = match &self.route {
            Route::Mesh { sidecar, protocol } => (*sidecar, *protocol),
            Route::Direct { endpoints, cursors } => {
                let Some((addrs, protocol)) = endpoints.get(service).filter(|(a, _)| !a.is_empty())
                else {
                    return fail("no_endpoints");
                };
                let mut c = cursors.lock().unwrap_or_else(|p| p.into_inner());
                let cursor = c.entry(service.to_string()).or_insert(0);
                let addr = addrs[*cursor % addrs.len()];
                *cursor += 1;
                (addr, *protocol)
            }
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .version(protocol.version())
            .header(http::header::HOST, service);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let Ok(req) = req.body(body::empty()) else {
            return fail("bad_request");
        };
        let resp = match self.clients.get(protocol).request(req).await {
            Ok(r) => r,
            Err(e) => return fail(classify(e).reason()),
        };
        let status = resp.status();
        let reason = failure_reason(status, resp.headers());
        // Read the body so the connection returns to the pool; a broken body is a reset.
        if resp.into_body().collect().await.is_err() {
            return fail("upstream_reset");
        }
        CallResult { failure: reason }
    }
}

fn fail(reason: &str) -> CallResult {
    CallResult {
        failure: Some(reason.to_string()),
    }
}

/// Why a response counts as a failure (`None` for 1xx-3xx): the proxy's or app's stated reason,
/// else the status.
pub fn failure_reason(status: StatusCode, headers: &http::HeaderMap) -> Option<String> {
    if status.as_u16() < 400 {
        return None;
    }
    let named = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Some(
        named(ERROR_HEADER)
            .or_else(|| named(APP_ERROR_HEADER))
            .unwrap_or_else(|| format!("http_{}", status.as_u16())),
    )
}

/// One app instance.
#[derive(Debug)]
pub struct App {
    /// Service name.
    pub service: String,
    /// Pod name.
    pub pod: String,
    /// Latency distribution.
    pub latency: LatencySpec,
    /// Base error rate.
    pub error_rate: f64,
    /// Downstream calls.
    pub calls: Vec<CallSpec>,
    /// Requests worked on at once.
    pub workers: Arc<tokio::sync::Semaphore>,
    /// Admission limit: workers + queue.
    pub capacity: usize,
    /// Requests admitted now.
    pub admitted: Arc<Mutex<usize>>,
    /// What happens to a request whose caller gave up.
    pub cancellation: Cancellation,
    /// The service's queueing tally (shared by its pods).
    pub tally: queueing::Shared,
    /// The pod's RNG stream.
    pub rng: Mutex<ChaCha8Rng>,
    /// Shared fault modes.
    pub modes: Arc<Mutex<Modes>>,
    /// How it calls other services.
    pub caller: Caller,
    /// The pod's network, where abandoned work keeps running under `continue`.
    pub net: SimNet,
}

impl App {
    /// Serve one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        // Apps copy the trace context onto their own calls, as every mesh asks of them.
        let mut propagate = BTreeMap::new();
        if let Some(tp) = req
            .headers()
            .get(mesh_core::telemetry::trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
        {
            propagate.insert(
                mesh_core::telemetry::trace::TRACEPARENT.to_string(),
                tp.to_string(),
            );
        }
        let now = crate::time::now_us();
        let Some(admission) = Admission::take(&self.admitted, self.capacity) else {
            Visit::refuse(&self.tally, now);
            return app_response(StatusCode::SERVICE_UNAVAILABLE, Some("app_overloaded"));
        };
        let mut visit = Visit::arrive(&self.tally, now);
        match self.cancellation {
            // Dropped with this future when the caller goes: the visit ends unanswered.
            Cancellation::Abort => {
                let resp = self.work(&mut visit, &propagate).await;
                visit.answered(true);
                drop(admission);
                resp
            }
            // The work runs as its own task of the pod, holding its place and worker to the end
            // whether or not anyone still waits for the answer.
            Cancellation::Continue => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let net = self.net.clone();
                net.spawn(async move {
                    let _admission = admission;
                    let resp = self.work(&mut visit, &propagate).await;
                    visit.answered(tx.send(resp).is_ok());
                });
                rx.await.unwrap_or_else(|_| {
                    app_response(StatusCode::SERVICE_UNAVAILABLE, Some("app_unavailable"))
                })
            }
        }
    }

    async fn work(
        &self,
        visit: &mut Visit,
        propagate: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let Ok(_permit) = self.workers.clone().acquire_owned().await else {
            return app_response(StatusCode::SERVICE_UNAVAILABLE, Some("app_overloaded"));
        };
        visit.start(crate::time::now_us());
        // Draw everything this request needs up front, in a fixed order, so the RNG stream does
        // not depend on how calls interleave.
        let (own_us, fails, plan) = {
            let modes = self.modes.lock().unwrap_or_else(|p| p.into_inner());
            let extra = modes.slow(&self.service, &self.pod);
            let rate = modes
                .error_rate(&self.service, &self.pod)
                .unwrap_or(self.error_rate);
            drop(modes);
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            let own = sample_latency(&self.latency, &mut rng) + extra;
            let fails = rng.random::<f64>() < rate;
            let plan: Vec<(usize, u32)> = self
                .calls
                .iter()
                .enumerate()
                .filter(|(_, c)| c.probability >= 1.0 || rng.random::<f64>() < c.probability)
                .map(|(i, c)| (i, c.fanout))
                .collect();
            (own, fails, plan)
        };
        crate::time::sleep_us(own_us).await;
        if fails {
            return app_response(StatusCode::INTERNAL_SERVER_ERROR, Some("app_error"));
        }
        for (i, fanout) in plan {
            let call = &self.calls[i];
            let results = if call.parallel {
                let futs = (0..fanout).map(|_| {
                    self.caller
                        .call(call.service.get_ref(), &call.method, &call.path, propagate)
                });
                futures_util::future::join_all(futs).await
            } else {
                let mut out = Vec::new();
                for _ in 0..fanout {
                    out.push(
                        self.caller
                            .call(call.service.get_ref(), &call.method, &call.path, propagate)
                            .await,
                    );
                }
                out
            };
            if results.iter().any(|r| r.failure.is_some()) {
                return app_response(StatusCode::INTERNAL_SERVER_ERROR, Some("dependency_failed"));
            }
        }
        app_response(StatusCode::OK, None)
    }
}

/// A request's place in an app's admission limit (workers + queue), given back when the
/// request ends however it ends: answered, or dropped because its caller gave up. Giving it
/// back after an `.await` instead leaked the place of every cancelled request, until the app
/// refused everything as overloaded, also after the fault had ended.
struct Admission(Arc<Mutex<usize>>);

impl Admission {
    fn take(admitted: &Arc<Mutex<usize>>, capacity: usize) -> Option<Self> {
        let mut n = admitted.lock().unwrap_or_else(|p| p.into_inner());
        (*n < capacity).then(|| {
            *n += 1;
            Admission(admitted.clone())
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
    }
}

fn app_response(status: StatusCode, error: Option<&'static str>) -> Response<Body> {
    let mut resp = Response::new(body::full(Bytes::from_static(b"ok\n")));
    *resp.status_mut() = status;
    if let Some(e) = error {
        resp.headers_mut()
            .insert(APP_ERROR_HEADER, HeaderValue::from_static(e));
    }
    resp
}

/// A pod's RNG, derived from the run seed and the pod's name.
pub fn pod_rng(seed: u64, label: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(crate::derive_seed(seed, label))
}
