//! An open-loop load generator: requests at a fixed rate, latency measured from when
//! each request was *due*, not from when it was sent.
//!
//! wrk is closed-loop: each connection sends its next request only after the previous
//! answer, so when the server stalls, wrk stops sending, and the requests that would have
//! waited are never counted ("coordinated omission"). At saturation its p99 is the queue
//! its own connections build. A service is judged at the rate its users send, so this
//! schedules request `i` at `start + i / RATE`; a request that finds every connection
//! busy waits, and that wait is part of its latency (the approach of wrk2).
//!
//! The requests are the long-tail benchmark's (`scripts/zipf-codes.lua`): Zipf(`ZIPF_S`)
//! over `LINKS` codes `{CODE_PREFIX}{rank-1}`, a browser's headers, and one of `CLIENTS`
//! addresses in `X-Forwarded-For`. HTTP/1.1 over keep-alive connections, written by hand
//! (a request is a few fixed bytes; the client must cost far less than the server).
//!
//! Run (`scripts/bench-open-loop.sh` drives it):
//! `RATE=15000 DURATION=10 taskset -c 1 target/release/examples/open-loop 127.0.0.1:8080`

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const REFERER: &str = "https://news.example.com/articles/2026/11/some-story?utm_source=feed";

/// Settings, from the environment (the same names as the Lua script's).
struct Settings {
    target: String,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    links: usize,
    zipf_s: f64,
    clients: u64,
    prefix: String,
    pool: usize,
    /// How long before each due time the generator stops sleeping and spins (`SPIN_US`).
    spin: Duration,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value} is not valid")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            target: std::env::args()
                .nth(1)
                .context("usage: open-loop HOST:PORT (settings in RATE, DURATION, ...)")?,
            rate: env("RATE", 10_000.0)?,
            duration: Duration::from_secs_f64(env("DURATION", 10.0)?),
            warmup: Duration::from_secs_f64(env("WARMUP", 3.0)?),
            connections: env("CONNECTIONS", 64)?,
            links: env("LINKS", 100_000)?,
            zipf_s: env("ZIPF_S", 1.0)?,
            clients: env("CLIENTS", 1_000_000)?,
            prefix: env("CODE_PREFIX", "L".to_owned())?,
            pool: env("POOL", 500_000)?,
            spin: Duration::from_micros(env("SPIN_US", 2_000)?),
        })
    }
}

/// xorshift64*: plenty for drawing ranks, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The request pool: `pool` draws of (rank, client), as ready-to-write bytes.
fn requests(settings: &Settings) -> Vec<Vec<u8>> {
    let mut cdf = Vec::with_capacity(settings.links);
    let mut total = 0.0;
    for k in 1..=settings.links {
        total += 1.0 / (k as f64).powf(settings.zipf_s);
        cdf.push(total);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..settings.pool)
        .map(|_| {
            let u = rng.unit() * total;
            let rank = cdf.partition_point(|&c| c < u);
            let c = rng.next() % settings.clients.max(1);
            format!(
                "GET /{}{rank} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\n\
                 Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
                 Referer: {REFERER}\r\nX-Forwarded-For: 10.{}.{}.{}\r\n\r\n",
                settings.prefix,
                settings.target,
                (c >> 16) & 255,
                (c >> 8) & 255,
                c & 255
            )
            .into_bytes()
        })
        .collect()
}

/// Reads one response; returns its status code. Handles `Content-Length` bodies (a 404
/// has one; redirects have none).
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<u16> {
    buffer.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).context("response head")?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let body_len = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + body_len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-body");
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// What the connections share (one thread: `Cell`s, no atomics).
struct Run {
    start: Instant,
    interval: Duration,
    /// See [`wait_until`].
    spin: Duration,
    /// Index of the next request to send.
    next: Cell<u64>,
    /// Requests due before this index are warm-up: sent, not measured.
    measured_from: u64,
    /// Requests due from this index on are not sent.
    end: u64,
    /// Latency of each measured request, in microseconds.
    latencies: RefCell<Vec<u32>>,
    errors: Cell<u64>,
    non_3xx: Cell<u64>,
}

async fn connection(run: Rc<Run>, pool: Rc<Vec<Vec<u8>>>, target: String) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(&target).await?;
    stream.set_nodelay(true)?;
    let mut buffer = Vec::with_capacity(4096);
    loop {
        let i = run.next.get();
        if i >= run.end {
            return Ok(());
        }
        run.next.set(i + 1);
        let due = run.start + run.interval.mul_f64(i as f64);
        wait_until(due, run.spin).await;
        let request = &pool[(i % pool.len() as u64) as usize];
        let outcome = async {
            stream.write_all(request).await?;
            read_response(&mut stream, &mut buffer).await
        }
        .await;
        let latency = due.elapsed();
        match outcome {
            Ok(status) => {
                if !(300..400).contains(&status) {
                    run.non_3xx.set(run.non_3xx.get() + 1);
                }
                if i >= run.measured_from {
                    let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                    run.latencies.borrow_mut().push(micros);
                }
            }
            Err(_) => {
                run.errors.set(run.errors.get() + 1);
                stream = TcpStream::connect(&target).await?;
                stream.set_nodelay(true)?;
            }
        }
    }
}

/// Waits until `due`, to within microseconds: tokio's timer has millisecond ticks, which
/// would send requests up to a millisecond late and count that against the server. The
/// timer covers all but the last `spin` (2 ms by default); the rest is spent yielding to
/// the other connections, which keeps the client's core busy (it should have its own).
/// `SPIN_US=0` sleeps only: requests up to a millisecond late, and a core left to share
/// (for measuring what is far slower than a millisecond, such as click-to-stats).
async fn wait_until(due: Instant, spin: Duration) {
    if let Some(early) = due.checked_sub(spin)
        && early > Instant::now()
    {
        tokio::time::sleep_until(tokio::time::Instant::from_std(early)).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1_000.0
}

#[allow(clippy::print_stdout)] // a load generator: its report is the output
fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    if settings.rate.is_nan()
        || settings.rate <= 0.0
        || settings.connections == 0
        || settings.pool == 0
    {
        bail!("RATE, CONNECTIONS and POOL must be > 0");
    }
    let pool = Rc::new(requests(&settings));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let total = settings.warmup + settings.duration;
    let run = Rc::new(Run {
        start: Instant::now() + Duration::from_millis(200), // time to connect
        interval: Duration::from_secs_f64(1.0 / settings.rate),
        spin: settings.spin,
        next: Cell::new(0),
        measured_from: (settings.warmup.as_secs_f64() * settings.rate) as u64,
        end: (total.as_secs_f64() * settings.rate) as u64,
        latencies: RefCell::new(Vec::new()),
        errors: Cell::new(0),
        non_3xx: Cell::new(0),
    });
    let local = tokio::task::LocalSet::new();
    let results = local.block_on(&runtime, async {
        let tasks: Vec<_> = (0..settings.connections)
            .map(|_| {
                tokio::task::spawn_local(connection(
                    run.clone(),
                    pool.clone(),
                    settings.target.clone(),
                ))
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await);
        }
        results
    });
    for result in results {
        result??;
    }
    let finished = run.start.elapsed();
    let mut latencies = run.latencies.take();
    latencies.sort_unstable();
    let measured = latencies.len();
    println!(
        "rate {:.0}/s for {:.0} s (after {:.0} s warm-up), {} connections: {measured} measured, \
         {} errors, {} not 3xx, finished {:.2} s late",
        settings.rate,
        settings.duration.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.connections,
        run.errors.get(),
        run.non_3xx.get(),
        (finished.saturating_sub(total + Duration::from_millis(200))).as_secs_f64(),
    );
    println!(
        "latency ms (from the time each request was due): p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        percentile(&latencies, 100.0),
    );
    Ok(())
}
