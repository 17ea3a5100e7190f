//! The outbound path, one ordered state machine per request: route and policy, overall
//! timeout, admission by the breaker, the retry loop (budget, backoff, idempotency narrowing,
//! `previous_hosts`) and each attempt with its per-try timeout, counted by [`TryTally`] so
//! every try ends exactly once. Picking the endpoint is in [`super::pick`]; sending, in
//! [`super::forward`].

use super::*;

impl<N: Network> Proxy<N> {
    pub(super) async fn outbound(
        &self,
        req: Request<Incoming>,
        authority: &str,
        service: &str,
        route_name: &mut String,
        tried: &mut Vec<SocketAddr>,
    ) -> Result<Response<Body>, ProxyError> {
        let (policy, route) = {
            let config = self.config.borrow();
            let (policy, route) = config.policy_for(service, &req);
            (policy, route.to_string())
        };
        self.stats.timed(service, Timed::Request);
        if route != "default" {
            self.stats.route(service, &route);
        }
        route_name.push_str(route.as_ref());
        let calls = self.outbound_attempts(service, authority, req, &policy, tried);
        // A zero timeout means none (Istio's and Linkerd's default).
        let result = match policy
            .timeout
            .or(self.cfg.request_timeout)
            .filter(|t| !t.is_zero())
        {
            Some(t) => match tokio::time::timeout(t, calls).await {
                Ok(r) => r,
                Err(_) => {
                    self.stats.service(service, |s| s.timeouts += 1);
                    Err(ProxyError::UpstreamTimeout)
                }
            },
            None => calls.await,
        };
        if result
            .as_ref()
            .map_or(true, |r| r.status().is_server_error())
        {
            self.stats.timed(service, Timed::Failure);
        }
        result
    }

    /// The first attempt and any retries the policy allows.
    pub(super) async fn outbound_attempts(
        &self,
        service: &str,
        authority: &str,
        req: Request<Incoming>,
        policy: &ServicePolicy,
        tried: &mut Vec<SocketAddr>,
    ) -> Result<Response<Body>, ProxyError> {
        let cb = policy.circuit_breaker.as_ref();
        let retry = policy.retry.as_ref().filter(|r| r.max_retries > 0);
        // Retries replay the request, so its body is buffered; bodies that may exceed 64 KiB
        // (Linkerd's limit) are streamed and never retried.
        let fits = http_body::Body::size_hint(req.body())
            .upper()
            .is_some_and(|n| n <= MAX_RETRY_BODY);
        let first = self
            .admit(service, cb, false)
            .ok_or(ProxyError::CircuitOpen)?;
        let first = (first, TryTally::new(&self.stats, service));
        let Some(retry) = retry.filter(|_| fits) else {
            let per_try = policy.retry.as_ref().and_then(|r| r.per_try_timeout);
            let (parts, incoming) = req.into_parts();
            let (streamed, broke) = body::watched(incoming);
            let req = Request::from_parts(parts, streamed);
            let result = self
                .attempt(
                    first,
                    service,
                    authority,
                    req,
                    policy,
                    per_try,
                    tried,
                    Some(&broke),
                )
                .await;
            return result;
        };
        let (parts, incoming) = req.into_parts();
        let bytes = incoming
            .collect()
            .await
            .map_err(|_| ProxyError::DownstreamReset)?
            .to_bytes();
        let budget = retry.budget.as_ref().map(|b| self.budget(service, b));
        if let Some(b) = &budget {
            b.deposit();
        }
        // A non-idempotent request is sent again only when the upstream never processed it (the
        // connect failed, the stream was refused) or, for a gRPC call, on a listed gRPC status
        // (gRPC's own retry policy, gRFC A6, retries its POSTs by status code).
        let retry_on = if retry.retry_non_idempotent || is_idempotent(&parts.method) {
            retry.retry_on.clone()
        } else {
            let grpc_call = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            RetryOn {
                connect_failure: retry.retry_on.connect_failure,
                refused_stream: retry.retry_on.refused_stream,
                grpc: if grpc_call {
                    retry.retry_on.grpc.clone()
                } else {
                    Vec::new()
                },
                ..RetryOn::default()
            }
        };
        let mut slot = first;
        let mut retries = 0;
        loop {
            let mut req = Request::new(body::full(bytes.clone()));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = parts.uri.clone();
            *req.version_mut() = parts.version;
            *req.headers_mut() = parts.headers.clone();
            let result = self
                .attempt(
                    slot,
                    service,
                    authority,
                    req,
                    policy,
                    retry.per_try_timeout,
                    tried,
                    None,
                )
                .await;
            let again = {
                let end = match &result {
                    Ok(r) => AttemptEnd::of(r.status(), r.headers()),
                    Err(e) => AttemptEnd::failed(*e),
                };
                crate::retry::retryable(&retry_on, end)
            };
            if retries >= retry.max_retries || !again {
                return result;
            }
            if let Some(b) = &budget
                && !b.withdraw()
            {
                self.stats.service(service, |s| s.budget_exhausted += 1);
                return result;
            }
            // The retry takes its breaker slot now and holds it through the backoff; refused,
            // it is not sent and the caller gets this attempt's answer (Envoy's retry overflow).
            slot = match self.admit(service, cb, true) {
                Some(s) => (s, TryTally::new(&self.stats, service)),
                None => {
                    self.stats.service(service, |s| s.retry_overflow += 1);
                    return result;
                }
            };
            retries += 1;
            self.stats.service(service, |s| s.retries += 1);
            let delay = {
                let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                crate::retry::backoff(&mut rng, retry.backoff_base, retry.backoff_max, retries)
            };
            drop(result);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// A breaker slot for an attempt to `service`, counting a refusal.
    pub(super) fn admit(
        &self,
        service: &str,
        cb: Option<&CircuitBreaker>,
        retry: bool,
    ) -> Option<Slot> {
        match self.breakers.admit(service, cb, retry) {
            Ok(s) => Some(s),
            Err(o) => {
                self.count_overflow(service, o, !retry);
                None
            }
        }
    }

    /// Count a breaker refusal by threshold, and as a fast failure (`circuit_open`) when the
    /// try fails because of it rather than falling back to an earlier answer.
    pub(super) fn count_overflow(
        &self,
        service: &str,
        o: crate::breaker::Overflow,
        fast_fail: bool,
    ) {
        self.stats.service(service, |s| {
            *s.overflow.entry(o).or_insert(0) += 1;
            s.circuit_open += u64::from(fast_fail);
        });
    }

    pub(super) fn budget(&self, service: &str, b: &crate::policy::Budget) -> Arc<RetryBudget> {
        self.budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(service.to_string())
            .or_insert_with(|| Arc::new(RetryBudget::new(b)))
            .clone()
    }

    /// One attempt holding breaker `slot`: a connection (HTTP/1.1), endpoint pick, forward,
    /// bounded by the per-try timeout. `tried` collects the endpoints this request has used.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attempt(
        &self,
        (mut slot, mut tally): (Slot, TryTally<'_>),
        service: &str,
        authority: &str,
        req: Request<Body>,
        policy: &ServicePolicy,
        per_try: Option<Duration>,
        tried: &mut Vec<SocketAddr>,
        downstream_broke: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Response<Body>, ProxyError> {
        let cb = policy.circuit_breaker.as_ref();
        let protocol = {
            let config = self.config.borrow();
            config.registry.get(service).map(|e| e.protocol)
        };
        if protocol == Some(Protocol::Http1)
            && let Err(o) = slot.connection(cb).await
        {
            // Refused while holding a slot: a fast-fail whether first try or retry.
            tally.state = TryState::Ended;
            self.count_overflow(service, o, true);
            return Err(ProxyError::CircuitOpen);
        }
        tally.state = TryState::Sent;
        self.stats.timed(service, Timed::Attempt);
        let (addr, protocol, pick, subset) = match self.pick_endpoint(service, &req, policy, tried)
        {
            Ok(p) => p,
            Err(e) => {
                tally.state = TryState::Ended;
                self.stats.outcome(service, AttemptOutcome::Failed(e));
                return Err(e);
            }
        };
        tried.push(addr);
        if !subset.is_empty() {
            self.stats.subset(service, &subset, |c| c.attempts += 1);
        }
        let call = forward::send(&self.clients, req, addr, protocol, Some(authority));
        let result = match per_try {
            Some(t) => tokio::time::timeout(t, call).await.unwrap_or_else(|_| {
                self.stats.service(service, |s| s.per_try_timeouts += 1);
                Err(ProxyError::UpstreamTimeout)
            }),
            None => call.await,
        };
        drop(slot);
        // A forward that failed because the client's own body broke is the client's failure:
        // neither the endpoint's (outlier detection) nor the subset's.
        let result = match result {
            Err(_)
                if downstream_broke
                    .is_some_and(|b| b.load(std::sync::atomic::Ordering::Relaxed)) =>
            {
                Err(ProxyError::DownstreamReset)
            }
            r => r,
        };
        let failed = match &result {
            Ok(r) => r.status().is_server_error(),
            Err(ProxyError::DownstreamReset) => false,
            Err(_) => true,
        };
        // Every attempt ends in exactly one outcome: an HTTP status class or the proxy's reason.
        // A 403 the destination's sidecar answered for its authorization policy is that
        // reason, not just a 4xx: the caller's books can say who was refused where.
        let outcome = match &result {
            Ok(r) if denied_by_policy(r) => AttemptOutcome::Failed(ProxyError::AuthzDenied),
            Ok(r) => AttemptOutcome::of_status(r.status()),
            Err(e) => AttemptOutcome::Failed(*e),
        };
        tally.state = TryState::Ended;
        self.stats.outcome(service, outcome);
        pick.finish(failed, &policy.lb, policy.outlier.as_ref());
        if !subset.is_empty() && failed {
            self.stats.subset(service, &subset, |c| c.failures += 1);
        }
        result
    }
}

/// Where one try of a request (the first, or a retry the breaker admitted) stands. Every try
/// ends exactly once: refused by the breaker (`circuit_open`), sent as an attempt and finished
/// with an outcome (`attempt_<outcome>`), or dropped, when an overall timeout fires or the caller
/// goes away. Dropped before it was sent (in a retry's backoff, waiting for a connection, reading
/// the caller's body) it counts as `unsent`; dropped in flight, as the outcome `attempt_cancelled`.
/// Counting on drop is what keeps the books whole: the future is dropped between the two counts.
pub(super) struct TryTally<'a> {
    stats: &'a ProxyStats,
    service: &'a str,
    state: TryState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TryState {
    Admitted,
    Sent,
    Ended,
}

impl<'a> TryTally<'a> {
    fn new(stats: &'a ProxyStats, service: &'a str) -> Self {
        Self {
            stats,
            service,
            state: TryState::Admitted,
        }
    }
}

impl Drop for TryTally<'_> {
    fn drop(&mut self) {
        match self.state {
            TryState::Admitted => self.stats.service(self.service, |s| s.unsent += 1),
            TryState::Sent => self.stats.outcome(self.service, AttemptOutcome::Cancelled),
            TryState::Ended => {}
        }
    }
}

/// Largest request body buffered for retries (Linkerd's limit).
const MAX_RETRY_BODY: u64 = 64 * 1024;

/// Whether `r` is the upstream sidecar's authorization denial.
fn denied_by_policy<B>(r: &Response<B>) -> bool {
    r.status() == http::StatusCode::FORBIDDEN
        && r.headers()
            .get(ERROR_HEADER)
            .is_some_and(|v| v.as_bytes() == ProxyError::AuthzDenied.reason().as_bytes())
}
