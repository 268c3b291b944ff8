//! Benchmark tools for `bench/run`: `wharf-fixture` (a local PyPI upstream of generated projects with request
//! counters exposed over HTTP, optional latency and bandwidth cap) and `wharf-load` (burst and throughput
//! clients reporting latency percentiles, and an image puller). [`oci`] is the fixture's registry for the image
//! scenario. Nothing here ships in the `wharf` binary.

pub mod oci;

/// The `p`-th percentile (0..=1) of sorted values, in the same unit.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 0.5), 51.0);
        assert_eq!(super::percentile(&v, 0.99), 99.0);
        assert_eq!(super::percentile(&[], 0.5), 0.0);
    }
}
