//! Process-level tests against the real `shortener` binary: durability across SIGKILL,
//! graceful SIGTERM, and refusing bad configuration at start.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// A running server process and what it logged.
struct Server {
    child: Child,
    addr: SocketAddr,
    logs: mpsc::Receiver<String>,
    client: reqwest::Client,
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
    Server {
        child,
        addr,
        logs,
        client: client(),
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /api/v1/links`, asserting 201; returns the link JSON.
    async fn create(&self, body: Value) -> Value {
        let response = self
            .client
            .post(self.url("/api/v1/links"))
            .json(&body)
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 201);
        response.json().await.expect("json")
    }

    /// The status of `GET path`.
    async fn status(&self, path: &str) -> u16 {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// `GET /api/v1/links/{code}` as JSON.
    async fn link(&self, code: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/api/v1/links/{code}")))
            .send()
            .await
            .expect("get");
        response.json().await.expect("json")
    }

    /// Sends SIGTERM (what orchestrators send) and asserts a clean, zero exit.
    fn terminate(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
        let status = self.child.wait().expect("exit");
        assert!(status.success(), "exit status {status}");
    }

    /// SIGKILL, then reap: no shutdown code runs.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
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

    // Eight writers create links as fast as the store acknowledges them; the process is
    // killed mid-stream, so some creates are in flight at the moment of death.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (client, create) = (client(), server.url("/api/v1/links"));
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let url = format!("https://example.com/{writer}/{i}");
                    let sent = client.post(&create).json(&json!({"url": url})).send().await;
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
    server.kill();

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
    for (code, url) in &acknowledged {
        let meta = restarted
            .client
            .get(restarted.url(&format!("/api/v1/links/{code}")))
            .send()
            .await
            .expect("get");
        assert_eq!(meta.status(), 200, "acknowledged link {code} lost");
        assert_eq!(
            meta.json::<Value>().await.expect("json")["url"],
            url.as_str()
        );
        let redirect = restarted
            .client
            .get(restarted.url(&format!("/{code}")))
            .send()
            .await
            .expect("redirect");
        assert_eq!(redirect.status(), 302);
        assert_eq!(redirect.headers()["location"], url.as_str());
    }
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
