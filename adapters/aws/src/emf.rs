//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines, for the Lambdas.
//!
//! [`Emf`] is a `metrics` recorder that keeps counters, gauges and histogram samples in
//! memory; [`Emf::flush`] writes one JSON line per label set (the labels become the
//! dimensions) to stdout, which CloudWatch Logs turns into metrics in namespace
//! `Herald`. The Lambdas flush after each invocation. Counters report what happened since
//! the last flush; a histogram reports up to 100 samples per flush (EMF's limit), taken
//! evenly when there were more, so a busy invocation is sampled rather than noisy.

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// EMF takes at most 100 values per metric per document.
const MAX_SAMPLES: usize = 100;

#[derive(Default)]
struct Cell {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    counter: u64,
    gauge: Option<f64>,
    samples: Vec<f64>,
    /// Samples seen since the last flush (for even sampling past MAX_SAMPLES).
    seen: u64,
}

impl Cell {
    fn with(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.with(|s| s.counter += value)
    }
    fn absolute(&self, value: u64) {
        self.with(|s| s.counter = value)
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.with(|s| s.gauge = Some(s.gauge.unwrap_or(0.0) + value))
    }
    fn decrement(&self, value: f64) {
        self.with(|s| s.gauge = Some(s.gauge.unwrap_or(0.0) - value))
    }
    fn set(&self, value: f64) {
        self.with(|s| s.gauge = Some(value))
    }
}

impl HistogramFn for Cell {
    fn record(&self, value: f64) {
        self.with(|s| {
            s.seen += 1;
            if s.samples.len() < MAX_SAMPLES {
                s.samples.push(value);
            } else {
                // Reservoir sampling: every sample had the same chance to be kept.
                let slot = (herald_core::throttle::now_us() as u64
                    ^ s.seen.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                    % s.seen;
                if (slot as usize) < MAX_SAMPLES {
                    s.samples[slot as usize] = value;
                }
            }
        })
    }
}

/// The recorder; install once with [`Emf::install`].
#[derive(Default, Clone)]
pub struct Emf {
    cells: Arc<Mutex<BTreeMap<Key, Arc<Cell>>>>,
    units: Arc<Mutex<BTreeMap<String, &'static str>>>,
}

impl Emf {
    /// Install as the process's recorder; the handle flushes.
    pub fn install() -> Emf {
        let emf = Emf::default();
        if metrics::set_global_recorder(emf.clone()).is_err() {
            tracing::warn!("a metrics recorder was installed already; EMF lines stay empty");
        }
        herald_core::metrics::describe();
        emf
    }

    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells.entry(key.clone()).or_default().clone()
    }

    /// The EMF documents for everything recorded since the last flush, and reset.
    pub fn documents(&self, timestamp_ms: i64) -> Vec<Value> {
        let cells: Vec<(Key, Arc<Cell>)> = self
            .cells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        let units = self.units.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Group by label set: one document each.
        let mut groups: BTreeMap<Vec<(String, String)>, Map<String, Value>> = BTreeMap::new();
        let mut definitions: BTreeMap<Vec<(String, String)>, Vec<Value>> = BTreeMap::new();
        for (key, cell) in cells {
            let mut state = cell.state.lock().unwrap_or_else(|e| e.into_inner());
            let value = if !state.samples.is_empty() {
                Some(json!(std::mem::take(&mut state.samples)))
            } else if state.counter > 0 {
                Some(json!(std::mem::take(&mut state.counter)))
            } else {
                state.gauge.map(|g| json!(g))
            };
            state.seen = 0;
            let Some(value) = value else { continue };
            let labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            let name = key.name().to_string();
            let mut definition = json!({ "Name": name });
            if let Some(unit) = units.get(&name) {
                definition["Unit"] = json!(unit);
            }
            groups
                .entry(labels.clone())
                .or_default()
                .insert(name, value);
            definitions.entry(labels).or_default().push(definition);
        }
        groups
            .into_iter()
            .map(|(labels, mut document)| {
                let dimensions: Vec<&String> = labels.iter().map(|(k, _)| k).collect();
                let metrics = definitions.remove(&labels).unwrap_or_default();
                document.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": "Herald",
                            "Dimensions": [dimensions],
                            "Metrics": metrics,
                        }]
                    }),
                );
                for (k, v) in &labels {
                    document.insert(k.clone(), json!(v));
                }
                Value::Object(document)
            })
            .collect()
    }

    /// Write everything recorded since the last flush to stdout, one line per label set.
    pub fn flush(&self) {
        let documents = self.documents(herald_core::domain::now_ms());
        let mut out = std::io::stdout().lock();
        for document in documents {
            let _ = writeln!(out, "{document}");
        }
        let _ = out.flush();
    }
}

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds => "Seconds",
        Unit::Milliseconds => "Milliseconds",
        Unit::Bytes => "Bytes",
        Unit::Count => "Count",
        _ => "None",
    }
}

impl Recorder for Emf {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit)
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit)
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

impl Emf {
    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            self.units
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.as_str().to_string(), unit_name(unit));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_counts_by_label_set_and_reset() {
        let emf = Emf::default();
        metrics::with_local_recorder(&emf, || {
            metrics::counter!("herald_requests_total", "status" => "202").increment(3);
            metrics::counter!("herald_requests_total", "status" => "429").increment(1);
            for i in 0..250 {
                metrics::histogram!("herald_delivery_seconds").record(i as f64);
            }
        });
        let documents = emf.documents(1_000);
        assert_eq!(documents.len(), 3);
        let accepted = documents
            .iter()
            .find(|d| d["status"] == "202")
            .expect("a document for status 202");
        assert_eq!(accepted["herald_requests_total"], 3);
        assert_eq!(
            accepted["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "status"
        );
        let latency = documents
            .iter()
            .find(|d| d.get("herald_delivery_seconds").is_some())
            .unwrap();
        assert_eq!(
            latency["herald_delivery_seconds"].as_array().unwrap().len(),
            100
        );
        assert!(
            emf.documents(2_000).is_empty(),
            "a flush resets what it reported"
        );
    }
}
