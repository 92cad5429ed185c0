//! The consumer against a real broker and a real PostgreSQL (both from the test kit):
//! exactly once through `kill -9`, through a partition moving between consumers, and
//! past messages that are not click events.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shortener_config::{Settings, StoreBackend};
use shortener_core::ShortCode;
use shortener_core::click::{CLICK_EVENT_VERSION, ClickEvent};
use shortener_core::sink::EventSink;
use shortener_kafka::producer::{KafkaSink, ProducerMeters};

/// Settings for one test: its own topic, group and database.
async fn settings(test: &str, name: &str, partitions: u32) -> Option<Settings> {
    let kafka = shortener_testkit::kafka::kafka(test)?;
    let cluster = shortener_testkit::postgres::cluster(test)?;
    let mut settings = Settings::from_defaults().expect("defaults");
    settings.store.backend = StoreBackend::Postgres;
    settings.store.postgres.url = cluster.fresh_database().await.into();
    shortener_storage::migrate(&settings.store)
        .await
        .expect("migrate");
    settings.kafka.brokers = kafka.bootstrap();
    settings.kafka.topic = format!("{name}-clicks");
    settings.kafka.dead_letter_topic = format!("{name}-dead");
    settings.kafka.partitions = partitions.try_into().expect("> 0");
    settings.kafka.linger_ms = 20;
    settings.analytics.group = format!("{name}-group");
    shortener_kafka::topics::create(&settings.kafka)
        .await
        .expect("create topics");
    Some(settings)
}

/// The environment that gives `analytics run` these settings.
fn env(settings: &Settings) -> Vec<(String, String)> {
    [
        ("APP__STORE__BACKEND", "postgres".to_owned()),
        (
            "APP__STORE__POSTGRES__URL",
            settings.store.postgres.url.expose().to_owned(),
        ),
        ("APP__KAFKA__BROKERS", settings.kafka.brokers.clone()),
        ("APP__KAFKA__TOPIC", settings.kafka.topic.clone()),
        (
            "APP__KAFKA__DEAD_LETTER_TOPIC",
            settings.kafka.dead_letter_topic.clone(),
        ),
        ("APP__ANALYTICS__GROUP", settings.analytics.group.clone()),
        ("APP__ANALYTICS__LISTEN", "127.0.0.1:0".to_owned()),
        ("APP__ANALYTICS__SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("APP__ANALYTICS__FLUSH_INTERVAL_MS", "25".to_owned()),
        ("APP__TELEMETRY__LOG_FILTER", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// An `analytics run` process, killed if the test ends (or fails) without stopping it.
struct Consumer(Child);

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Consumer {
    fn start(settings: &Settings) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_analytics"))
            .arg("run")
            .envs(env(settings))
            .stdout(Stdio::null())
            .spawn()
            .expect("start analytics run");
        Self(child)
    }

    /// SIGKILL: no chance to write what it holds.
    fn kill_9(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }

    /// SIGTERM, and the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).expect("pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.0.wait().expect("wait")
    }
}

/// A deterministic sequence for the test's choices (the seed is printed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Produces `n` clicks over `codes` codes through the service's own sink, in batches of
/// 500; returns the ground truth per code.
async fn produce(settings: &Settings, n: usize, codes: usize, seed: u64) -> HashMap<String, u64> {
    let sink = KafkaSink::new(&settings.kafka, ProducerMeters::noop()).expect("producer");
    let mut random = Lcg(seed);
    let mut truth = HashMap::new();
    // Now: a message's timestamp is its click time, and the broker's retention (7 days)
    // deletes older ones.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut batch = Vec::with_capacity(500);
    for i in 0..n {
        let code = format!("c{}", random.next(codes as u64));
        *truth.entry(code.clone()).or_insert(0) += 1;
        batch.push(ClickEvent {
            v: CLICK_EVENT_VERSION,
            id: uuid::Uuid::now_v7(),
            code: ShortCode::parse(&code).expect("code"),
            at_ms: base + (i / 100) as i64,
            referrer: None,
            user_agent: Some("Mozilla/5.0 Firefox/121.0".into()),
            country: None,
            visitor: i as u64,
        });
        if batch.len() == 500 {
            sink.publish(std::mem::take(&mut batch))
                .await
                .expect("publish");
        }
    }
    sink.publish(batch).await.expect("publish");
    sink.close().await;
    truth
}

/// Every code's total in the store.
async fn totals(settings: &Settings) -> HashMap<String, u64> {
    let (client, connection) =
        tokio_postgres::connect(settings.store.postgres.url.expose(), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    client
        .query("SELECT code, total FROM stats_totals", &[])
        .await
        .expect("query")
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
        .collect()
}

/// Waits until the store holds `expected` clicks in all; panics past `within`.
async fn wait_for_total(settings: &Settings, expected: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let sum: u64 = totals(settings).await.values().sum();
        assert!(
            sum <= expected,
            "more clicks than produced: {sum} > {expected}"
        );
        if sum == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {sum} of {expected} clicks after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_never_loses_or_double_counts_a_click() {
    let test = "kill -9 consumer";
    let Some(settings) = settings(test, "crash", 4).await else {
        return;
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    eprintln!("seed {seed}");
    // Each round produces a backlog of 16,000 clicks, then starts a consumer and kills
    // it at a random moment after its assignment (the killed member's session ends after
    // 6 s), mostly while it is reading and writing that backlog.
    let mut random = Lcg(seed ^ 0x5eed);
    let mut truth: HashMap<String, u64> = HashMap::new();
    for round in 0..6 {
        for (code, n) in produce(&settings, 16_000, 1_000, seed + round).await {
            *truth.entry(code).or_default() += n;
        }
        let mut child = Consumer::start(&settings);
        // Wait for its first write (past the rebalance: the killed member's session ends
        // after 6 s), then kill it a random moment later, while it works on the backlog.
        let before: u64 = totals(&settings).await.values().sum();
        let deadline = Instant::now() + Duration::from_secs(60);
        while totals(&settings).await.values().sum::<u64>() == before {
            assert!(
                Instant::now() < deadline,
                "round {round}: no write within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wait = random.next(150);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill_9();
        let sum: u64 = totals(&settings).await.values().sum();
        eprintln!(
            "round {round}: killed {wait} ms after its first write, with {sum} of {} clicks written",
            16_000 * (round + 1)
        );
        assert!(sum <= 96_000, "double counted: {sum}");
    }
    for (code, n) in produce(&settings, 4_000, 1_000, seed + 6).await {
        *truth.entry(code).or_default() += n;
    }
    let mut child = Consumer::start(&settings);
    wait_for_total(&settings, 100_000, Duration::from_secs(120)).await;
    let status = child.terminate();
    assert!(status.success(), "a clean stop on SIGTERM: {status}");
    let stored = totals(&settings).await;
    for (code, expected) in &truth {
        assert_eq!(stored.get(code), Some(expected), "code {code}");
    }
    assert_eq!(stored.len(), truth.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn consumer_throughput() {
    let Some(settings) = settings("throughput", "rate", 4).await else {
        return;
    };
    let started = Instant::now();
    produce(&settings, 50_000, 1_000, 1).await;
    eprintln!("produced 50,000 in {:?}", started.elapsed());
    let started = Instant::now();
    let mut child = Consumer::start(&settings);
    wait_for_total(&settings, 50_000, Duration::from_secs(300)).await;
    eprintln!("consumed 50,000 in {:?}", started.elapsed());
    child.terminate();
}

/// Raw messages onto the click topic (what a broken or foreign producer might write).
async fn produce_raw(settings: &Settings, values: &[&[u8]]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .create()
        .expect("producer");
    for value in values {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(&settings.kafka.topic)
                    .key("poison")
                    .payload(value),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }
}

/// Every message on the dead-letter topic: its value and its `reason` header.
fn dead_letters(settings: &Settings, expected: usize) -> Vec<(Vec<u8>, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("group.id", "dead-letter-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&settings.kafka.dead_letter_topic])
        .expect("subscribe");
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Past the expected count too, for a moment: a duplicate must show up here.
    let mut quiet_until = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let reason = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "reason"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                letters.push((message.payload().unwrap_or_default().to_vec(), reason));
            }
            Some(Err(error)) => panic!("dead-letter read: {error}"),
            None => {}
        }
        if letters.len() >= expected {
            let until = *quiet_until.get_or_insert(Instant::now() + Duration::from_secs(2));
            if Instant::now() >= until {
                break;
            }
        }
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_topic_once_and_the_clicks_around_it_count() {
    let test = "poison messages";
    let Some(settings) = settings(test, "poison", 2).await else {
        return;
    };
    let truth = produce(&settings, 1_000, 50, 3).await;
    let poison: [&[u8]; 3] = [b"not json", b"", br#"{"v":0,"code":"x"}"#];
    produce_raw(&settings, &poison).await;
    let more = produce(&settings, 1_000, 50, 4).await;
    let mut child = Consumer::start(&settings);
    wait_for_total(&settings, 2_000, Duration::from_secs(60)).await;
    assert!(child.terminate().success());
    // A restart reads on from the stored positions: no second copy of any dead letter.
    let mut again = Consumer::start(&settings);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(again.terminate().success());
    let letters = dead_letters(&settings, 3);
    assert_eq!(letters.len(), 3, "each poison message once: {letters:?}");
    for (value, reason) in &letters {
        assert!(poison.contains(&value.as_slice()), "{value:?}");
        assert!(!reason.is_empty(), "a reason for {value:?}");
    }
    let stored = totals(&settings).await;
    for (code, n) in truth {
        let expected = n + more.get(&code).copied().unwrap_or(0);
        assert_eq!(stored.get(&code), Some(&expected), "code {code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_between_consumers_lose_and_double_count_nothing() {
    let test = "rebalance";
    let Some(settings) = settings(test, "rebalance", 4).await else {
        return;
    };
    let mut truth: HashMap<String, u64> = HashMap::new();
    let mut add = |batch: HashMap<String, u64>| {
        for (code, n) in batch {
            *truth.entry(code).or_default() += n;
        }
    };
    add(produce(&settings, 10_000, 200, 11).await);
    let mut a = Consumer::start(&settings);
    wait_for_total(&settings, 10_000, Duration::from_secs(60)).await;
    // B joins: A gives up half the partitions (writing what it holds for them).
    let mut b = Consumer::start(&settings);
    tokio::time::sleep(Duration::from_secs(3)).await;
    add(produce(&settings, 10_000, 200, 12).await);
    wait_for_total(&settings, 20_000, Duration::from_secs(60)).await;
    // A leaves cleanly: B takes everything.
    assert!(a.terminate().success());
    add(produce(&settings, 10_000, 200, 13).await);
    wait_for_total(&settings, 30_000, Duration::from_secs(60)).await;
    // B dies holding a batch (the next one arrives as it is killed); C takes over.
    add(produce(&settings, 10_000, 200, 14).await);
    b.kill_9();
    let mut c = Consumer::start(&settings);
    wait_for_total(&settings, 40_000, Duration::from_secs(90)).await;
    assert!(c.terminate().success());
    let stored = totals(&settings).await;
    for (code, n) in &truth {
        assert_eq!(stored.get(code), Some(n), "code {code}");
    }
}

/// Every link-day row's body, by (code, day), from `table`.
async fn days(settings: &Settings, table: &str) -> HashMap<(String, i32), Vec<u8>> {
    let (client, connection) =
        tokio_postgres::connect(settings.store.postgres.url.expose(), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    client
        .query(&format!("SELECT code, day, body FROM {table}"), &[])
        .await
        .expect("query")
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect()
}

/// `analytics replay` with the test's settings; its exit status.
fn replay(settings: &Settings) -> std::process::ExitStatus {
    Command::new(env!("CARGO_BIN_EXE_analytics"))
        .arg("replay")
        .envs(env(settings))
        .stdout(Stdio::null())
        .status()
        .expect("run analytics replay")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_rebuilds_the_same_statistics_and_switches_them_in_under_live_traffic() {
    let test = "replay";
    let Some(settings) = settings(test, "replay", 3).await else {
        return;
    };
    let mut truth: HashMap<String, u64> = HashMap::new();
    let mut add = |batch: HashMap<String, u64>| {
        for (code, n) in batch {
            *truth.entry(code).or_default() += n;
        }
    };
    add(produce(&settings, 20_000, 300, 21).await);
    // Poison in the log: the live consumer dead-letters it, the replay skips it.
    produce_raw(&settings, &[b"not json"]).await;
    let mut live = Consumer::start(&settings);
    wait_for_total(&settings, 20_000, Duration::from_secs(60)).await;

    // The replay runs while clicks keep arriving and the live consumer keeps writing:
    // it switches in only at the live positions, so nothing is lost or counted twice.
    let producing = {
        let settings = settings.clone();
        tokio::spawn(async move { produce(&settings, 10_000, 300, 22).await })
    };
    let status = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || replay(&settings))
            .await
            .expect("replay thread")
    };
    assert!(status.success(), "analytics replay: {status}");
    add(producing.await.expect("producer task"));
    wait_for_total(&settings, 30_000, Duration::from_secs(60)).await;
    assert!(live.terminate().success());
    let stored = totals(&settings).await;
    assert_eq!(stored.len(), truth.len());
    for (code, n) in &truth {
        assert_eq!(stored.get(code), Some(n), "code {code}");
    }

    // With the consumers stopped, a second replay rebuilds exactly what is live: every
    // day row byte for byte, and the numbers it replaced stay readable aside.
    let live_days = days(&settings, "stats_days").await;
    assert!(replay(&settings).success());
    assert_eq!(days(&settings, "stats_days").await, live_days);
    assert_eq!(
        days(&settings, "stats_days_before_rebuild").await,
        live_days
    );
    assert_eq!(totals(&settings).await, stored);
}
