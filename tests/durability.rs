//! Process-level tests against the real `shortener` binary: durability across SIGKILL,
//! graceful SIGTERM, and refusing bad configuration at start.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// A running server process and what it logged.
struct Server {
    child: Child,
    addr: SocketAddr,
    logs: mpsc::Receiver<String>,
}

/// Starts the binary on a free port over `data_dir` and waits for its bound address.
fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

/// Like [`start`], with extra `APP__*` variables.
fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .arg("serve")
        .envs(env.iter().copied())
        .env("APP__HTTP__LISTEN", "127.0.0.1:0")
        .env("APP__ADMIN__LISTEN", "127.0.0.1:0")
        .env("APP__STORE__PATH", data_dir.join("links.redb"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server binary");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, logs) = mpsc::channel();
    // Drain stderr for the life of the process so the pipe never fills and blocks it.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = logs
            .recv_timeout(Duration::from_secs(20))
            .expect("server logged its address");
        if line.contains("public listener bound") {
            let addr = line.split("addr=").nth(1).expect("addr field").trim();
            break addr.parse().expect("socket address");
        }
    };
    Server { child, addr, logs }
}

impl Server {
    /// Sends SIGTERM (what orchestrators send) and asserts a clean, zero exit.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let status = self.child.wait().expect("exit");
        assert!(status.success(), "exit status {status}");
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test]
async fn every_acknowledged_link_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path());
    let base = format!("http://{}", server.addr);

    // Eight writers create links as fast as the store acknowledges them; the process is
    // killed mid-stream, so some creates are in flight at the moment of death.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (client, base) = (client(), base.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let url = format!("https://example.com/{writer}/{i}");
                    let sent = client
                        .post(format!("{base}/api/v1/links"))
                        .json(&json!({"url": url}))
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(body) = response.json::<Value>().await else {
                        break;
                    };
                    acknowledged.push((body["code"].as_str().expect("code").to_owned(), url));
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");

    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    assert!(
        acknowledged.len() >= 10,
        "only {} creates before the kill",
        acknowledged.len()
    );

    let mut restarted = start(dir.path());
    let base = format!("http://{}", restarted.addr);
    let client = client();
    for (code, url) in &acknowledged {
        let meta = client
            .get(format!("{base}/api/v1/links/{code}"))
            .send()
            .await
            .expect("get");
        assert_eq!(meta.status(), 200, "acknowledged link {code} lost");
        assert_eq!(
            meta.json::<Value>().await.expect("json")["url"],
            url.as_str()
        );
        let redirect = client
            .get(format!("{base}/{code}"))
            .send()
            .await
            .expect("redirect");
        assert_eq!(redirect.status(), 302);
        assert_eq!(redirect.headers()["location"], url.as_str());
    }
    restarted.child.kill().expect("kill");
    let _ = restarted.child.wait();
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path());
    let base = format!("http://{}", server.addr);
    let created = client()
        .post(format!("{base}/api/v1/links"))
        .json(&json!({"url": "https://example.com/", "alias": "survivor"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);

    server.terminate();
    let logs: Vec<String> = server.logs.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("SIGTERM received")),
        "{logs:#?}"
    );
    assert!(logs.iter().any(|l| l.contains("store closed")), "{logs:#?}");

    let mut restarted = start(dir.path());
    let response = client()
        .get(format!("http://{}/survivor", restarted.addr))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 302);
    restarted.child.kill().expect("kill");
    let _ = restarted.child.wait();
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
    let base = format!("http://{}", server.addr);
    let client = client();
    let created = client
        .post(format!("{base}/api/v1/links"))
        .json(&json!({"url": "https://example.com/", "alias": "counted"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    for _ in 0..25 {
        assert_eq!(
            client
                .get(format!("{base}/counted"))
                .send()
                .await
                .expect("redirect")
                .status(),
            302
        );
    }
    let before: Value = client
        .get(format!("{base}/api/v1/links/counted"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(before["clicks"], 0, "still queued, not yet aggregated");

    server.terminate();

    let mut restarted = start(dir.path());
    let after: Value = client
        .get(format!("http://{}/api/v1/links/counted", restarted.addr))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        after["clicks"], 25,
        "every click redirected before SIGTERM was flushed"
    );
    restarted.child.kill().expect("kill");
    let _ = restarted.child.wait();
}

#[tokio::test]
async fn max_clicks_budget_carries_over_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path());
    let client = client();
    let base = format!("http://{}", server.addr);
    let created = client
        .post(format!("{base}/api/v1/links"))
        .json(&json!({"url": "https://example.com/", "alias": "limited", "max_clicks": 5}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    for _ in 0..3 {
        assert_eq!(
            client
                .get(format!("{base}/limited"))
                .send()
                .await
                .expect("get")
                .status(),
            302
        );
    }
    server.terminate();

    let mut restarted = start(dir.path());
    let base = format!("http://{}", restarted.addr);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(format!("{base}/limited"))
            .send()
            .await
            .expect("get");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [302, 302, 410],
        "3 used before the restart, 2 left after it"
    );
    restarted.child.kill().expect("kill");
    let _ = restarted.child.wait();
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
