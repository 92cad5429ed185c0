//! A real Apache Kafka 4.4.0 for tests: one KRaft node (broker and controller in one JVM)
//! per test binary, on free loopback ports, from the jars on Maven Central run with the
//! installed Java 17. Tests share it and use a topic each.
//!
//! The jars are fetched once with Maven (`maven/kafka/pom.xml`, `dependency:copy-dependencies`)
//! into a cache directory reused across runs (`$SHORTENER_TESTKIT_CACHE`, else
//! `~/.cache/shortener-testkit`). Starting: a cluster id from Kafka's `StorageTool`, the
//! log directory formatted for a one-voter quorum (`--standalone`), then `kafka.Kafka`,
//! waited for until it answers an `ApiVersions` request (about 6 s on the development
//! machine, ~250 MiB of memory).
//!
//! As with PostgreSQL, the server runs under a small shell holding a pipe from this
//! process: when the pipe closes (however the test binary exits) the shell kills the JVM
//! and deletes its directory. Without `java` or `mvn`, [`kafka`] says so through
//! [`crate::skip`] and returns `None`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::jvm::{Jvm, found, free_port, jars, output, tempdir};

use crate::jvm::INSTALL_HINT;

/// The Kafka release the tests run, and its POM (the jars to fetch).
const VERSION: &str = "4.4.0";
const POM: &str = include_str!("../maven/kafka/pom.xml");

/// Longest wait for the broker to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running broker; see the module docs.
pub struct Kafka(Jvm);

/// The test binary's broker, started on first use; `None` (after saying so) when Java or
/// Maven is missing outside CI.
pub fn kafka(test: &str) -> Option<&'static Kafka> {
    static KAFKA: OnceLock<Option<Kafka>> = OnceLock::new();
    crate::shared(&KAFKA, Kafka::start, test, INSTALL_HINT)
}

impl Kafka {
    /// `bootstrap.servers` for a client.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.0.port)
    }

    /// Freezes the broker (SIGSTOP): an outage as clients see it, connections open and
    /// nothing answering. Every test of the binary shares the broker, so a binary that
    /// uses this should hold only such a test.
    pub fn pause(&self) {
        self.0.pause();
    }

    /// Lets a paused broker run again.
    pub fn resume(&self) {
        self.0.resume();
    }

    /// Starts a broker of its own (for `testkit up`: tests share [`kafka`]'s), or says
    /// what to install.
    pub fn launch() -> Result<Self, &'static str> {
        Self::start().ok_or(INSTALL_HINT)
    }

    fn start() -> Option<Self> {
        let java = found("java", "-version")?;
        let lib = jars("kafka", VERSION, POM)?;
        let work = tempdir("kafka");
        let (port, controller) = (free_port(), free_port());
        let config = work.join("server.properties");
        std::fs::write(work.join("log4j2.xml"), LOG4J).expect("write log4j2.xml");
        let classpath = format!("{}/*", lib.display());
        let tool = |args: &[&str]| {
            let mut command = Command::new(&java);
            command
                .arg("-Xmx256m")
                .args(jvm_logging(&work, "storage-tool"))
                .args(["-cp", &classpath, "kafka.tools.StorageTool"])
                .args(args);
            command
        };
        let id = output(&mut tool(&["random-uuid"]));
        let id = id.lines().last().unwrap_or_default().trim().to_owned();
        assert!(!id.is_empty(), "Kafka's StorageTool printed no cluster id");
        std::fs::write(&config, properties(&work, port, controller)).expect("write config");
        let config_path = config.display().to_string();
        output(&mut tool(&[
            "format",
            "--standalone",
            "-t",
            &id,
            "-c",
            &config_path,
        ]));
        let mut args: Vec<String> = [
            "-Xms512m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
        ]
        .map(String::from)
        .to_vec();
        args.extend(jvm_logging(&work, "server"));
        args.extend(["-cp".into(), classpath, "kafka.Kafka".into(), config_path]);
        let ready = answers_api_versions;
        let log = work.join("server.log");
        Some(Self(Jvm::start(
            &java,
            &args,
            &work,
            port,
            ready,
            START_TIMEOUT,
            &log,
        )))
    }
}

/// The broker's config: broker and controller in one process, sized for a small machine.
fn properties(work: &Path, port: u16, controller: u16) -> String {
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
",
        data = work.join("data").display(),
    )
}

/// Logging to a file in the work directory, through log4j2.
fn jvm_logging(work: &Path, name: &str) -> Vec<String> {
    vec![
        "-Djava.awt.headless=true".into(),
        format!("-Dlog4j2.configurationFile={}/log4j2.xml", work.display()),
        format!("-Dkafka.logs.dir={}", work.display()),
        format!("-Dkafka.log.name={name}"),
    ]
}

const LOG4J: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="${sys:kafka.logs.dir}/${sys:kafka.log.name}.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
"#;

/// Whether the broker answers an `ApiVersions` request (v0) with a valid response: the
/// readiness check, at the protocol level rather than a bare TCP connect.
fn answers_api_versions(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let client = b"testkit";
        let mut body = Vec::new();
        body.extend_from_slice(&18i16.to_be_bytes()); // api key: ApiVersions
        body.extend_from_slice(&0i16.to_be_bytes()); // version 0
        body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
        body.extend_from_slice(&(client.len() as i16).to_be_bytes());
        body.extend_from_slice(client);
        stream.write_all(&(body.len() as i32).to_be_bytes())?;
        stream.write_all(&body)?;
        let mut head = [0u8; 10];
        stream.read_exact(&mut head)?;
        let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let error = i16::from_be_bytes([head[8], head[9]]);
        Ok(correlation == 7 && error == 0)
    };
    probe().unwrap_or(false)
}
