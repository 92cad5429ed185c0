//! A real `redis-server` for tests: started on a free loopback port with persistence off,
//! killed when dropped.
//!
//! If the binary is missing, [`RedisServer::start`] says so through [`crate::skip`] and
//! returns `None`, so `cargo test` still works on a machine without Redis.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::Builder;
use fred::types::config::Config;

const INSTALL_HINT: &str = "redis-server is not installed: apt-get install -y redis-server";

/// A running `redis-server` child process.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server, or `None` (after saying so) when the binary is missing locally.
    pub fn start(test: &str) -> Option<Self> {
        let mut server = Self::reserve(test)?;
        server.spawn();
        Some(server)
    }

    /// Starts a server, or says what to install (for `testkit up`).
    pub fn launch() -> Result<Self, &'static str> {
        let mut server = Self::pick_port()?;
        server.spawn();
        Ok(server)
    }

    /// Picks the port but does not start the server yet ([`RedisServer::restart`] does).
    pub fn reserve(test: &str) -> Option<Self> {
        Self::pick_port()
            .map_err(|hint| crate::skip(test, hint))
            .ok()
    }

    fn pick_port() -> Result<Self, &'static str> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Err(INSTALL_HINT);
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Ok(Self { port, child: None })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the server vanishes mid-conversation, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port; empty, since persistence is off.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A separate client for the test's own commands (INFO, CLIENT KILL, ...).
    pub async fn admin(&self) -> Client {
        let config = Config::from_url(&self.url()).expect("url");
        let client = Builder::from_config(config).build().expect("client");
        client.init().await.expect("connect to test redis");
        client
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pong(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How many times Redis has executed `command` (from `INFO commandstats`).
pub async fn command_calls(admin: &Client, command: &str) -> u64 {
    use fred::types::InfoKind;
    let info: String = admin
        .info(Some(InfoKind::CommandStats))
        .await
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}
