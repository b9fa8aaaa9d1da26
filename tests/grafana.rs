//! `docs/grafana/ferry.json` (issue 14) queries only metrics a running ferry exports: every
//! `ferry_*` and `process_*` name in every panel's expression is in `/metrics` (a
//! histogram's `_bucket` series by its family), each panel has a query, and the file is
//! the JSON Grafana imports.

mod common;

use common::{Ferry, dead_port, forward_config};

/// Every `ferry_...` / `process_...` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &expr[i..];
        if word_start && (rest.starts_with("ferry_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/ferry.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut names = std::collections::BTreeSet::new();
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let found = metric_names(expr);
            assert!(!found.is_empty(), "{expr}");
            names.extend(found);
        }
    }
    for want in [
        "ferry_upstream_backlog_events",
        "ferry_upstream_forwarded_total",
        "ferry_events_dropped_total",
        "ferry_connections_by_transport",
        "ferry_memory_used_bytes",
        "ferry_store_commit_seconds_bucket",
    ] {
        assert!(names.contains(want), "the dashboard shows {want}");
    }

    let dir = tempfile::tempdir().unwrap();
    let (port, _held) = dead_port();
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n{}",
        common::base_config(dir.path()),
        forward_config(port)
    );
    let f = Ferry::start(dir.path(), &config);
    let text = f.metrics();
    let families: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            let family = n
                .strip_suffix("_bucket")
                .or_else(|| n.strip_suffix("_sum"))
                .or_else(|| n.strip_suffix("_count"))
                .unwrap_or(n);
            !families.contains(n.as_str()) && !families.contains(family)
        })
        .collect();
    assert!(missing.is_empty(), "not in /metrics: {missing:?}\n{text}");
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(ferry_store_commit_seconds_bucket{instance=~\"$instance\"}[5m])))"
        ),
        ["ferry_store_commit_seconds_bucket"]
    );
    assert_eq!(
        metric_names("rate(ferry_a_total[1m]) / process_open_fds"),
        ["ferry_a_total", "process_open_fds"]
    );
}
