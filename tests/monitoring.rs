//! The monitoring configuration as code: Prometheus's config and the SLO rules pass
//! `promtool check`, the alerts fire in `promtool test rules` on the failures they are
//! for (and stay quiet on health), every Grafana panel's query parses, and every metric a
//! rule or a panel reads is one the code exports.
//!
//! Needs `promtool` (Debian: `prometheus`); skipped loudly without it (fatal under CI).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus");

#[path = "support/dashboards.rs"]
mod dashboards;
use dashboards::panel_queries;

fn promtool(test: &str, args: &[&str]) -> Option<String> {
    promtool_in(test, DIR, args)
}

fn promtool_in(test: &str, dir: &str, args: &[&str]) -> Option<String> {
    let output = match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(output) => output,
        Err(_) => {
            shortener_testkit::skip(test, "promtool is needed: apt-get install -y prometheus");
            return None;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    Some(text)
}

#[test]
fn the_config_and_the_rules_are_valid_and_the_alerts_fire_in_their_unit_tests() {
    let test = "the_config_and_the_rules_are_valid_and_the_alerts_fire_in_their_unit_tests";
    let Some(config) = promtool(test, &["check", "config", "prometheus.yml"]) else {
        return;
    };
    assert!(config.contains("SUCCESS"), "{config}");
    promtool(test, &["check", "rules", "slo-rules.yml"]);
    let tests = promtool(test, &["test", "rules", "slo-rules.test.yml"]).unwrap_or_default();
    assert!(tests.contains("SUCCESS"), "{tests}");
}

/// Metric names exported by the code: the string constants of the two metrics modules.
fn exported() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = BTreeSet::new();
    for file in ["src/metrics.rs", "analytics/src/metrics.rs"] {
        let text = std::fs::read_to_string(root.join(file)).expect("metrics module");
        for literal in text.split('"').skip(1).step_by(2) {
            if (literal.starts_with("shortener_") || literal.starts_with("analytics_"))
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                names.insert(literal.to_owned());
            }
        }
    }
    names
}

/// Metric names a PromQL text reads (`up` and recorded `slo:` series aside).
fn read_by(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_lowercase()) {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let word = &tail[..end];
        let preceded = rest[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !preceded && (word.starts_with("shortener_") || word.starts_with("analytics_")) {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word);
            names.insert(base.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_rules_read_is_exported_by_the_code() {
    let exported = exported();
    assert!(
        exported.contains("shortener_http_requests_total"),
        "{exported:?}"
    );
    assert!(exported.contains("analytics_lag_messages"), "{exported:?}");
    let rules = std::fs::read_to_string(Path::new(DIR).join("slo-rules.yml")).expect("rules");
    let read = read_by(&rules);
    assert!(read.len() >= 8, "{read:?}");
    let unknown: Vec<_> = read.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "rules read metrics no code exports: {unknown:?}"
    );
}

#[test]
fn the_metric_name_reader_finds_names_and_strips_histogram_suffixes() {
    let read = read_by(
        r#"sum(rate(shortener_http_request_duration_seconds_bucket{le="0.002"}[5m])) / up{job="x"} + slo:x:ratio"#,
    );
    assert_eq!(
        read.into_iter().collect::<Vec<_>>(),
        ["shortener_http_request_duration_seconds"]
    );
}

#[test]
fn every_dashboard_query_parses_and_reads_only_exported_metrics() {
    let test = "every_dashboard_query_parses_and_reads_only_exported_metrics";
    let queries = panel_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let exported = exported();
    for (title, expr) in &queries {
        let unknown: Vec<_> = read_by(expr)
            .into_iter()
            .filter(|m| !exported.contains(m))
            .collect();
        assert!(
            unknown.is_empty(),
            "{title} reads metrics no code exports: {unknown:?}"
        );
    }
    // promtool parses PromQL in rule files: each query becomes a recording rule.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rules = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(expr).expect("a JSON string is a YAML string");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    std::fs::write(dir.path().join("queries.yml"), rules).expect("write");
    let dir = dir.path().display().to_string();
    if let Some(out) = promtool_in(test, &dir, &["check", "rules", "queries.yml"]) {
        assert!(
            out.contains(&format!("SUCCESS: {} rules found", queries.len())),
            "{out}"
        );
    }
}
