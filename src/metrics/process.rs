//! The process families every Prometheus client library exposes
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`),
//! read from `/proc/self` at each scrape.
//!
//! prometheus-client has no process collector of its own, and the
//! maintained ones belong to other metrics libraries; `procfs` reads and
//! parses `/proc`, and this collector turns one reading into the standard
//! names, so the usual dashboards and alerts work unchanged. Linux only: a
//! family that cannot be read is left out of that scrape, never a failed
//! scrape.

use procfs::process::{LimitValue, Process};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Reads `/proc/self` at each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector {
    /// Seconds since the epoch; a process's start does not move.
    start_time: Option<f64>,
}

/// One reading of the process's counters.
struct Reading {
    cpu_seconds: f64,
    resident_bytes: i64,
}

// === impl ProcessCollector ===

impl ProcessCollector {
    pub(super) fn new() -> Self {
        Self {
            start_time: start_time(),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let me = Process::myself().ok();
        if let Some(reading) = me.as_ref().and_then(read) {
            let cpu = ConstCounter::new(reading.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(&Unit::Bytes),
                reading.resident_bytes,
            )?;
        }
        if let Some(open) = me.as_ref().and_then(|p| p.fd_count().ok()) {
            let open = i64::try_from(open).unwrap_or(i64::MAX);
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                None,
                open,
            )?;
        }
        let max = me
            .as_ref()
            .and_then(|p| p.limits().ok())
            .and_then(|l| match l.max_open_files.soft_limit {
                LimitValue::Value(v) => i64::try_from(v).ok(),
                LimitValue::Unlimited => None,
            });
        if let Some(max) = max {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                max,
            )?;
        }
        if let Some(start) = self.start_time {
            let start = ConstGauge::new(start);
            start.encode(encoder.encode_descriptor(
                "process_start_time",
                "Start time of the process since the Unix epoch in seconds",
                Some(&Unit::Seconds),
                start.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}

fn read(me: &Process) -> Option<Reading> {
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let pages = i64::try_from(stat.rss).ok()?;
    let page_size = i64::try_from(procfs::page_size()).ok()?;
    Some(Reading {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: pages.saturating_mul(page_size),
    })
}

/// The boot time plus the process's start in clock ticks after boot.
fn start_time() -> Option<f64> {
    let stat = Process::myself().ok()?.stat().ok()?;
    let boot = procfs::boot_time_secs().ok()? as f64;
    Some(boot + stat.starttime as f64 / procfs::ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn the_process_families_carry_their_standard_names() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector::new()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        let sample = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line.rsplit_once(' ').unwrap().1.parse().unwrap()
        };
        assert!(sample("process_resident_memory_bytes ") > 1e6);
        assert!(sample("process_open_fds ") >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = sample("process_start_time_seconds ");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
    }
}
