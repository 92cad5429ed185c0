//! The real `shortener` binary as a child process, for the process-level tests (SIGKILL,
//! SIGTERM, several instances on one database): start it, talk HTTP to it, signal it.
//! Shared by several test binaries (included with `#[path]`), so not every binary uses
//! every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// A running server process and what it logged.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub logs: mpsc::Receiver<String>,
    /// What it logged before both listeners were bound.
    pub startup_logs: Vec<String>,
    pub client: reqwest::Client,
}

impl Server {
    /// Starts `shortener serve` on free ports with the `APP__*` variables in `env`, and
    /// waits until both listeners are bound.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_command(Command::new(env!("CARGO_BIN_EXE_shortener")), env)
    }

    /// Like [`Server::start`], with the process allowed `open_files` descriptors (soft
    /// and hard limit, set by util-linux's `prlimit`, which then execs the server).
    pub fn start_with_open_files(open_files: u32, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={open_files}:{open_files}"))
            .arg(env!("CARGO_BIN_EXE_shortener"));
        Self::start_command(command, env)
    }

    fn start_command(mut command: Command, env: &[(&str, &str)]) -> Self {
        let mut child = command
            .arg("serve")
            .env("APP__HTTP__LISTEN", "127.0.0.1:0")
            .env("APP__ADMIN__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            // Keys and limits have tests of their own (tests/api/access.rs); these
            // tests are about processes, so: open mode on loopback, no rate limits.
            .env("APP__AUTH__MODE", "open")
            .env("APP__LIMITS__ENABLED", "false")
            .envs(env.iter().copied())
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
        let mut startup_logs = Vec::new();
        let mut bound = |what: &str| loop {
            let line = logs
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("server logged its {what} address"));
            startup_logs.push(line.clone());
            if line.contains(what) {
                let addr = line.split("addr=").nth(1).expect("addr field");
                let addr = addr.split_whitespace().next().expect("addr value");
                break addr.parse::<SocketAddr>().expect("socket address");
            }
        };
        let addr = bound("public listener bound");
        let admin = bound("admin listener bound");
        Self {
            child,
            addr,
            admin,
            logs,
            startup_logs,
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `POST /api/v1/links`, asserting 201; returns the link JSON.
    pub async fn create(&self, body: Value) -> Value {
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
    pub async fn status(&self, path: &str) -> u16 {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// `GET /api/v1/links/{code}` as JSON.
    pub async fn link(&self, code: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/api/v1/links/{code}")))
            .send()
            .await
            .expect("get");
        response.json().await.expect("json")
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Sends SIGTERM (what orchestrators send) and asserts a clean, zero exit.
    pub fn terminate(&mut self) {
        self.signal_terminate();
        self.wait_success();
    }

    /// Sends SIGTERM and returns at once.
    pub fn signal_terminate(&self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
    }

    /// Waits for the process to exit and asserts it exited with 0.
    pub fn wait_success(&mut self) {
        let status = self.child.wait().expect("exit");
        assert!(status.success(), "exit status {status}");
    }

    /// Waits (at most 20 s) for a log line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        loop {
            let line = self
                .logs
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("the server logged {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Every log line so far (and since the last call).
    pub fn drain_logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }

    /// SIGKILL, then reap: no shutdown code runs.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Eight writers create links as fast as the server acknowledges them, for `for_ms`;
    /// then the process is killed mid-stream, so some creates are in flight at the moment
    /// of death. Returns the acknowledged ones: (code, url).
    pub async fn create_until_killed(&mut self, for_ms: u64) -> Vec<(String, String)> {
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let (client, create) = (client(), self.url("/api/v1/links"));
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
                        let code = body["code"].as_str().expect("code").to_owned();
                        acknowledged.push((code, url));
                    }
                    acknowledged
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(for_ms)).await;
        self.kill();
        let mut acknowledged = Vec::new();
        for writer in writers {
            acknowledged.extend(writer.await.expect("writer"));
        }
        assert!(
            acknowledged.len() >= 10,
            "only {} creates before the kill",
            acknowledged.len()
        );
        acknowledged
    }

    /// Asserts that every (code, url) is stored and redirects to its url.
    pub async fn assert_links(&self, links: &[(String, String)]) {
        for (code, url) in links {
            let meta = self
                .client
                .get(self.url(&format!("/api/v1/links/{code}")))
                .send()
                .await
                .expect("get");
            assert_eq!(meta.status(), 200, "acknowledged link {code} lost");
            let meta: Value = meta.json().await.expect("json");
            assert_eq!(meta["url"], url.as_str());
            let redirect = self
                .client
                .get(self.url(&format!("/{code}")))
                .send()
                .await
                .expect("redirect");
            assert_eq!(redirect.status(), 302);
            assert_eq!(redirect.headers()["location"], url.as_str());
        }
    }
}

/// A test that fails midway must not leave its server running (or, over a tmpfs, the
/// mount busy): the process is killed when its handle goes.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `shortener migrate` on the PostgreSQL database at `url`, asserting success.
pub fn migrate_postgres(url: &str) {
    migrate(&[
        ("APP__STORE__BACKEND", "postgres"),
        ("APP__STORE__POSTGRES__URL", url),
    ]);
}

/// `shortener migrate` with the store named by `env`.
pub fn migrate(env: &[(&str, &str)]) {
    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .arg("migrate")
        .envs(env.iter().copied())
        .output()
        .expect("run shortener migrate");
    assert!(output.status.success(), "{output:?}");
}

/// A client that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}
