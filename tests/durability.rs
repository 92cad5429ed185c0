//! Process-level tests against the real `shortener` binary: durability across SIGKILL,
//! graceful SIGTERM, and refusing bad configuration at start.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// What `shortener serve` with `args` and `env` prints before it exits, asserting that
/// it does not start.
fn refused_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run");
    assert!(!output.status.success(), "it started: {env:?} {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn invalid_configuration_fails_at_start_with_the_key_named() {
    let stderr = refused_start(&[], &[("APP__HTTP__API_CONCURRENCY_LIMIT", "0")]);
    assert!(stderr.contains("http.api_concurrency_limit"), "{stderr}");

    let stderr = refused_start(&["--config", "/nonexistent/shortener.toml"], &[]);
    assert!(stderr.contains("shortener.toml"), "{stderr}");

    // A log filter that would log nothing ("verbose" is a target, not a level) stops the
    // start with the value and where it came from, instead of silently logging nothing.
    let stderr = refused_start(&[], &[("RUST_LOG", "verbose")]);
    assert!(stderr.contains("\"verbose\" (from RUST_LOG)"), "{stderr}");

    // A store that cannot be opened is named by its path.
    let stderr = refused_start(&[], &[("APP__STORE__PATH", "/proc/no-such-dir/links.redb")]);
    assert!(stderr.contains("/proc/no-such-dir/links.redb"), "{stderr}");
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop; `None` (after
/// saying so) where mounting needs privileges this process lacks (CI runs as root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(test: &str, size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            shortener_testkit::skip(test, "cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Self { dir })
    }

    /// Fills the disk with one file.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.dir.path().join("filler")).expect("filler");
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.path().join("filler")).expect("remove filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_not_ready_and_the_store_recovers_by_itself_once_freed() {
    let test = "a_full_disk_is_not_ready_and_the_store_recovers_by_itself_once_freed";
    let Some(disk) = SmallDisk::mount(test, "4m") else {
        return;
    };
    let mut server = start_with(disk.dir.path(), &[("APP__STATS__FLUSH_INTERVAL_MS", "50")]);
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let url = format!("https://example.com/before/{i}");
        let body = server.create(json!({"url": url})).await;
        acknowledged.push((body["code"].as_str().expect("code").to_owned(), url));
    }
    assert_eq!(server.status("/readyz").await, 200);

    disk.fill();
    // Creates fail once the little space left is used up; clicks keep the statistics
    // writer failing too (the tree's own commits, not only the create log).
    let mut statuses = Vec::new();
    for i in 0..2_000 {
        let response = server
            .client
            .post(server.url("/api/v1/links"))
            .json(&json!({"url": format!("https://example.com/full/{i}")}))
            .send()
            .await
            .expect("an answer");
        statuses.push(response.status().as_u16());
        if response.status() == 201 {
            let body: serde_json::Value = response.json().await.expect("json");
            let url = format!("https://example.com/full/{i}");
            acknowledged.push((body["code"].as_str().expect("code").to_owned(), url));
        } else if statuses.iter().rev().take(20).all(|s| *s == 503) {
            break;
        }
        server.status(&format!("/{}", acknowledged[0].0)).await;
    }
    assert_eq!(statuses.last(), Some(&503), "creates fail on a full disk");
    assert_eq!(
        server.status("/readyz").await,
        503,
        "a full disk is not ready"
    );

    disk.free();
    let mut ready = false;
    for _ in 0..100 {
        if server.status("/readyz").await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "ready again once the disk has room, without a restart"
    );
    let body = server
        .create(json!({"url": "https://example.com/after"}))
        .await;
    acknowledged.push((
        body["code"].as_str().expect("code").to_owned(),
        "https://example.com/after".into(),
    ));
    server.assert_links(&acknowledged).await;
    server.terminate();

    let mut restarted = start(disk.dir.path());
    restarted.assert_links(&acknowledged).await;
    restarted.kill();
}
