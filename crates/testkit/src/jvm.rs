//! What the JVM servers (Kafka, Cassandra) share: finding Java and Maven, fetching a
//! server's jars from Maven Central once into a cache reused across runs, ports and
//! directories.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to install when Java or Maven is missing.
pub(crate) const INSTALL_HINT: &str = "Java 17 and Maven are needed for Kafka and Cassandra: apt-get install -y openjdk-17-jre-headless maven";

/// The jars of `name` `version` (a directory for `java -cp 'dir/*'`), fetched with
/// Maven from `pom` into the cache the first time (a complete fetch leaves a `.complete`
/// stamp). The cache is `$SHORTENER_TESTKIT_CACHE`, else `~/.cache/shortener-testkit`.
/// The kit's download cache: `$SHORTENER_TESTKIT_CACHE`, else `~/.cache/shortener-testkit`.
pub(crate) fn cache() -> PathBuf {
    std::env::var_os("SHORTENER_TESTKIT_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/shortener-testkit"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("shortener-testkit"))
}

pub(crate) fn jars(name: &str, version: &str, pom: &str) -> Option<PathBuf> {
    let mvn = found("mvn", "-v")?;
    let cache = cache();
    let lib = cache.join(format!("{name}-{version}"));
    if lib.join(".complete").exists() {
        return Some(lib);
    }
    // Fetched beside, then renamed: a half-fetched directory is never taken for whole,
    // and two test binaries fetching at once each finish their own.
    let staging = tempdir(&format!("{name}-fetch"));
    std::fs::write(staging.join("pom.xml"), pom).expect("write the pom");
    let out = staging.join("lib");
    output(
        Command::new(mvn)
            .current_dir(&staging)
            .args([
                "-q",
                "-B",
                "-ntp",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
            ])
            .arg(format!("-DoutputDirectory={}", out.display())),
    );
    std::fs::write(out.join(".complete"), version).expect("stamp the fetch");
    std::fs::create_dir_all(&cache).expect("create the cache directory");
    let _ = std::fs::remove_dir_all(&lib); // an incomplete earlier fetch
    if std::fs::rename(&out, &lib).is_err() && !lib.join(".complete").exists() {
        panic!("cannot move the {name} jars into {}", lib.display());
    }
    let _ = std::fs::remove_dir_all(&staging);
    Some(lib)
}

/// The path of `program` if it runs (`arg` is a harmless flag such as `-version`).
pub(crate) fn found(program: &str, arg: &str) -> Option<PathBuf> {
    let ran = Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    ran.then(|| PathBuf::from(program))
}

/// Runs `command`; its stdout, or a panic with everything it printed.
pub(crate) fn output(command: &mut Command) -> String {
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh directory under the system's temporary directory, not deleted on drop (the
/// supervisor, or the fetch, removes it).
pub(crate) fn tempdir(what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("shortener-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// A JVM server started by [`Jvm::start`]: runs until the test process exits.
pub(crate) struct Jvm {
    /// The port its readiness probe answered on.
    pub(crate) port: u16,
    /// The shell supervising the JVM; it kills the JVM and deletes `work` when its stdin
    /// closes, which happens however this process exits (statics are never dropped).
    /// Lines on its stdin pause and resume the JVM.
    _supervisor: Child,
    commands: Mutex<ChildStdin>,
}

impl Jvm {
    /// Runs `java args…` in the directory `work` (stdout and stderr to
    /// `work/stdout.log`) under the supervising shell, and waits until `ready(port)` or
    /// `timeout`; on failure, panics with the end of `log` (the server's own log file).
    pub(crate) fn start(
        java: &Path,
        args: &[String],
        work: &Path,
        port: u16,
        ready: fn(u16) -> bool,
        timeout: Duration,
        log: &Path,
    ) -> Self {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let w = work.display();
        let script = format!(
            "'{java}' {args} >'{w}/stdout.log' 2>&1 & pid=$!; \
             while read cmd; do case $cmd in pause) kill -STOP $pid;; resume) kill -CONT $pid;; esac; done; \
             exec 2>/dev/null; kill -9 $pid; kill -CONT $pid; wait $pid; rm -rf '{w}'",
            java = java.display(),
            args = quoted.join(" "),
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the supervising shell");
        let stdin = child.stdin.take().expect("piped stdin");
        let deadline = Instant::now() + timeout;
        while !ready(port) {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let text = std::fs::read_to_string(log)
                    .or_else(|_| std::fs::read_to_string(work.join("stdout.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                panic!(
                    "{} did not start on port {port}; its log ends:\n{tail:#?}",
                    java.display()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Self {
            port,
            _supervisor: child,
            commands: Mutex::new(stdin),
        }
    }

    /// Freezes the JVM (SIGSTOP): its connections stay open and nothing answers, as
    /// with a server that hangs or a network that drops everything.
    pub(crate) fn pause(&self) {
        self.command("pause");
    }

    /// Lets a paused JVM run again (SIGCONT).
    pub(crate) fn resume(&self) {
        self.command("resume");
    }

    fn command(&self, line: &str) {
        use std::io::Write;
        let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(commands, "{line}").expect("the supervising shell is alive");
    }
}
