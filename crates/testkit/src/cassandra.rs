//! A real Apache Cassandra 5.0 node for tests, the CQL engine the ScyllaDB backend is
//! tested against (ScyllaDB itself does not run on these machines): one node per test
//! binary, on free loopback ports, from the jars on Maven Central run with Java 17. Tests
//! share it and use a keyspace each.
//!
//! Jars as for Kafka (`maven/cassandra/pom.xml`, cached). Starting: a minimal one-node
//! `cassandra.yaml`, `CassandraDaemon` with the JVM flags Cassandra's own launcher gives
//! Java 17 (module exports and opens, G1) and the `jamm` agent, waited for until the CQL
//! port answers `OPTIONS` with `SUPPORTED` (about 46 s on the development machine,
//! ~1.5 GiB of memory). Supervised like Kafka: killed, and its directory removed, when
//! the test process exits.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::jvm::{INSTALL_HINT, Jvm, found, free_port, jars, tempdir};

const POM: &str = include_str!("../maven/cassandra/pom.xml");

/// Longest wait for the node to answer CQL after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(240);

/// A running node; see the module docs.
pub struct Cassandra(Jvm);

/// The test binary's node, started on first use; `None` (after saying so) when Java or
/// Maven is missing outside CI.
pub fn cassandra(test: &str) -> Option<&'static Cassandra> {
    static NODE: OnceLock<Option<Cassandra>> = OnceLock::new();
    crate::shared(&NODE, Cassandra::start, test, INSTALL_HINT)
}

impl Cassandra {
    /// The node's CQL address (`host:port`).
    pub fn node(&self) -> String {
        format!("127.0.0.1:{}", self.0.port)
    }

    /// Starts a node of its own (for `testkit up`: tests share [`cassandra`]'s), or says
    /// what to install.
    pub fn launch() -> Result<Self, &'static str> {
        Self::start().ok_or(INSTALL_HINT)
    }

    fn start() -> Option<Self> {
        let java = found("java", "-version")?;
        let lib = jars("cassandra", "5.0", POM)?;
        let work = tempdir("cassandra");
        for dir in [
            "data",
            "commitlog",
            "saved_caches",
            "hints",
            "cdc_raw",
            "triggers",
            "logs",
        ] {
            std::fs::create_dir_all(work.join(dir)).expect("create a node directory");
        }
        let (port, storage, jmx) = (free_port(), free_port(), free_port());
        std::fs::write(work.join("cassandra.yaml"), yaml(&work, port, storage))
            .expect("write cassandra.yaml");
        std::fs::write(work.join("logback.xml"), LOGBACK).expect("write logback.xml");
        let jamm = std::fs::read_dir(&lib)
            .expect("the jars")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("jamm-") && name.ends_with(".jar"))
            })
            .expect("jamm among Cassandra's jars");
        let w = work.display();
        let mut options: Vec<String> = JVM_OPTIONS.split_whitespace().map(str::to_owned).collect();
        options.extend([
            format!("-javaagent:{}", jamm.display()),
            "-Xms1g".into(),
            "-Xmx1g".into(),
            "-Djava.security.manager=allow".into(),
            format!("-Dcassandra.config=file://{w}/cassandra.yaml"),
            format!("-Dcassandra.storagedir={w}"),
            format!("-Dcassandra.logdir={w}/logs"),
            format!("-Dlogback.configurationFile=file://{w}/logback.xml"),
            format!("-Dcassandra.triggers_dir={w}/triggers"),
            "-Dcassandra-foreground=yes".into(),
            format!("-Dcassandra.jmx.local.port={jmx}"),
            "-Djava.rmi.server.hostname=127.0.0.1".into(),
            "-Dcassandra.skip_wait_for_gossip_to_settle=0".into(),
            format!("-Djna.tmpdir={w}"),
        ]);
        options.extend([
            "-cp".into(),
            format!("{}/*", lib.display()),
            "org.apache.cassandra.service.CassandraDaemon".into(),
        ]);
        let log = work.join("logs/system.log");
        Some(Self(Jvm::start(
            &java,
            &options,
            &work,
            port,
            answers_cql,
            START_TIMEOUT,
            &log,
        )))
    }
}

/// A one-node `cassandra.yaml` on loopback (only keys Cassandra 5.0 knows: it refuses
/// unknown ones at start).
fn yaml(work: &Path, port: u16, storage: u16) -> String {
    format!(
        "cluster_name: 'testkit'
num_tokens: 16
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage}
native_transport_port: {port}
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: \"127.0.0.1\"
data_file_directories:
  - {w}/data
commitlog_directory: {w}/commitlog
saved_caches_directory: {w}/saved_caches
hints_directory: {w}/hints
cdc_raw_directory: {w}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
auto_snapshot: false
concurrent_compactors: 1
",
        w = work.display(),
    )
}

const LOGBACK: &str = r#"<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"#;

/// The flags Cassandra 5.0's launcher gives a server on Java 17 (`conf/jvm-server.options`
/// and `conf/jvm17-server.options`): G1, and the module exports and opens its code needs.
/// Left out: `-XX:+AlwaysPreTouch`, which would make the whole heap resident at once.
const JVM_OPTIONS: &str = "
-ea -da:net.openhft... -XX:+UseThreadPriorities -XX:+HeapDumpOnOutOfMemoryError
-XX:+CrashOnOutOfMemoryError -Xss256k -XX:+UseTLAB -XX:+ResizeTLAB -XX:+UseNUMA
-XX:+PerfDisableSharedMem -Djava.net.preferIPv4Stack=true -XX:+UseG1GC
-XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1RSetUpdatingPauseTimePercent=5
-XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70 -Djdk.attach.allowAttachSelf=true
--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports=java.management/com.sun.jmx.remote.security=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports=java.sql/java.sql=ALL-UNNAMED
--add-exports=java.base/java.lang.ref=ALL-UNNAMED
--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED
--add-opens=java.base/java.lang.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens=java.base/jdk.internal.math=ALL-UNNAMED
--add-opens=java.base/jdk.internal.module=ALL-UNNAMED
--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED
--add-opens=java.base/java.io=ALL-UNNAMED
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED
--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
--add-opens=java.base/java.lang=ALL-UNNAMED
--add-opens=java.base/java.util=ALL-UNNAMED
--add-opens=java.base/java.nio=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true -Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
";

/// Whether the node answers a CQL v4 `OPTIONS` frame with `SUPPORTED`: ready for clients.
fn answers_cql(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        // version 4, no flags, stream 1, opcode OPTIONS (5), empty body
        stream.write_all(&[0x04, 0, 0, 1, 0x05, 0, 0, 0, 0])?;
        let mut head = [0u8; 9];
        stream.read_exact(&mut head)?;
        Ok(head[4] == 0x06) // SUPPORTED
    };
    probe().unwrap_or(false)
}
