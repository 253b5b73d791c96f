//! Monitor's memory: time-based windows of metric samples, per instance, per service.
//!
//! Why time-based: samples arrive at uneven rates (a stats stream every second, a log line
//! whenever the application writes one), so "the last N samples" would mean a different span
//! for every metric. A window keeps what was measured during the last `span` (the autonomic
//! loop's interval, by default), and a hard cap on its length bounds memory whatever the rate.
//!
//! Why a warm-up: a container that has just started shows start-up spikes (CPU while it
//! loads, an empty cache's response times) that say nothing about the load. An instance's
//! samples are kept out of the averages until the instance is older than the warm-up span
//! and has reported a few samples of the metric since then.
//!
//! ```text
//!   instance started ──► warming up ──(age ≥ warmup, then ≥ N samples of the metric)──► counted
//!                        (samples dropped)                                              (averaged)
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::millis::Millis;

/// Samples kept per metric and instance at most: a one-second stats stream over a window of
/// more than eight minutes, or a chatty log. The oldest sample goes first.
pub const DEFAULT_MAX_SAMPLES_PER_WINDOW: usize = 512;
/// How long after it started an instance's samples are dropped as start-up noise.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(10);
/// Samples of a metric an instance must report after its warm-up before it is averaged.
pub const DEFAULT_WARMUP_SAMPLES: u32 = 3;
/// Metric names one instance may report; a misbehaving log cannot grow memory without bound.
pub const DEFAULT_MAX_METRICS_PER_INSTANCE: usize = 64;

/// How windows are sized and when instances count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSettings {
    /// Samples older than this (relative to the newest sample, or to the time of a read)
    /// are evicted.
    pub span: Duration,
    /// Hard cap on the samples of one window; at least 1.
    pub max_samples: usize,
    /// Samples taken within this span after an instance started are dropped.
    pub warmup: Duration,
    /// Samples of a metric, after the warm-up, before the instance's metric is averaged.
    pub warmup_samples: u32,
    /// Distinct metrics one instance may report; samples of further metrics are rejected.
    pub max_metrics_per_instance: usize,
}

impl WindowSettings {
    /// Windows as long as the autonomic loop's interval, with the default bounds.
    pub fn for_loop_interval(span: Duration) -> WindowSettings {
        WindowSettings {
            span,
            max_samples: DEFAULT_MAX_SAMPLES_PER_WINDOW,
            warmup: DEFAULT_WARMUP,
            warmup_samples: DEFAULT_WARMUP_SAMPLES,
            max_metrics_per_instance: DEFAULT_MAX_METRICS_PER_INSTANCE,
        }
    }
}

/// Why a sample was not kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleRejected {
    #[error("value {value} is not a finite number")]
    NotFinite { value: f64 },
    #[error("sample taken at {at} is older than the window (newest sample at {newest})")]
    TooOld { at: Millis, newest: Millis },
    #[error("instance already reports {limit} metrics; \"{metric}\" is one too many")]
    TooManyMetrics { metric: String, limit: usize },
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Millis,
    pub value: f64,
}

/// The samples of one metric taken during the last `span`, at most `max_samples` of them,
/// ordered by time.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWindow {
    span: Duration,
    max_samples: usize,
    samples: VecDeque<Sample>,
}

impl MetricWindow {
    /// An empty window; a cap of 0 is taken as 1.
    pub fn new(span: Duration, max_samples: usize) -> MetricWindow {
        MetricWindow {
            span,
            max_samples: max_samples.max(1),
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample, evicting those that fall out of the window ending at the newest sample,
    /// then the oldest ones beyond the cap. Samples may arrive slightly out of order; one older
    /// than the whole window is rejected, as is a value that is not a finite number (one NaN
    /// would make every mean NaN).
    pub fn push(&mut self, at: Millis, value: f64) -> Result<(), SampleRejected> {
        if !value.is_finite() {
            return Err(SampleRejected::NotFinite { value });
        }
        let newest = self.samples.back().map_or(at, |last| last.at.max(at));
        if newest.since(at) > self.span {
            return Err(SampleRejected::TooOld { at, newest });
        }
        let position = self.samples.partition_point(|sample| sample.at <= at);
        self.samples.insert(position, Sample { at, value });
        self.evict(newest);
        while self.samples.len() > self.max_samples {
            self.samples.pop_front();
        }
        Ok(())
    }

    /// Drops the samples more than `span` older than `now`.
    pub fn evict(&mut self, now: Millis) {
        while self
            .samples
            .front()
            .is_some_and(|sample| now.since(sample.at) > self.span)
        {
            self.samples.pop_front();
        }
    }

    /// The mean of the samples in the window ending at `now`; `None` when it is empty.
    pub fn mean(&mut self, now: Millis) -> Option<f64> {
        self.evict(now);
        self.mean_of(|_| true)
    }

    /// The mean of the samples taken at or after `from`, in the window ending at `now`.
    fn mean_since(&mut self, from: Millis, now: Millis) -> Option<f64> {
        self.evict(now);
        self.mean_of(|sample| sample.at >= from)
    }

    fn mean_of(&self, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        let (sum, count) = self
            .samples
            .iter()
            .filter(|sample| keep(sample))
            .fold((0.0, 0_u32), |(sum, count), sample| {
                (sum + sample.value, count + 1)
            });
        (count > 0).then(|| sum / f64::from(count))
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }
}

/// One metric of one instance: its window and how many samples it has reported since its
/// warm-up ended.
#[derive(Debug, Clone, PartialEq)]
struct MetricSeries {
    window: MetricWindow,
    received: u32,
}

/// The metrics of one running instance, with its warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSamples {
    settings: WindowSettings,
    started: Millis,
    metrics: BTreeMap<String, MetricSeries>,
}

impl InstanceSamples {
    pub fn new(settings: WindowSettings, started: Millis) -> InstanceSamples {
        InstanceSamples {
            settings,
            started,
            metrics: BTreeMap::new(),
        }
    }

    pub fn started(&self) -> Millis {
        self.started
    }

    /// When the warm-up ends: samples taken earlier are dropped.
    pub fn warm_from(&self) -> Millis {
        self.started.plus(self.settings.warmup)
    }

    /// Records a sample; one taken during the warm-up is accepted and dropped.
    pub fn record(&mut self, metric: &str, at: Millis, value: f64) -> Result<(), SampleRejected> {
        if !value.is_finite() {
            return Err(SampleRejected::NotFinite { value });
        }
        if at < self.warm_from() {
            return Ok(());
        }
        let limit = self.settings.max_metrics_per_instance;
        if !self.metrics.contains_key(metric) && self.metrics.len() >= limit {
            return Err(SampleRejected::TooManyMetrics {
                metric: metric.to_owned(),
                limit,
            });
        }
        let settings = self.settings;
        let series = self
            .metrics
            .entry(metric.to_owned())
            .or_insert_with(|| MetricSeries {
                window: MetricWindow::new(settings.span, settings.max_samples),
                received: 0,
            });
        series.window.push(at, value)?;
        series.received = series.received.saturating_add(1);
        Ok(())
    }

    /// Whether `metric` of this instance counts in averages at `now`.
    pub fn is_warmed_up(&self, metric: &str, now: Millis) -> bool {
        now >= self.warm_from()
            && self
                .metrics
                .get(metric)
                .is_some_and(|series| series.received >= self.settings.warmup_samples)
    }

    /// The mean of `metric` over the window ending at `now`; `None` while warming up or when
    /// the window holds no sample.
    pub fn mean(&mut self, metric: &str, now: Millis) -> Option<f64> {
        if !self.is_warmed_up(metric, now) {
            return None;
        }
        let from = self.warm_from();
        self.metrics.get_mut(metric)?.window.mean_since(from, now)
    }

    /// The names of the metrics this instance has reported since its warm-up.
    pub fn metric_names(&self) -> impl Iterator<Item = &str> {
        self.metrics.keys().map(String::as_str)
    }
}

/// A metric's mean across the instances of a service that count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricMean {
    /// The mean of the instances' window means: each instance weighs the same, however
    /// often it reports.
    pub mean: f64,
    /// How many warmed-up instances contributed.
    pub instances: u32,
}

/// The samples of every instance on this node, by service and instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceMetrics {
    settings: WindowSettings,
    /// service → instance → samples.
    services: BTreeMap<String, BTreeMap<String, InstanceSamples>>,
}

impl ServiceMetrics {
    pub fn new(settings: WindowSettings) -> ServiceMetrics {
        ServiceMetrics {
            settings,
            services: BTreeMap::new(),
        }
    }

    pub fn settings(&self) -> WindowSettings {
        self.settings
    }

    /// Starts tracking an instance from the time it started; a known instance is unchanged.
    pub fn instance_started(&mut self, service: &str, instance: &str, at: Millis) {
        let settings = self.settings;
        self.services
            .entry(service.to_owned())
            .or_default()
            .entry(instance.to_owned())
            .or_insert_with(|| InstanceSamples::new(settings, at));
    }

    /// Forgets an instance and its samples.
    pub fn instance_stopped(&mut self, service: &str, instance: &str) {
        if let Some(instances) = self.services.get_mut(service) {
            instances.remove(instance);
            if instances.is_empty() {
                self.services.remove(service);
            }
        }
    }

    /// Keeps only the instances for which `keep(service, instance)` holds (e.g. those the
    /// runtime still lists, when a stop event was missed).
    pub fn retain_instances(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.services.retain(|service, instances| {
            instances.retain(|instance, _| keep(service, instance));
            !instances.is_empty()
        });
    }

    /// Records a sample. An instance not seen before is taken to have started now (an
    /// adopted container warms up again, which costs one warm-up span).
    pub fn record(
        &mut self,
        service: &str,
        instance: &str,
        metric: &str,
        at: Millis,
        value: f64,
    ) -> Result<(), SampleRejected> {
        self.instance_started(service, instance, at);
        self.services
            .get_mut(service)
            .and_then(|instances| instances.get_mut(instance))
            .map_or(Ok(()), |samples| samples.record(metric, at, value))
    }

    /// `metric` of `service`: the mean across its warmed-up instances, `None` when no
    /// warmed-up instance has a sample in the window ending at `now`.
    pub fn mean(&mut self, service: &str, metric: &str, now: Millis) -> Option<f64> {
        let instances = self.services.get_mut(service)?;
        mean_across(instances, metric, now).map(|mean| mean.mean)
    }

    /// Every metric of `service` with a warmed-up sample, with its mean.
    pub fn means(&mut self, service: &str, now: Millis) -> BTreeMap<String, MetricMean> {
        let Some(instances) = self.services.get_mut(service) else {
            return BTreeMap::new();
        };
        let names: Vec<String> = instances
            .values()
            .flat_map(InstanceSamples::metric_names)
            .map(str::to_owned)
            .collect();
        let mut means = BTreeMap::new();
        for name in names {
            if means.contains_key(&name) {
                continue;
            }
            if let Some(mean) = mean_across(instances, &name, now) {
                means.insert(name, mean);
            }
        }
        means
    }

    /// Every metric of one instance with a warmed-up sample, with the instance's own mean.
    pub fn instance_means(
        &mut self,
        service: &str,
        instance: &str,
        now: Millis,
    ) -> BTreeMap<String, f64> {
        let Some(samples) = self
            .services
            .get_mut(service)
            .and_then(|instances| instances.get_mut(instance))
        else {
            return BTreeMap::new();
        };
        let names: Vec<String> = samples.metric_names().map(str::to_owned).collect();
        names
            .into_iter()
            .filter_map(|name| samples.mean(&name, now).map(|mean| (name, mean)))
            .collect()
    }

    /// The services with at least one tracked instance.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// How many instances of `service` are tracked, warmed up or not.
    pub fn instance_count(&self, service: &str) -> usize {
        self.services.get(service).map_or(0, BTreeMap::len)
    }
}

fn mean_across(
    instances: &mut BTreeMap<String, InstanceSamples>,
    metric: &str,
    now: Millis,
) -> Option<MetricMean> {
    let (sum, count) = instances
        .values_mut()
        .filter_map(|samples| samples.mean(metric, now))
        .fold((0.0, 0_u32), |(sum, count), mean| (sum + mean, count + 1));
    (count > 0).then(|| MetricMean {
        mean: sum / f64::from(count),
        instances: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: Duration = Duration::from_secs(10);

    fn at(secs: u64) -> Millis {
        Millis::from_secs(secs)
    }

    fn window_with(samples: &[(u64, f64)], cap: usize) -> MetricWindow {
        let mut window = MetricWindow::new(SPAN, cap);
        for &(secs, value) in samples {
            window.push(at(secs), value).expect("sample accepted");
        }
        window
    }

    fn settings(warmup_secs: u64, warmup_samples: u32) -> WindowSettings {
        WindowSettings {
            span: SPAN,
            max_samples: 100,
            warmup: Duration::from_secs(warmup_secs),
            warmup_samples,
            max_metrics_per_instance: 4,
        }
    }

    #[test]
    fn window_mean_covers_only_the_last_span() {
        // (samples as (secs, value), read at, expected mean)
        type Case<'a> = (&'a [(u64, f64)], u64, Option<f64>);
        let cases: &[Case<'_>] = &[
            (&[], 5, None),
            (&[(1, 0.25), (2, 0.75)], 2, Some(0.5)),
            // at 12 the sample at 1 is 11 s old and goes; the one at 2 is exactly 10 s old.
            (&[(1, 0.25), (2, 0.75)], 12, Some(0.75)),
            (&[(1, 0.25), (2, 0.75)], 13, None),
        ];
        for &(samples, read_at, expected) in cases {
            let mut window = window_with(samples, 100);
            assert_eq!(
                window.mean(at(read_at)),
                expected,
                "{samples:?} read at {read_at}"
            );
        }
    }

    #[test]
    fn window_evicts_old_samples_on_insert() {
        let window = window_with(&[(0, 1.0), (5, 2.0), (11, 3.0)], 100);
        let kept: Vec<f64> = window.samples().map(|s| s.value).collect();
        assert_eq!(kept, [2.0, 3.0]);
    }

    #[test]
    fn window_cap_drops_the_oldest_sample() {
        let mut window = window_with(&[(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)], 3);
        assert_eq!(window.len(), 3);
        assert_eq!(window.mean(at(4)), Some(3.0));
    }

    #[test]
    fn window_keeps_late_samples_in_time_order() {
        let window = window_with(&[(5, 5.0), (3, 3.0), (4, 4.0)], 100);
        let times: Vec<Millis> = window.samples().map(|s| s.at).collect();
        assert_eq!(times, [at(3), at(4), at(5)]);
    }

    #[test]
    fn window_rejects_non_finite_and_too_old_samples() {
        let mut window = window_with(&[(20, 1.0)], 100);
        assert_eq!(
            window.push(at(21), f64::NAN).map_err(|e| e.to_string()),
            Err("value NaN is not a finite number".to_owned())
        );
        assert!(matches!(
            window.push(at(9), 1.0),
            Err(SampleRejected::TooOld { .. })
        ));
        assert!(window.push(at(21), f64::INFINITY).is_err());
        assert_eq!(window.len(), 1);
    }

    #[test]
    fn instance_is_ignored_until_warm_up_span_and_samples() {
        // Started at 0, warm-up 5 s and 2 samples. (sample times, read at, counted?)
        let cases: &[(&[u64], u64, bool)] = &[
            (&[1, 2, 3, 4], 4, false),    // all within the warm-up span: dropped
            (&[1, 2, 3, 4, 5], 5, false), // one sample after the warm-up
            (&[5, 6], 6, true),
            (&[6, 7], 7, true),
            (&[6], 20, false), // old enough, too few samples
        ];
        for &(times, read_at, counted) in cases {
            let mut instance = InstanceSamples::new(settings(5, 2), at(0));
            for &time in times {
                instance.record("cpu_avg", at(time), 0.5).expect("accepted");
            }
            assert_eq!(
                instance.is_warmed_up("cpu_avg", at(read_at)),
                counted,
                "{times:?} read at {read_at}"
            );
            assert_eq!(instance.mean("cpu_avg", at(read_at)).is_some(), counted);
        }
    }

    #[test]
    fn start_up_spike_is_kept_out_of_the_mean() {
        let mut instance = InstanceSamples::new(settings(5, 1), at(0));
        for (time, value) in [(1, 1.0), (2, 1.0), (6, 0.2), (7, 0.4)] {
            instance
                .record("cpu_avg", at(time), value)
                .expect("accepted");
        }
        let mean = instance.mean("cpu_avg", at(7)).expect("warmed up");
        assert!((mean - 0.3).abs() < 1e-12, "{mean}");
    }

    #[test]
    fn instance_rejects_metrics_beyond_its_limit() {
        let mut instance = InstanceSamples::new(settings(0, 1), at(0));
        for metric in ["a", "b", "c", "d"] {
            instance
                .record(metric, at(1), 1.0)
                .expect("within the limit");
        }
        assert_eq!(
            instance.record("e", at(1), 1.0),
            Err(SampleRejected::TooManyMetrics {
                metric: "e".to_owned(),
                limit: 4
            })
        );
        instance
            .record("a", at(2), 1.0)
            .expect("a known metric still records");
    }

    #[test]
    fn service_mean_averages_warmed_up_instances_equally() {
        let mut metrics = ServiceMetrics::new(settings(5, 1));
        metrics.instance_started("web", "old", at(0));
        metrics.instance_started("web", "new", at(20));
        for time in [10, 11, 12, 13] {
            metrics
                .record("web", "old", "cpu_avg", at(time), 0.2)
                .expect("ok");
        }
        metrics
            .record("web", "other", "cpu_avg", at(0), 0.1)
            .expect("ok");
        metrics
            .record("web", "other", "cpu_avg", at(13), 0.8)
            .expect("ok");
        // "new" is within its warm-up: its spike is not counted.
        metrics
            .record("web", "new", "cpu_avg", at(21), 1.0)
            .expect("ok");

        let mean = metrics
            .mean("web", "cpu_avg", at(21))
            .expect("two instances count");
        assert!((mean - 0.5).abs() < 1e-12, "{mean}");
        let means = metrics.means("web", at(21));
        assert_eq!(means.get("cpu_avg").map(|m| m.instances), Some(2));
        assert_eq!(metrics.mean("web", "mem_avg", at(21)), None);
        assert_eq!(metrics.mean("db", "cpu_avg", at(21)), None);
    }

    #[test]
    fn service_has_no_mean_when_only_new_instances_report() {
        let mut metrics = ServiceMetrics::new(settings(5, 3));
        metrics.instance_started("web", "a", at(0));
        metrics
            .record("web", "a", "cpu_avg", at(1), 0.9)
            .expect("ok");
        assert_eq!(metrics.mean("web", "cpu_avg", at(2)), None);
        assert!(metrics.means("web", at(2)).is_empty());
    }

    #[test]
    fn stopped_instances_are_forgotten() {
        let mut metrics = ServiceMetrics::new(settings(0, 1));
        metrics
            .record("web", "a", "cpu_avg", at(1), 0.9)
            .expect("ok");
        metrics
            .record("web", "b", "cpu_avg", at(1), 0.1)
            .expect("ok");
        metrics
            .record("db", "c", "cpu_avg", at(1), 0.1)
            .expect("ok");
        metrics.instance_stopped("web", "a");
        assert_eq!(metrics.mean("web", "cpu_avg", at(1)), Some(0.1));
        metrics.retain_instances(|service, _| service == "web");
        assert_eq!(metrics.services().collect::<Vec<_>>(), ["web"]);
        assert_eq!(metrics.instance_count("web"), 1);
    }
}
