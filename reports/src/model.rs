//! The report's types. Field names carry their units (`p99_us`, `sim_time_ms`). Adding a field is a
//! minor change; renaming or removing one bumps [`SCHEMA_VERSION`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the report schema.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole run: the meshed run, the unmeshed baseline, the overhead between them and the verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// [`SCHEMA_VERSION`] at the time of writing.
    pub schema_version: u32,
    /// What produced it: `simulation`.
    pub kind: String,
    /// What ran, with what, and how to run it again.
    pub run: RunMeta,
    /// The run with sidecars (absent when the scenario turns the mesh off).
    pub mesh: Option<RunStats>,
    /// The same scenario and seed without sidecars (absent when disabled).
    pub baseline: Option<RunStats>,
    /// Meshed minus unmeshed latency (present when both ran).
    pub overhead: Option<Overhead>,
    /// Each scenario assertion with the value it saw.
    pub assertions: Vec<AssertionResult>,
    /// `pass` when every assertion held, the books balanced and no request was left in flight,
    /// else `fail`.
    pub verdict: Verdict,
}

/// Pass or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every assertion held.
    Pass,
    /// Some assertion failed, or the books did not balance.
    Fail,
}

/// Run metadata: enough to reproduce the run anywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunMeta {
    /// Scenario name.
    pub scenario: String,
    /// Scenario description.
    pub description: String,
    /// Scenario file as given on the command line.
    pub scenario_file: String,
    /// SHA-256 of the scenario file.
    pub scenario_hash: String,
    /// The seed every random choice derives from.
    pub seed: u64,
    /// meshsim's version.
    pub meshsim_version: String,
    /// The simulation substrate.
    pub substrate: String,
    /// Versions of the crates that shape the run (turmoil-net, tokio, rand, hyper).
    pub versions: BTreeMap<String, String>,
    /// Where the proxy cost model came from.
    pub proxy_cost_source: String,
    /// The command that reproduces this run.
    pub repro: String,
    /// The fault time line as scheduled.
    pub faults: Vec<FaultWindow>,
}

/// A scheduled fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FaultWindow {
    /// Kind (`latency`, `partition`, `hold`, `crash`, `slow`, `errors`).
    pub kind: String,
    /// What it hits, e.g. `api <-> db` or `db-0`.
    pub target: String,
    /// Start, ms of simulated time.
    pub start_ms: u64,
    /// End, if it ends.
    pub end_ms: Option<u64>,
}

/// One simulated run's measurements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunStats {
    /// Whether sidecars were in the path.
    pub mesh: bool,
    /// Simulated time the run took, including the drain after the last request was sent.
    pub sim_time_ms: u64,
    /// Where every request ended up.
    pub books: Books,
    /// Latency of all measured requests that completed (ok or failed).
    pub latency: Latency,
    /// Latency of successful requests only.
    pub latency_ok: Latency,
    /// The latency distribution of all completed requests: latency at fixed percentiles from
    /// 0 to 100 (HdrHistogram's percentile spectrum).
    #[serde(default)]
    pub spectrum: Vec<SpectrumPoint>,
    /// The same, per route (`GET /api`).
    pub routes: BTreeMap<String, RouteStats>,
    /// One bucket per second of simulated time.
    pub timeline: Vec<Bucket>,
    /// Sidecar totals (meshed runs only).
    pub proxies: Option<ProxyTotals>,
    /// Per mesh edge (`caller->callee`, caller `clients` for the workload), meshed runs only.
    pub edges: BTreeMap<String, EdgeStats>,
    /// Attempts reaching each service per request the workload sent (warm-up included), meshed
    /// runs only: the retry storm seen from below.
    pub load_factor: BTreeMap<String, f64>,
    /// Every outlier ejection, probation and restoration, in time order (meshed runs only).
    pub health: Vec<HealthRecord>,
    /// Every circuit-breaker refusal, in time order (meshed runs only; at most 100,000 per sidecar).
    #[serde(default)]
    pub breaker_events: Vec<BreakerRecord>,
    /// Requests, attempts and amplification per edge per second of simulated time.
    pub edge_timeline: BTreeMap<String, Vec<EdgeBucket>>,
    /// Windows in which an edge's amplification stayed above the scenario's storm threshold.
    pub storms: Vec<Storm>,
    /// Attempts and failures per service subset (`reviews/v2`), as the callers' sidecars saw them.
    pub subsets: BTreeMap<String, SubsetStats>,
    /// What the network did to packets.
    pub network: NetworkStats,
    /// Each service's apps as queues (all pods, after the warm-up): what a
    /// queueing-theory check needs.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceQueue>,
    /// The slowest traces the sidecars recorded (meshed runs only), slowest first.
    #[serde(default)]
    pub slowest_traces: Vec<TraceSummary>,
    /// Requests refused by an authorization policy, per service (whose sidecars enforced it),
    /// policy and rule, over the whole run; absent when none were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authz_denied: Vec<AuthzDenied>,
    /// Connections refused by a connection-time (L4) policy, per service, policy and rule
    /// (`denied` counts connections); absent when none were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections_denied: Vec<AuthzDenied>,
    /// What the control plane pushed and what the proxies did with it; absent when the
    /// scenario has no `[control_plane]` (configuration is then fixed for the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneStats>,
    /// Workload certificates and handshakes; absent when the scenario has no `[mtls]` (mTLS is
    /// then not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsStats>,
}

/// One point of a latency distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpectrumPoint {
    /// Percentile, 0 to 100.
    pub percentile: f64,
    /// Latency at that percentile, µs.
    pub latency_us: u64,
}

/// Traces a run lists in [`RunStats::slowest_traces`].
pub const REPORTED_TRACES: usize = 10;

/// Traces a run writes to `traces.otlp.json`: the slowest ones (all of a run's spans would be
/// hundreds of megabytes and no viewer loads them).
pub const EXPORTED_TRACES: usize = 200;

/// A distributed trace: one request from the workload through every sidecar hop it took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TraceSummary {
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// The request that started it (`GET frontend/api`).
    pub root: String,
    /// When the root span started, ms of simulated time.
    pub start_ms: u64,
    /// The root span's duration, µs.
    pub duration_us: u64,
    /// The root span's status code.
    pub status: u16,
    /// Every span, in start order.
    pub spans: Vec<SpanSummary>,
}

/// One proxy hop of a trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpanSummary {
    /// W3C span id, 16 lowercase hex digits.
    pub span_id: String,
    /// The parent span's id (empty for the root).
    pub parent_id: String,
    /// The sidecar's host.
    pub proxy: String,
    /// `outbound` (the caller's sidecar) or `inbound` (the callee's).
    pub direction: String,
    /// The destination service.
    pub service: String,
    /// Start, µs after the trace's start.
    pub offset_us: u64,
    /// Duration, µs.
    pub duration_us: u64,
    /// Status the hop answered.
    pub status: u16,
    /// The proxy's failure reason, when it failed the request itself.
    pub reason: String,
}

/// The books: sent = ok + failed + in flight, with failures by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Books {
    /// Requests sent after warm-up.
    pub sent: u64,
    /// Requests that succeeded (2xx/3xx).
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Failures by reason; sums to `failed`.
    pub failed_by_reason: BTreeMap<String, u64>,
    /// Requests with no outcome when the run ended.
    pub in_flight: u64,
    /// Requests sent during warm-up (not in any other figure).
    pub warmup_excluded: u64,
    /// Whether sent = ok + failed + in_flight and the reasons sum to failed.
    pub balanced: bool,
}

impl Books {
    /// Recompute [`Books::balanced`].
    pub fn check(&mut self) {
        let by_reason: u64 = self.failed_by_reason.values().sum();
        self.balanced =
            self.sent == self.ok + self.failed + self.in_flight && by_reason == self.failed;
    }
}

/// Latency percentiles, microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Mean, rounded to a microsecond.
    pub mean_us: u64,
}

/// One route's books and latency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteStats {
    /// Where this route's requests ended up.
    pub books: Books,
    /// Latency of its completed requests.
    pub latency: Latency,
}

/// One second of simulated time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Bucket {
    /// Start of the bucket, seconds of simulated time.
    pub t_s: u64,
    /// Requests sent in it (measured ones only).
    pub sent: u64,
    /// Requests completed ok in it.
    pub ok: u64,
    /// Requests failed in it.
    pub failed: u64,
    /// Median latency of requests completed in it.
    #[serde(default)]
    pub p50_us: u64,
    /// 90th percentile latency of requests completed in it.
    #[serde(default)]
    pub p90_us: u64,
    /// P99 latency of requests completed in it.
    pub p99_us: u64,
}

/// Totals over every sidecar.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyTotals {
    /// Sidecars in the run.
    pub proxies: u64,
    /// Hops charged by the cost model.
    pub hops: u64,
    /// Hops that waited for a busy proxy worker.
    pub queued_hops: u64,
    /// Modelled proxy CPU time, µs.
    pub cpu_us: u64,
    /// The proxies' own counters, summed by name.
    pub counters: BTreeMap<String, u64>,
    /// What this fleet of sidecars would cost to run, from the calibration's measured footprint.
    #[serde(default)]
    pub fleet: Option<FleetCost>,
}

/// The mesh's running cost: memory and CPU of its sidecars at the scenario's request rates,
/// beside what published figures for other meshes would give for the same traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetCost {
    /// Sidecars.
    pub proxies: u64,
    /// Requests through sidecars per second (each sidecar a request passes counts once).
    pub proxy_rps: f64,
    /// proxies × measured resident memory under load, MiB.
    pub memory_mib: f64,
    /// Measured CPU per request × requests through sidecars, in cores.
    pub cpu_cores: f64,
    /// Where the per-proxy figures come from (the calibration file's source).
    pub source: String,
    /// The same fleet and traffic priced with published figures of other meshes.
    pub published: Vec<PublishedFleet>,
}

/// A fleet priced with another mesh's published per-proxy figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublishedFleet {
    /// Mesh and version.
    pub mesh: String,
    /// proxies × its published memory per proxy, MiB.
    pub memory_mib: f64,
    /// Its published CPU per 1,000 rps × this traffic, cores (when published as a number).
    pub cpu_cores: Option<f64>,
    /// The figure and its source.
    pub basis: String,
}

/// Traffic to one subset (version) of a service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubsetStats {
    /// Attempts sent to its pods.
    pub attempts: u64,
    /// Attempts that failed (5xx or a gateway error).
    pub failures: u64,
    /// Its share of the service's attempts.
    pub share: f64,
    /// failures / attempts.
    pub error_ratio: f64,
}

/// One second of one edge.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EdgeBucket {
    /// Start of the second.
    pub t_s: u64,
    /// Requests the callers sent.
    pub requests: u64,
    /// Attempts their sidecars sent.
    pub attempts: u64,
    /// Attempts per request.
    pub amplification: f64,
    /// Requests that ended in a 5xx or a proxy failure, as the caller's sidecar answered.
    #[serde(default)]
    pub failures: u64,
    /// failures / requests.
    #[serde(default)]
    pub error_ratio: f64,
}

/// Requests one rule of one authorization policy refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuthzDenied {
    /// The service whose sidecars refused them.
    pub service: String,
    /// The policy (`no_allow_match` when the service has ALLOW policies and none matched).
    pub policy: String,
    /// The rule: `rule-<i>`, `custom`, or `-`.
    pub rule: String,
    /// Requests (or, in `connections_denied`, connections) refused.
    pub denied: u64,
}

/// Mutual TLS over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MtlsStats {
    /// Workload certificate lifetime, s.
    pub lifetime_s: u64,
    /// Certificates the control plane's CA signed.
    pub issued: u64,
    /// Certificates sidecars rotated in.
    pub rotations: u64,
    /// Signing requests that failed (the CA unreachable or refusing), summed over sidecars.
    pub renewal_failures: u64,
    /// Failed handshakes by `direction.reason` (`outbound.expired`, `inbound.unknown_ca`), as
    /// the sidecars counted them.
    pub handshake_failures: BTreeMap<String, u64>,
    /// Sidecars whose certificate had expired when the run ended.
    pub expired_at_end: u64,
}

/// The control plane over a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ControlPlaneStats {
    /// Proxies subscribed (every sidecar that ran).
    pub proxies: u64,
    /// Pushes sent (one resource type to one proxy each), over every life of the control plane.
    pub pushes: u64,
    /// CPU the pushes cost the control plane, ms (pushes × the per-push figure).
    pub push_cpu_ms: u64,
    /// Streams that failed or could not be opened, summed over proxies.
    pub disconnects: u64,
    /// How far each change of the desired state got, in order.
    pub changes: Vec<Propagation>,
    /// Pushes refused, one row per (type, version, error).
    pub nacks: Vec<NackRecord>,
    /// Proxies by sync state every 100 ms of simulated time (every second in runs longer than a
    /// minute); a proxy counts in its worst state over the resource types, `disconnected` when
    /// it has no stream.
    pub states: Vec<SyncSample>,
}

/// How one change of the desired state reached the proxies. Delays run from the change (a pod
/// crashing, a policy edited) to a proxy applying a push that includes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Propagation {
    /// When the change happened, ms of simulated time.
    pub at_ms: u64,
    /// What changed (`db-1 crashed`, `policy for db`).
    pub what: String,
    /// The resource type it changes.
    pub kind: String,
    /// Proxies it should reach (those running at the end of the run).
    pub proxies: u64,
    /// Proxies that applied it.
    pub reached: u64,
    /// Proxies that refused (NACKed) a push carrying it before they applied one.
    pub refused: u64,
    /// Median delay over the proxies reached, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile delay, ms.
    pub p99_ms: Option<f64>,
    /// Largest delay, ms.
    pub max_ms: Option<f64>,
    /// Delay until 90% of the proxies had it, ms (absent when fewer ever did); the SMP spec's
    /// `cds_latency_ms`/`eds_latency_ms`.
    pub t90_ms: Option<f64>,
}

/// Proxies that refused one version of one type, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NackRecord {
    /// First refusal, ms of simulated time.
    pub first_ms: u64,
    /// The resource type.
    pub kind: String,
    /// The refused version.
    pub version: u64,
    /// Proxies that refused it.
    pub proxies: u64,
    /// The proxies' error.
    pub error: String,
}

/// Proxies by sync state at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncSample {
    /// When, ms of simulated time.
    pub at_ms: u64,
    /// Every type acknowledged.
    pub synced: u64,
    /// A push unanswered.
    pub stale: u64,
    /// Subscribed, nothing sent yet.
    pub not_sent: u64,
    /// The last push of some type refused.
    pub nacked: u64,
    /// No stream (or no control plane).
    pub disconnected: u64,
}

/// One circuit-breaker refusal at one sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BreakerRecord {
    /// When, ms of simulated time.
    pub at_ms: u64,
    /// The sidecar's host.
    pub proxy: String,
    /// The destination service.
    pub service: String,
    /// The threshold: `max_requests`, `max_retries`, `retry_budget`, `max_pending`.
    pub reason: String,
    /// Whether the refused attempt was a retry (the caller then got the previous answer).
    pub retry: bool,
}

/// A retry storm: consecutive seconds of amplification above the threshold on one edge.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Storm {
    /// The edge.
    pub edge: String,
    /// First stormy second.
    pub start_s: u64,
    /// End (exclusive).
    pub end_s: u64,
    /// Largest amplification in the window.
    pub peak_amplification: f64,
}

/// One outlier-detection event at one sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HealthRecord {
    /// When, ms of simulated time.
    pub at_ms: u64,
    /// The sidecar's host (`api-0`, `client-1`).
    pub proxy: String,
    /// The destination service.
    pub service: String,
    /// The endpoint's pod.
    pub endpoint: String,
    /// `ejected`, `probation` or `restored`.
    pub event: String,
}

/// What the sidecars of one caller did on calls to one callee.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EdgeStats {
    /// Requests the callers' apps sent on this edge.
    pub requests: u64,
    /// Attempts the sidecars sent (first tries and retries).
    pub attempts: u64,
    /// Retries.
    pub retries: u64,
    /// Retries a budget denied.
    pub budget_exhausted: u64,
    /// Attempts that hit their per-try timeout.
    pub per_try_timeouts: u64,
    /// Requests that hit their overall timeout.
    pub timeouts: u64,
    /// Attempts fast-failed by the circuit breaker.
    pub circuit_open: u64,
    /// Retries the circuit breaker did not let out (the caller got the previous answer).
    #[serde(default)]
    pub retry_overflow: u64,
    /// Requests that ended in a 5xx or a proxy failure.
    #[serde(default)]
    pub failures: u64,
    /// Tries (first or retry, admitted by the breaker) that ended before being sent: an overall
    /// timeout or the caller's departure during a retry's backoff or a wait for a connection.
    /// Every try is an attempt, a breaker refusal or unsent:
    /// `requests + retries = attempts + circuit_open + unsent`.
    #[serde(default)]
    pub unsent: u64,
    /// How each attempt ended: `2xx`…`5xx`, the proxy's reason (`connect_failed`,
    /// `upstream_timeout`, …), or `cancelled` when an overall timeout or the caller's departure
    /// cut it off in flight. Sums to `attempts`.
    #[serde(default)]
    pub attempt_outcomes: BTreeMap<String, u64>,
    /// Attempts per request.
    pub retry_amplification: f64,
}

/// Packet counts and delays from the simulated network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkStats {
    /// Packets delivered between hosts.
    pub delivered: u64,
    /// Dropped by partitions.
    pub dropped_partition: u64,
    /// Dropped because an end was crashed.
    pub dropped_crashed: u64,
    /// Held and later released.
    pub held: u64,
    /// The scenario's one-way latency between two hosts of one zone (`[network] latency`), µs:
    /// the least one trip between hosts costs.
    #[serde(default)]
    pub latency_us: u64,
    /// The extra one-way latency between zones, µs.
    #[serde(default)]
    pub cross_zone_latency_us: u64,
    /// Mean one-way delay of the packets delivered (baseline, zones, latency faults and jitter;
    /// time held by a hold fault excluded), µs.
    #[serde(default)]
    pub mean_delay_us: f64,
}

/// One service's apps as a queue (summed over its pods), over the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceQueue {
    /// Workers per pod and queue places per pod, as configured.
    pub workers: u32,
    /// Queue places per pod.
    pub queue: u32,
    /// Requests that reached an app.
    pub arrived: u64,
    /// Refused at once, workers and queue full (503 `app_overloaded`).
    pub refused: u64,
    /// Completed visits per second of simulated time (throughput).
    pub throughput_rps: f64,
    /// Mean time waiting for a worker, over requests that got one, µs.
    pub mean_wait_us: f64,
    /// Mean time holding a worker (own work plus downstream calls), µs.
    pub mean_service_us: f64,
    /// Fraction of requests that got a worker only after waiting for one.
    pub p_wait: f64,
    /// Time-averaged requests in the apps (waiting or working), summed over pods.
    pub mean_in_system: f64,
    /// Time-averaged requests waiting for a worker, summed over pods.
    pub mean_queue: f64,
    /// Requests whose caller had gone before the app finished with them.
    pub abandoned: u64,
    /// Worker time spent on those requests (`cancellation = "continue"` finishes them), ms.
    pub wasted_ms: f64,
}

/// Meshed minus unmeshed latency, microseconds (negative when the mesh was faster).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Overhead {
    /// Difference of medians.
    pub p50_us: i64,
    /// Difference of 90th percentiles.
    pub p90_us: i64,
    /// Difference of 99th percentiles.
    pub p99_us: i64,
    /// Difference of 99.9th percentiles.
    pub p999_us: i64,
    /// The same per route.
    pub routes: BTreeMap<String, RouteOverhead>,
}

/// One route's overhead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteOverhead {
    /// Difference of medians, µs.
    pub p50_us: i64,
    /// Difference of 99th percentiles, µs.
    pub p99_us: i64,
}

impl Overhead {
    /// The overhead of `mesh` over `baseline`.
    pub fn between(mesh: &RunStats, baseline: &RunStats) -> Self {
        let d = |a: u64, b: u64| a as i64 - b as i64;
        let routes = mesh
            .routes
            .iter()
            .filter_map(|(name, m)| {
                let b = baseline.routes.get(name)?;
                Some((
                    name.clone(),
                    RouteOverhead {
                        p50_us: d(m.latency.p50_us, b.latency.p50_us),
                        p99_us: d(m.latency.p99_us, b.latency.p99_us),
                    },
                ))
            })
            .collect();
        Self {
            p50_us: d(mesh.latency.p50_us, baseline.latency.p50_us),
            p90_us: d(mesh.latency.p90_us, baseline.latency.p90_us),
            p99_us: d(mesh.latency.p99_us, baseline.latency.p99_us),
            p999_us: d(mesh.latency.p999_us, baseline.latency.p999_us),
            routes,
        }
    }
}

/// An assertion and what the run showed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AssertionResult {
    /// As written in the scenario.
    pub text: String,
    /// The metric's value (absent when the run has no such value, e.g. no baseline).
    pub actual: Option<f64>,
    /// Whether it held.
    pub passed: bool,
}
