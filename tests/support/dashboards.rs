//! The Grafana dashboards' panel queries, for the tests that parse them
//! (`tests/monitoring.rs`) and run them against a live Prometheus (`tests/stack.rs`).

/// Where the dashboards' JSON is.
pub const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/grafana/dashboards");

/// Every panel query of every dashboard as (where it is, PromQL), with Grafana's
/// interval variable replaced by what Prometheus parses.
pub fn panel_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(DASHBOARDS).expect("dashboards") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("expr");
                let title = format!("{}: {}", path.display(), panel["title"]);
                queries.push((title, expr.replace("$__rate_interval", "5m")));
            }
        }
    }
    queries
}
