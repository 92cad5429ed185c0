//! A real, throwaway PostgreSQL for tests (the backend's and the service's): one cluster
//! per test binary, in a temporary directory, on a free loopback port, and a fresh
//! database per test.
//!
//! Needs the Debian `postgresql` package's binaries (`/usr/lib/postgresql/<v>/bin`).
//! PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` OS
//! user the package creates (`runuser`). If the binaries are missing, [`cluster`] says
//! so through [`crate::skip`] and returns `None`.
//!
//! A test binary's statics are never dropped, so the server cannot be stopped by a
//! destructor. Instead it runs under a small shell that holds a pipe from this process
//! and stops the server (and deletes its directory) when the pipe closes, which happens
//! however the test binary exits. The same pipe takes `stop` (an immediate shutdown, as
//! `pg_ctl stop -m immediate`: a crash as far as clients can tell) and `start` lines, for
//! outage tests; a binary that uses them should hold only such tests.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "PostgreSQL is not installed: apt-get install -y postgresql";

/// A running cluster; see the module docs.
pub struct PgCluster {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// The shell supervising the server; the server stops when its stdin closes (when
    /// this process exits).
    _supervisor: Child,
    commands: Mutex<ChildStdin>,
}

/// The test binary's cluster, started on first use; `None` (after saying so) when the
/// binaries are missing outside CI.
pub fn cluster(test: &str) -> Option<&'static PgCluster> {
    static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
    crate::shared(&CLUSTER, || PgCluster::launch().ok(), test, INSTALL_HINT)
}

impl PgCluster {
    /// Starts a cluster of its own (for `testkit up`: tests share [`cluster`]'s), or says
    /// what to install.
    pub fn launch() -> Result<Self, &'static str> {
        let bin = find_binaries().ok_or(INSTALL_HINT)?;
        let data = unique_dir();
        std::fs::create_dir_all(&data).expect("create the cluster directory");
        let as_root = is_root();
        if as_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pgdata = data.join("pgdata");
        // trust on loopback only: a throwaway cluster for tests.
        run(postgres_user(as_root, &bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&pgdata));
        // SIGQUIT is PostgreSQL's immediate shutdown; SIGINT its fast, clean one.
        let script = format!(
            "up() {{ '{postgres}' -D '{pgdata}' -p {port} -k '{data}' \
             -c listen_addresses=127.0.0.1 -c max_connections=200 >>'{data}/log' 2>&1 & pid=$!; }}; \
             up; while read cmd; do case $cmd in stop) kill -QUIT $pid; wait $pid;; start) up;; esac; done; \
             kill -INT $pid; wait $pid; rm -rf '{data}'",
            postgres = bin.join("postgres").display(),
            pgdata = pgdata.display(),
            data = data.display(),
        );
        let mut child = postgres_user(as_root, Path::new("sh"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start postgres");
        let stdin = child.stdin.take().expect("piped stdin");
        let cluster = Self {
            port,
            bin,
            data,
            _supervisor: child,
            commands: Mutex::new(stdin),
        };
        cluster.wait_ready();
        Ok(cluster)
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database for one test and returns its URL.
    pub async fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name).await
    }

    /// Creates the empty database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect to the test cluster");
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = connection.await;
        self.url(name)
    }

    /// Stops the server at once (no checkpoint, connections cut), and returns once it no
    /// longer answers.
    pub fn stop_immediately(&self) {
        self.command("stop");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.is_ready() {
            assert!(Instant::now() < deadline, "postgres did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again (crash recovery replays its WAL) and waits until it answers.
    pub fn start_again(&self) {
        self.command("start");
        self.wait_ready();
    }

    fn command(&self, line: &str) {
        let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(commands, "{line}").expect("the cluster's supervisor is alive");
    }

    fn is_ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.is_ready() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start; see {}/log",
                self.data.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn find_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn unique_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("shortener-pg-{}-{nanos}", std::process::id()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// `program`, run as the `postgres` user when we are root.
fn postgres_user(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a postgres tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
