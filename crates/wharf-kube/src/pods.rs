//! The bounded table of pod addresses: IP → (namespace, pod, label value), fed by the watch and read on every
//! request.
//!
//! Rules: the newest owner of an address wins (IPs are reused as soon as a pod is gone); a pod that was
//! deleted keeps its address for `deleted_grace` unless a newer pod takes it, because a request is logged when
//! its last byte is sent, possibly after the pod ended; at most `max_pods` addresses are held: at the limit,
//! expired entries go first, then the oldest deleted ones, and a new live pod that still does not fit is not
//! tracked (counted in `dropped`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Most addresses kept per pod (a dual-stack pod has two).
pub const MAX_POD_IPS: usize = 4;

/// Who an address belonged to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodOwner {
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    /// The value of the configured label (`usage.pods.label`), when the pod has it.
    pub label: Option<Arc<str>>,
}

/// One pod as the watch reports it, already checked and bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: Arc<str>,
    pub owner: PodOwner,
    /// `status.podIPs` (one per family on dual-stack clusters, [`MAX_POD_IPS`] at most); empty for pods without
    /// an address yet, on the host network, or finished.
    pub ips: Vec<IpAddr>,
}

#[derive(Debug)]
struct Slot {
    uid: Arc<str>,
    owner: PodOwner,
    /// When the pod was seen deleted (or finished); `None` while it lives.
    deleted: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    by_ip: HashMap<IpAddr, Slot>,
    /// Each live pod's addresses, to move or free them when the pod changes.
    by_uid: HashMap<Arc<str>, Vec<IpAddr>>,
    dropped: u64,
}

/// The table; cheap to read concurrently.
#[derive(Debug)]
pub struct PodMap {
    inner: RwLock<Inner>,
    max_pods: usize,
    grace: Duration,
}

/// Counts for `/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PodMapStats {
    /// Addresses of live pods.
    pub live: u64,
    /// Addresses of deleted pods still kept for `deleted_grace`.
    pub deleted: u64,
    /// Pods not tracked because the table was full (`usage.pods.max_pods`).
    pub dropped: u64,
}

impl PodMap {
    pub fn new(max_pods: usize, grace: Duration) -> PodMap {
        PodMap {
            inner: RwLock::new(Inner::default()),
            max_pods: max_pods.max(1),
            grace,
        }
    }

    /// The owner of `ip` now.
    pub fn lookup(&self, ip: IpAddr) -> Option<PodOwner> {
        self.lookup_at(ip, Instant::now())
    }

    pub fn lookup_at(&self, ip: IpAddr, now: Instant) -> Option<PodOwner> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let slot = inner.by_ip.get(&canonical(ip))?;
        match slot.deleted {
            Some(at) if now.saturating_duration_since(at) > self.grace => None,
            _ => Some(slot.owner.clone()),
        }
    }

    pub fn stats(&self) -> PodMapStats {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let deleted = inner.by_ip.values().filter(|s| s.deleted.is_some()).count() as u64;
        PodMapStats {
            live: inner.by_ip.len() as u64 - deleted,
            deleted,
            dropped: inner.dropped,
        }
    }

    /// A pod was added or changed (ADDED, MODIFIED, or an item of a LIST).
    pub fn upsert(&self, pod: &PodInfo, now: Instant) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let new_ips: Vec<IpAddr> = pod.ips.iter().map(|ip| canonical(*ip)).collect();
        let old_ips = inner.by_uid.remove(&pod.uid).unwrap_or_default();
        // Addresses the pod left (it finished, or changed address) stay with it for the grace.
        for ip in old_ips.iter().filter(|ip| !new_ips.contains(ip)) {
            release(&mut inner, ip, &pod.uid, now);
        }
        let mut held = Vec::new();
        for ip in new_ips {
            if let Some(slot) = inner.by_ip.get(&ip) {
                if slot.uid != pod.uid {
                    // A newer pod took the address: the old one no longer owns it.
                    let previous = slot.uid.clone();
                    if let Some(ips) = inner.by_uid.get_mut(&previous) {
                        ips.retain(|other| *other != ip);
                        if ips.is_empty() {
                            inner.by_uid.remove(&previous);
                        }
                    }
                }
            } else if !make_room(&mut inner, self.max_pods, self.grace, now) {
                inner.dropped += 1;
                continue;
            }
            inner.by_ip.insert(
                ip,
                Slot {
                    uid: pod.uid.clone(),
                    owner: pod.owner.clone(),
                    deleted: None,
                },
            );
            held.push(ip);
        }
        if !held.is_empty() {
            inner.by_uid.insert(pod.uid.clone(), held);
        }
    }

    /// A pod was deleted: its addresses resolve to it for the grace period, unless a newer pod takes them.
    pub fn delete(&self, uid: &str, now: Instant) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for ip in inner.by_uid.remove(uid).unwrap_or_default() {
            release(&mut inner, &ip, uid, now);
        }
    }

    /// After a full LIST of a scope (one namespace, or every one for `None`): live pods of that scope that the
    /// list no longer has were deleted while nobody watched.
    pub fn retain_listed(&self, namespace: Option<&str>, listed: &[Arc<str>], now: Instant) {
        let listed: std::collections::HashSet<&str> = listed.iter().map(|u| &**u).collect();
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<Arc<str>> = inner
            .by_uid
            .iter()
            .filter(|(uid, ips)| {
                !listed.contains(&***uid)
                    && ips.iter().any(|ip| {
                        inner.by_ip.get(ip).is_some_and(|slot| {
                            namespace.is_none_or(|ns| *slot.owner.namespace == *ns)
                        })
                    })
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            for ip in inner.by_uid.remove(&uid).unwrap_or_default() {
                release(&mut inner, &ip, &uid, now);
            }
        }
    }

    /// Drops entries of deleted pods older than the grace (periodic, so the table does not wait for a full
    /// one to shed them).
    pub fn prune(&self, now: Instant) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let grace = self.grace;
        inner.by_ip.retain(|_, slot| {
            slot.deleted
                .is_none_or(|at| now.saturating_duration_since(at) <= grace)
        });
    }
}

/// Marks `ip` as left by the pod `uid` at `now`, if that pod still owns it.
fn release(inner: &mut Inner, ip: &IpAddr, uid: &str, now: Instant) {
    if let Some(slot) = inner.by_ip.get_mut(ip) {
        if &*slot.uid == uid && slot.deleted.is_none() {
            slot.deleted = Some(now);
        }
    }
}

/// Frees a slot when the table is full: expired entries, else the oldest deleted one. False when every slot
/// holds a live pod.
fn make_room(inner: &mut Inner, max: usize, grace: Duration, now: Instant) -> bool {
    if inner.by_ip.len() < max {
        return true;
    }
    inner.by_ip.retain(|_, slot| {
        slot.deleted
            .is_none_or(|at| now.saturating_duration_since(at) <= grace)
    });
    if inner.by_ip.len() < max {
        return true;
    }
    let oldest = inner
        .by_ip
        .iter()
        .filter_map(|(ip, slot)| slot.deleted.map(|at| (at, *ip)))
        .min();
    match oldest {
        Some((_, ip)) => {
            inner.by_ip.remove(&ip);
            true
        }
        None => false,
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of an IPv4 client) as IPv4, so they match the
/// pod's `status.podIP`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, ns: &str, name: &str, ip: Option<&str>) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            owner: PodOwner {
                namespace: ns.into(),
                pod: name.into(),
                label: None,
            },
            ips: ip.map(|ip| ip.parse().unwrap()).into_iter().collect(),
        }
    }

    fn ns_of(map: &PodMap, ip: &str, now: Instant) -> Option<String> {
        map.lookup_at(ip.parse().unwrap(), now)
            .map(|o| format!("{}/{}", o.namespace, o.pod))
    }

    #[test]
    fn a_deleted_pod_keeps_its_address_for_the_grace_then_a_new_owner_wins() {
        let t0 = Instant::now();
        let map = PodMap::new(10, Duration::from_secs(60));
        map.upsert(&pod("u1", "team-a", "job-1", Some("10.0.0.5")), t0);
        assert_eq!(ns_of(&map, "10.0.0.5", t0).as_deref(), Some("team-a/job-1"));
        map.delete("u1", t0 + Duration::from_secs(1));
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            ns_of(&map, "10.0.0.5", later).as_deref(),
            Some("team-a/job-1")
        );
        assert_eq!(ns_of(&map, "10.0.0.5", t0 + Duration::from_secs(62)), None);
        // Reused within the grace: the newest owner wins at once.
        map.upsert(&pod("u2", "team-b", "job-2", Some("10.0.0.5")), later);
        assert_eq!(
            ns_of(&map, "10.0.0.5", later).as_deref(),
            Some("team-b/job-2")
        );
        // A late DELETED of the old pod does not touch the new owner.
        map.delete("u1", later);
        assert_eq!(
            ns_of(&map, "10.0.0.5", later + Duration::from_secs(120)).as_deref(),
            Some("team-b/job-2")
        );
    }

    #[test]
    fn an_address_taken_before_the_old_pods_delete_event_stays_with_the_new_pod() {
        let t = Instant::now();
        let map = PodMap::new(10, Duration::from_secs(60));
        map.upsert(&pod("old", "a", "p1", Some("10.0.0.9")), t);
        map.upsert(&pod("new", "b", "p2", Some("10.0.0.9")), t);
        map.delete("old", t);
        assert_eq!(ns_of(&map, "10.0.0.9", t).as_deref(), Some("b/p2"));
        assert_eq!(
            map.stats(),
            PodMapStats {
                live: 1,
                deleted: 0,
                dropped: 0
            }
        );
    }

    #[test]
    fn a_finished_pod_gives_up_its_address_and_a_pod_without_one_is_not_tracked() {
        let t = Instant::now();
        let map = PodMap::new(10, Duration::from_secs(5));
        map.upsert(&pod("u", "a", "p", None), t);
        assert_eq!(map.stats().live, 0);
        map.upsert(&pod("u", "a", "p", Some("10.1.1.1")), t);
        map.upsert(&pod("u", "a", "p", None), t);
        assert_eq!(
            map.stats(),
            PodMapStats {
                live: 0,
                deleted: 1,
                dropped: 0
            }
        );
        assert_eq!(ns_of(&map, "10.1.1.1", t + Duration::from_secs(6)), None);
        map.prune(t + Duration::from_secs(6));
        assert_eq!(map.stats().deleted, 0);
    }

    #[test]
    fn the_table_is_bounded_deleted_pods_make_room_and_live_ones_are_never_displaced() {
        let t = Instant::now();
        let map = PodMap::new(3, Duration::from_secs(600));
        for i in 0..3 {
            map.upsert(
                &pod(&format!("u{i}"), "a", "p", Some(&format!("10.0.0.{i}"))),
                t,
            );
        }
        map.upsert(&pod("u9", "a", "p", Some("10.0.0.9")), t);
        assert_eq!(
            map.stats(),
            PodMapStats {
                live: 3,
                deleted: 0,
                dropped: 1
            }
        );
        assert_eq!(ns_of(&map, "10.0.0.9", t), None);
        map.delete("u1", t);
        map.upsert(&pod("u9", "a", "p", Some("10.0.0.9")), t);
        assert_eq!(
            map.stats(),
            PodMapStats {
                live: 3,
                deleted: 0,
                dropped: 1
            }
        );
        assert!(ns_of(&map, "10.0.0.9", t).is_some());
        assert_eq!(ns_of(&map, "10.0.0.1", t), None);
    }

    #[test]
    fn a_relist_marks_pods_missing_from_its_scope_as_deleted() {
        let t = Instant::now();
        let map = PodMap::new(10, Duration::from_secs(60));
        map.upsert(&pod("a1", "a", "p1", Some("10.0.0.1")), t);
        map.upsert(&pod("b1", "b", "p2", Some("10.0.0.2")), t);
        map.retain_listed(Some("a"), &[], t);
        assert_eq!(
            map.stats(),
            PodMapStats {
                live: 1,
                deleted: 1,
                dropped: 0
            }
        );
        map.retain_listed(None, &["b1".into()], t);
        assert_eq!(map.stats().live, 1);
        map.retain_listed(None, &[], t);
        assert_eq!(map.stats().live, 0);
    }

    #[test]
    fn a_dual_stack_pod_owns_both_addresses() {
        let t = Instant::now();
        let map = PodMap::new(10, Duration::from_secs(60));
        let mut p = pod("u", "a", "p", Some("10.0.0.1"));
        p.ips.push("fd00::1".parse().unwrap());
        map.upsert(&p, t);
        assert_eq!(ns_of(&map, "fd00::1", t).as_deref(), Some("a/p"));
        assert_eq!(ns_of(&map, "10.0.0.1", t).as_deref(), Some("a/p"));
        // One of them reused by a new pod: the other stays with the first pod, and its delete frees only that.
        map.upsert(&pod("v", "b", "q", Some("fd00::1")), t);
        map.delete("u", t);
        assert_eq!(
            ns_of(&map, "fd00::1", t + Duration::from_secs(120)).as_deref(),
            Some("b/q")
        );
        assert_eq!(
            map.stats(),
            PodMapStats {
                live: 1,
                deleted: 1,
                dropped: 0
            }
        );
    }

    #[test]
    fn ipv4_mapped_client_addresses_match_ipv4_pods() {
        let t = Instant::now();
        let map = PodMap::new(10, Duration::from_secs(60));
        map.upsert(&pod("u", "a", "p", Some("10.2.3.4")), t);
        assert!(map
            .lookup_at("::ffff:10.2.3.4".parse().unwrap(), t)
            .is_some());
    }
}
