//! Process-level tests against the real `shortener` binary: durability across SIGKILL,
//! graceful SIGTERM, and refusing bad configuration at start.

use std::path::Path;
use std::process::Command;

use serde_json::json;

#[path = "support/process.rs"]
mod process;
use process::Server;

/// Starts the binary on a free port over `data_dir` and waits for its bound address.
fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

/// Like [`start`], with extra `APP__*` variables.
fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
    let path = data_dir.join("links.redb");
    let path = path.to_str().expect("utf-8 temp path");
    let mut all = vec![("APP__STORE__PATH", path)];
    all.extend_from_slice(env);
    Server::start(&all)
}

#[tokio::test]
async fn every_acknowledged_link_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path());
    let acknowledged = server.create_until_killed(1500).await;
    let mut restarted = start(dir.path());
    restarted.assert_links(&acknowledged).await;
    restarted.kill();
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path());
    server
        .create(json!({"url": "https://example.com/", "alias": "survivor"}))
        .await;

    server.terminate();
    let logs: Vec<String> = server.logs.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("SIGTERM received")),
        "{logs:#?}"
    );
    assert!(logs.iter().any(|l| l.contains("store closed")), "{logs:#?}");

    let mut restarted = start(dir.path());
    assert_eq!(restarted.status("/survivor").await, 302);
    restarted.kill();
}

#[tokio::test]
async fn clicks_queued_at_sigterm_are_in_the_stats_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing flushes on its own for ten minutes: only the shutdown drain can save them.
    let slow_flush = [
        ("APP__CLICKS__FLUSH_INTERVAL_MS", "600000"),
        ("APP__CLICKS__BATCH_MAX", "100000"),
    ];
    let mut server = start_with(dir.path(), &slow_flush);
    server
        .create(json!({"url": "https://example.com/", "alias": "counted"}))
        .await;
    for _ in 0..25 {
        assert_eq!(server.status("/counted").await, 302);
    }
    assert_eq!(
        server.link("counted").await["clicks"],
        0,
        "still queued, not yet aggregated"
    );

    server.terminate();

    let mut restarted = start(dir.path());
    assert_eq!(
        restarted.link("counted").await["clicks"],
        25,
        "every click redirected before SIGTERM was flushed"
    );
    restarted.kill();
}

#[tokio::test]
async fn max_clicks_budget_carries_over_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path());
    server
        .create(json!({"url": "https://example.com/", "alias": "limited", "max_clicks": 5}))
        .await;
    for _ in 0..3 {
        assert_eq!(server.status("/limited").await, 302);
    }
    server.terminate();

    let mut restarted = start(dir.path());
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(restarted.status("/limited").await);
    }
    assert_eq!(
        statuses,
        [302, 302, 410],
        "3 used before the restart, 2 left after it"
    );
    restarted.kill();
}

#[test]
fn invalid_configuration_fails_at_start_with_the_key_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .arg("serve")
        .env("APP__HTTP__CONCURRENCY_LIMIT", "0")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("http.concurrency_limit"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .args(["serve", "--config", "/nonexistent/shortener.toml"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("shortener.toml"));
}
