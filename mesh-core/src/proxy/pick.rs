//! Where an attempt goes: the subset a traffic split draws, then the balancer's endpoint,
//! avoiding hosts already tried, or keeping to the first one, as the retry policy asks.

use super::*;

impl<N: Network> Proxy<N> {
    /// The endpoint for an attempt: subset by the split, then the balancer, avoiding endpoints
    /// already `tried` when the retry policy asks for it.
    pub(super) fn pick_endpoint(
        &self,
        service: &str,
        req: &Request<Body>,
        policy: &ServicePolicy,
        tried: &[SocketAddr],
    ) -> Result<(SocketAddr, Protocol, crate::balance::Pick, String), ProxyError> {
        let config = self.config.borrow();
        let entry = config
            .registry
            .get(service)
            .ok_or(ProxyError::NoEndpoints)?;
        let key = match &policy.lb {
            LbPolicy::RingHash { header } => req
                .headers()
                .get(header.as_str())
                .map(|v| v.as_bytes().to_vec()),
            _ => None,
        };
        // A traffic split picks the subset first (weighted, from the seeded RNG); balancing
        // and outlier state are then kept per subset.
        let chosen = self.choose_subset(&policy.split);
        let members: Vec<usize> = entry
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| chosen.as_ref().is_none_or(|s| &e.subset == s))
            .map(|(i, _)| i)
            .collect();
        let pool = match &chosen {
            Some(s) => crate::balance::Pool::subset(service, s),
            None => crate::balance::Pool::of(service),
        };
        let picks = match &policy.retry {
            Some(r) if r.avoid_previous_hosts && !tried.is_empty() => HOST_SELECTION_ATTEMPTS,
            _ => 1,
        };
        // A retry pinned to the first attempt's endpoint, while it is still a member.
        let pinned = match (&policy.retry, tried.first()) {
            (Some(r), Some(first)) if r.same_endpoint => members
                .iter()
                .position(|&m| entry.endpoints[m].addr == *first),
            _ => None,
        };
        let mut pick = None;
        for _ in 0..picks {
            let p = self
                .balancer
                .pick(&pool, members.len(), &policy.lb, key.as_deref(), pinned)
                .ok_or(ProxyError::NoEndpoints)?;
            let fresh = !tried.contains(&entry.endpoints[members[p.index]].addr);
            pick = Some(p);
            if fresh {
                break;
            }
        }
        let pick = pick.ok_or(ProxyError::NoEndpoints)?;
        let ep = &entry.endpoints[members[pick.index]];
        Ok((ep.addr, entry.protocol, pick, ep.subset.clone()))
    }

    pub(super) fn choose_subset(&self, split: &[(String, u32)]) -> Option<String> {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let i = crate::balance::weighted_index(&mut *rng, split.iter().map(|(_, w)| *w))?;
        Some(split[i].0.clone())
    }
}
