//! The whole system from local processes (`scripts/stack.sh`), as a user starts it: three
//! instances behind nginx on PostgreSQL, Redis and Kafka from the test kit, the analytics
//! consumer, and Prometheus with the SLO rules. One smoke test walks through it: requests
//! through nginx reach every instance, clicks arrive in the statistics, Prometheus
//! scrapes every target and evaluates the rules without error, a short Locust run (from
//! PyPI) has no failure and every redirect it made is counted, every Grafana panel's
//! query runs and shows data, and `down` leaves nothing running.
//!
//! The script runs the binaries cargo built for the tests (`BIN_DIR`): `shortener`, and
//! the `analytics` and `testkit` binaries that `cargo test` at the workspace root builds
//! for their own packages' tests. Its ports are shifted (`PORT_OFFSET`) to free ones, so
//! that a stack or a service on the default ports does not get in the way.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/dashboards.rs"]
mod dashboards;

const LOCUST: &str = "locust==2.47.0";
/// Links the Locust visitors spread over (the run creates them first).
const LINKS: &str = "1000";
const USERS: &str = "20";
const INSTANCES: u16 = 3;

/// `scripts/stack.sh` with this test's settings; `down` when dropped, whatever happened.
struct Stack {
    state: PathBuf,
    bins: PathBuf,
    offset: u16,
    up: bool,
}

impl Stack {
    fn script(&self, command: &str) -> Output {
        Command::new("scripts/stack.sh")
            .arg(command)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("STACK_DIR", &self.state)
            .env("BIN_DIR", &self.bins)
            .env("PORT_OFFSET", self.offset.to_string())
            .env("INSTANCES", INSTANCES.to_string())
            // Locust's start creates the links through one key; the per-client limits
            // stay on (every simulated user has an address of its own).
            .env(
                "EXTRA_ENV",
                "APP__LIMITS__API_PER_KEY__PER_S=100000 APP__LIMITS__API_PER_KEY__BURST=100000",
            )
            .output()
            .expect("run scripts/stack.sh")
    }

    fn port(&self, default: u16) -> u16 {
        default + self.offset
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port(8080))
    }

    fn prometheus(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port(9099))
    }

    /// The end of every log the stack wrote, for a failure's message.
    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(&self.state)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                all += &format!("--- {}\n", path.display());
                for line in tail.into_iter().rev() {
                    all += line;
                    all.push('\n');
                }
            }
        }
        all
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.up {
            let _ = self.script("down");
        }
    }
}

/// The stack's ports shifted by an offset at which every one of them is free.
fn free_offset() -> u16 {
    let defaults = [8080, 8081, 8082, 8083, 9091, 9092, 9093, 9190, 9099];
    (10_000..=20_000)
        .step_by(500)
        .find(|offset| {
            defaults
                .iter()
                .all(|port| TcpListener::bind(("127.0.0.1", port + offset)).is_ok())
        })
        .expect("a free set of ports")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Polls `check` every half second until it gives a value, or panics with `what`.
async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {seconds} s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn json(client: &reqwest::Client, url: &str, key: Option<&str>) -> Option<Value> {
    let mut request = client.get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.ok()?.json().await.ok()
}

/// What `scripts/stack.sh` needs that the test cannot build: nginx, Prometheus, promtool,
/// and the other packages' binaries; `None` after saying what is missing.
fn preconditions(test: &str) -> Option<PathBuf> {
    for tool in ["nginx", "prometheus", "promtool"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            shortener_testkit::skip(test, "apt-get install -y nginx prometheus");
            return None;
        }
    }
    let bins = Path::new(env!("CARGO_BIN_EXE_shortener"))
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    if !["analytics", "testkit"]
        .iter()
        .all(|b| bins.join(b).exists())
    {
        shortener_testkit::skip(
            test,
            "the analytics and testkit binaries: run cargo test at the workspace root, or \
             cargo build -p shortener-analytics -p shortener-testkit",
        );
        return None;
    }
    Some(bins)
}

/// A link made through nginx redirects from every instance, and its clicks reach the
/// statistics (through Kafka and the consumer).
async fn redirects_reach_every_instance_and_are_counted(
    stack: &Stack,
    client: &reqwest::Client,
    key: &str,
) {
    // Through nginx: a link made on one instance redirects from every one of them.
    let created = client
        .post(stack.url("/api/v1/links"))
        .bearer_auth(key)
        .json(&serde_json::json!({"url": "https://example.com/smoke", "alias": "smoke"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    let redirects = 30;
    for _ in 0..redirects {
        let answer = client.get(stack.url("/smoke")).send().await.expect("get");
        assert_eq!(answer.status(), 302);
        assert_eq!(answer.headers()["location"], "https://example.com/smoke");
    }
    for i in 1..=INSTANCES {
        let url = format!("http://127.0.0.1:{}/metrics", stack.port(9090 + i));
        let metrics = client.get(&url).send().await.expect("metrics");
        let metrics = metrics.text().await.expect("metrics text");
        let served: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("shortener_http_requests_total{") && l.contains("302"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(served > 0.0, "instance {i} served no redirect:\n{metrics}");
    }

    // The clicks go through Kafka to the consumer, and come back as statistics.
    let stats = stack.url("/api/v1/links/smoke/stats");
    eventually("the 30 clicks in the statistics", 60, || async {
        let body = json(client, &stats, Some(key)).await?;
        (body["totals"]["clicks"] == redirects).then_some(())
    })
    .await;
}

/// Prometheus scrapes the instances and the consumer, with the config stack.sh wrote.
async fn prometheus_scrapes_every_target(stack: &Stack, client: &reqwest::Client) {
    // Prometheus scrapes the three instances and the consumer.
    let targets = stack.prometheus("/api/v1/targets");
    eventually("every Prometheus target up", 60, || async {
        let body = json(client, &targets, None).await?;
        let active = body["data"]["activeTargets"].as_array()?;
        (active.len() == usize::from(INSTANCES) + 1 && active.iter().all(|t| t["health"] == "up"))
            .then_some(())
    })
    .await;
    let checked = Command::new("promtool")
        .args(["check", "config"])
        .arg(stack.state.join("prometheus.yml"))
        .output()
        .expect("promtool");
    assert!(checked.status.success(), "{}", text(&checked));
}

/// A short Locust run with every scenario: no failure, and every redirect it saw
/// answered is counted in the statistics.
fn locust_runs_without_failure_and_every_redirect_counts(
    stack: &Stack,
    python: &Path,
    key: &str,
    dir: &Path,
) {
    // Locust: every scenario for a short while, with no failure.
    let run = Command::new(python.with_file_name("locust"))
        .args(["-f", "locust/locustfile.py", "--headless", "--only-summary"])
        .args(["-u", USERS, "-r", USERS, "-t", "15s"])
        .arg("--host")
        .arg(stack.url(""))
        .arg("--csv")
        .arg(dir.join("locust"))
        .env("SHORTENER_KEY", key)
        .env("LINKS", LINKS)
        .env("REDIRECTS_SENT", dir.join("redirects_sent.json"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run locust");
    assert!(run.status.success(), "locust:\n{}", text(&run));
    let csv = std::fs::read_to_string(dir.join("locust_stats.csv")).expect("locust csv");
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let total: Vec<&str> = csv
        .lines()
        .find(|l| l.contains(",Aggregated,"))
        .expect("the aggregated row")
        .split(',')
        .collect();
    let column = |name: &str| {
        let at = header.iter().position(|h| *h == name).expect(name);
        total[at].parse::<u64>().expect("a count")
    };
    assert!(column("Request Count") > 100, "{csv}");
    assert_eq!(column("Failure Count"), 0, "{csv}");

    // Every redirect Locust saw answered is counted in the statistics.
    let totals = Command::new(python)
        .arg("locust/check_totals.py")
        .arg(stack.url(""))
        .arg(dir.join("redirects_sent.json"))
        .env("SHORTENER_KEY", key)
        .env("IN_FLIGHT", USERS)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run check_totals.py");
    assert!(
        totals.status.success(),
        "check_totals.py:\n{}",
        text(&totals)
    );
}

/// The SLO rules and the dashboard's queries run on what the stack exports.
async fn rules_and_panels_evaluate(stack: &Stack, client: &reqwest::Client) {
    // The SLO rules evaluate on what the stack exports: no rule in error, and the
    // redirect availability ratio has a value.
    let rules = stack.prometheus("/api/v1/rules");
    eventually("every rule evaluated without error", 60, || async {
        let body = json(client, &rules, None).await?;
        let groups = body["data"]["groups"].as_array()?;
        let rules: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        assert!(
            rules.iter().all(|r| r["health"] != "err"),
            "a rule failed: {body}"
        );
        (!rules.is_empty() && rules.iter().all(|r| r["health"] == "ok")).then_some(())
    })
    .await;
    let query =
        stack.prometheus("/api/v1/query?query=slo:redirect_availability:error_ratio_rate5m");
    eventually("the redirect availability ratio", 60, || async {
        let body = json(client, &query, None).await?;
        (!body["data"]["result"].as_array()?.is_empty()).then_some(())
    })
    .await;

    // Every dashboard panel's query runs on the live Prometheus (promtool only parses
    // them: a vector-matching error shows when a query runs), and every one has data
    // except those counting failures, of which a healthy run has none, and the
    // in-process sink's, which a stack clicking through Kafka does not run.
    let quiet = [
        "status=~\"5..\"",
        "shortener_http_rejected_total",
        "shortener_rate_limited_total",
        "shortener_auth_refused_total",
        "shortener_clicks_dropped_total",
        "outcome!=\"delivered\"",
        "shortener_clicks_aggregated_total",
    ];
    for (title, expr) in dashboards::panel_queries() {
        let query = [("query", &expr)];
        let url = url::Url::parse_with_params(&stack.prometheus("/api/v1/query"), query)
            .expect("query URL");
        let may_be_empty = quiet.iter().any(|q| expr.contains(q));
        // Recorded series appear at their group's next evaluation (every 15 s).
        eventually(&format!("{title}: data for {expr}"), 40, || async {
            let body = json(client, url.as_str(), None).await?;
            assert_eq!(body["status"], "success", "{title}: {expr}: {body}");
            let empty = body["data"]["result"].as_array().is_none_or(Vec::is_empty);
            (!empty || may_be_empty).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_stack_serves_counts_and_is_scraped() {
    let test = "the_local_stack_serves_counts_and_is_scraped";
    let Some(bins) = preconditions(test) else {
        return;
    };
    let Some(python) = shortener_testkit::python::python(test, &[LOCUST]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = Stack {
        state: dir.path().join("stack"),
        bins,
        offset: free_offset(),
        up: true,
    };
    let started = stack.script("up");
    assert!(
        started.status.success(),
        "stack.sh up:\n{}\n{}",
        text(&started),
        stack.logs()
    );
    let key = std::fs::read_to_string(stack.state.join("admin.key"))
        .expect("the admin key")
        .trim()
        .to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    redirects_reach_every_instance_and_are_counted(&stack, &client, &key).await;
    prometheus_scrapes_every_target(&stack, &client).await;
    locust_runs_without_failure_and_every_redirect_counts(&stack, &python, &key, dir.path());
    rules_and_panels_evaluate(&stack, &client).await;

    let status = stack.script("status");
    let status = text(&status);
    assert_eq!(status.matches("readyz 200").count(), 5, "{status}");

    // Down: nothing left listening, no state left.
    let stopped = stack.script("down");
    stack.up = false;
    assert!(stopped.status.success(), "{}", text(&stopped));
    assert!(!stack.state.exists());
    for port in [8080, 8081, 9091, 9190, 9099] {
        assert!(
            TcpListener::bind(("127.0.0.1", stack.port(port))).is_ok(),
            "port {} still taken after down",
            stack.port(port)
        );
    }
}
