//! The Redis second level, against a real `redis-server` started per test: sharing
//! between instances, cross-instance invalidation, and every Redis failure mode the
//! service must survive (killed, hung, subscription cut).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fred::interfaces::{ClientInterface, ClientLike, KeysInterface, PubsubInterface};
use fred::types::client::{ClientKillFilter, ClientKillType, ClientPauseKind};
use futures::future::join_all;
use serde_json::json;
use shortener::config::Settings;
use shortener_core::{Link, LinkStore, RedirectKind, ShortCode, TargetUrl};

use crate::helpers::redis::{RedisServer, command_calls};
use crate::helpers::{TestApp, link, spawn_app_with, spawn_pair_with};

/// Settings pointing at `redis`.
fn with_redis(redis: &RedisServer) -> impl Fn(&mut Settings) + use<> {
    let url = redis.url();
    move |s: &mut Settings| s.redis.url = url.clone().into()
}

/// A Redis server and two instances using it (each also configured by `configure`),
/// both connected and subscribed to invalidations; `None` when the test is skipped for
/// lack of `redis-server`.
async fn redis_pair(
    test: &str,
    configure: impl Fn(&mut Settings),
) -> Option<(RedisServer, TestApp, TestApp)> {
    let redis = RedisServer::start(test)?;
    let use_redis = with_redis(&redis);
    let (a, b) = spawn_pair_with(|s| {
        use_redis(s);
        configure(s);
    })
    .await;
    wait_until_redis_ok(&a).await;
    wait_until_redis_ok(&b).await;
    wait_for_subscribers(&redis.admin().await, 2).await;
    Some((redis, a, b))
}

/// Waits until the instance reports Redis as usable (connected, breaker closed).
async fn wait_until_redis_ok(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = app.get("/readyz").await.text().await.expect("text");
        if body.contains(r#""redis":"ok""#) {
            return;
        }
        assert!(Instant::now() < deadline, "redis never became ok: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `GET /{code}` on `app` until it is a 404; returns how long that took.
async fn time_until_gone(app: &TestApp, code: &str, started: Instant, limit: Duration) -> Duration {
    loop {
        let status = app.get(&format!("/{code}")).await.status();
        if status == 404 {
            return started.elapsed();
        }
        assert_eq!(status, 302);
        assert!(
            started.elapsed() < limit,
            "{code} still redirects after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The instance's Redis-related counters, for a failure message.
async fn l2_counters(app: &TestApp) -> String {
    let metrics = app.metrics().await;
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            ["l2_requests", "invalidations", "l1_clears", "breaker_state"]
                .iter()
                .any(|name| l.contains(name))
        })
        .collect();
    lines.join(", ")
}

/// Waits until `n` clients listen on the invalidation channel.
async fn wait_for_subscribers(admin: &fred::clients::Client, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts: Vec<(String, i64)> = admin
            .pubsub_numsub("shortener:invalidate")
            .await
            .expect("PUBSUB NUMSUB");
        if counts.first().is_some_and(|(_, count)| *count == n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers: {counts:?}, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A link put straight into the shared store: in neither cache tier.
async fn uncached_link(app: &TestApp, code: &str) {
    let link = Link {
        code: ShortCode::parse(code).expect("valid"),
        target: TargetUrl::parse("https://example.com/stampede").expect("valid"),
        created_at: time::OffsetDateTime::now_utc(),
        expires_at: None,
        redirect: RedirectKind::Found,
        max_clicks: None,
        owner: None,
    };
    app.store.insert_if_absent(&link).await.expect("insert");
}

#[tokio::test]
async fn a_link_loaded_by_one_instance_is_served_from_redis_by_another() {
    let Some((_redis, a, b)) = redis_pair("l2 sharing", |_| {}).await else {
        return;
    };
    uncached_link(&a, "shared1").await;

    assert_eq!(a.get("/shared1").await.status(), 302);
    assert_eq!(
        a.store_gets(),
        1,
        "A's miss reads the store and fills Redis"
    );
    assert_eq!(b.get("/shared1").await.status(), 302);
    assert_eq!(a.store_gets(), 1, "B's miss is a Redis hit");

    a.service.l1().clear();
    assert_eq!(a.get("/shared1").await.status(), 302);
    assert_eq!(a.store_gets(), 1, "evicted from A's L1: served from Redis");

    // Creates write through: the other instance never reads the store for a new link.
    let code = a.create_ok(link("https://example.com/new")).await;
    assert_eq!(b.get(&format!("/{code}")).await.status(), 302);
    assert_eq!(a.store_gets(), 1);
}

#[tokio::test]
async fn a_create_replaces_unknown_entries_in_every_tier_and_instance() {
    let Some((_redis, a, b)) = redis_pair("l2 negative entries", |_| {}).await else {
        return;
    };
    // B learns "unknown" (L1 and Redis), then A creates the alias.
    assert_eq!(b.get("/later").await.status(), 404);
    assert_eq!(b.get("/later").await.status(), 404);
    assert_eq!(a.store_gets(), 1, "the unknown code is cached, not re-read");
    a.create_ok(json!({"url": "https://example.com/", "alias": "later"}))
        .await;
    let started = Instant::now();
    let limit = Duration::from_secs(1);
    loop {
        if b.get("/later").await.status() == 302 {
            break;
        }
        if started.elapsed() >= limit {
            panic!(
                "B still says unknown after {limit:?}; A: {}; B: {}",
                l2_counters(&a).await,
                l2_counters(&b).await
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn deletes_stop_redirects_on_other_instances_within_a_second() {
    let Some((_redis, a, b)) = redis_pair("l2 delete propagation", |_| {}).await else {
        return;
    };
    let mut samples = Vec::with_capacity(100);
    for _ in 0..100 {
        let code = a.create_ok(link("https://example.com/gone")).await;
        // Three times: into B's L1, then its front, then answered from the front.
        for _ in 0..3 {
            assert_eq!(
                b.get(&format!("/{code}")).await.status(),
                302,
                "cached on B"
            );
        }
        let started = Instant::now();
        assert_eq!(
            a.delete(&format!("/api/v1/links/{code}")).await.status(),
            204
        );
        samples.push(time_until_gone(&b, &code, started, Duration::from_secs(5)).await);
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    eprintln!(
        "delete propagation over {} trials: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    assert!(at(0.99) < Duration::from_secs(1), "p99 {:?}", at(0.99));
    assert!(
        a.metric(r#"shortener_invalidations_total{direction="received"}"#)
            .await
            >= 100.0
    );
}

#[tokio::test]
async fn a_cut_subscription_still_stops_a_deleted_link_within_the_l1_ttl() {
    let l1_ttl = Duration::from_secs(2);
    let Some((redis, a, b)) = redis_pair("l2 pubsub killed", |s| {
        s.cache.ttl_s = 2.try_into().expect("> 0")
    })
    .await
    else {
        return;
    };
    let admin = redis.admin().await;
    for round in 0..3 {
        wait_for_subscribers(&admin, 2).await;
        let code = a.create_ok(link("https://example.com/cut")).await;
        assert_eq!(
            b.get(&format!("/{code}")).await.status(),
            302,
            "cached on B"
        );
        let killed: i64 = admin
            .client_kill(vec![ClientKillFilter::Type(ClientKillType::Pubsub)])
            .await
            .expect("CLIENT KILL");
        assert_eq!(killed, 2, "round {round}: both subscribers cut");
        // Published while B's subscription is down: B never receives this message.
        let started = Instant::now();
        assert_eq!(
            a.delete(&format!("/api/v1/links/{code}")).await.status(),
            204
        );
        let took = time_until_gone(&b, &code, started, l1_ttl + Duration::from_millis(200)).await;
        eprintln!("round {round}: deleted link gone from B after {took:?} (L1 TTL {l1_ttl:?})");
    }
    assert!(
        b.metric(r#"shortener_l1_clears_total{reason="subscribed"}"#)
            .await
            >= 3.0,
        "resubscribing cleared the L1"
    );
}

#[tokio::test]
async fn killing_redis_under_load_causes_no_errors_and_it_recovers() {
    let Some(mut redis) = RedisServer::start("l2 redis killed") else {
        return;
    };
    let app = Arc::new(spawn_app_with(with_redis(&redis)).await);
    wait_until_redis_ok(&app).await;
    let codes = app.create_links(20).await;
    let codes = Arc::new(codes);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    // Load: 16 clients cycling through the links, while the L1 is cleared every 10 ms so
    // that requests keep reaching the Redis tier.
    let mut workers = Vec::new();
    for worker in 0..16 {
        let (app, codes, stop, ok, bad) = (
            app.clone(),
            codes.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let status = app
                    .get(&format!("/{}", codes[i % codes.len()]))
                    .await
                    .status();
                if status == 302 { &ok } else { &bad }.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let clearer = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                app.service.l1().clear();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    let served_before_kill = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        ok.load(Ordering::Relaxed) > served_before_kill,
        "still serving while Redis is down"
    );
    // Not `shortener_redis_breaker_state`: the gauge is process-wide, and the other
    // instances of this test binary (each with its own breaker, and its own background
    // probe) set it too. The skipped count only ever rises, so it can tell.
    let skipped = r#"shortener_l2_requests_total{result="skipped"}"#;
    assert!(
        app.metric(skipped).await > 0.0,
        "open breaker: Redis not even asked"
    );

    redis.restart();
    wait_until_redis_ok(&app).await;
    let hits = r#"shortener_l2_requests_total{result="hit"}"#;
    let hits_after_restart = app.metric(hits).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.metric(hits).await <= hits_after_restart {
        assert!(Instant::now() < deadline, "Redis hits never resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    clearer.await.expect("clearer");
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    eprintln!("redis killed under load: {ok} redirects, {bad} other answers");
    assert_eq!(bad, 0, "every request for an existing link redirected");
    assert!(ok > 100);
}

#[tokio::test]
async fn a_hung_redis_costs_a_request_at_most_the_command_timeout() {
    let Some(redis) = RedisServer::start("l2 redis hung") else {
        return;
    };
    let app = spawn_app_with(with_redis(&redis)).await;
    wait_until_redis_ok(&app).await;
    let codes = app.create_links(20).await;
    app.service.l1().clear();
    let admin = redis.admin().await;
    admin
        .client_pause(10_000, Some(ClientPauseKind::All))
        .await
        .expect("CLIENT PAUSE");

    let mut worst = Duration::ZERO;
    for code in &codes {
        let started = Instant::now();
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
        worst = worst.max(started.elapsed());
    }
    admin.client_unpause().await.expect("CLIENT UNPAUSE");
    eprintln!(
        "redis paused: slowest of {} cache misses took {worst:?}",
        codes.len()
    );
    // The bound is the command timeout (25 ms) plus a store read; 1 s leaves room for a
    // slow CI machine while being far below the 10 s a hung Redis would cost.
    assert!(worst < Duration::from_secs(1), "a request waited {worst:?}");
    assert!(
        app.metric(r#"shortener_l2_requests_total{result="timeout"}"#)
            .await
            > 0.0
    );
}

#[tokio::test]
async fn a_stampede_reads_redis_and_the_store_at_most_once_per_instance() {
    let Some((redis, a, b)) = redis_pair("l2 stampede", |_| {}).await else {
        return;
    };
    uncached_link(&a, "stampede").await;
    let admin = redis.admin().await;
    let gets_before = command_calls(&admin, "get").await;

    let resolves = [&a, &b].into_iter().flat_map(|app| {
        (0..10_000).map(move |_| {
            let service = app.service.clone();
            tokio::spawn(async move { service.resolve("stampede", false).await })
        })
    });
    for result in join_all(resolves).await {
        let resolution = result.expect("task").expect("resolve");
        assert!(matches!(
            resolution,
            shortener::service::Resolution::Redirect(_)
        ));
    }
    let redis_gets = command_calls(&admin, "get").await - gets_before;
    eprintln!(
        "20,000 resolves on 2 instances: {redis_gets} Redis GETs, {} store reads",
        a.store_gets()
    );
    assert!(redis_gets <= 2, "{redis_gets} Redis GETs");
    assert!(a.store_gets() <= 2, "{} store reads", a.store_gets());
}

#[tokio::test]
async fn max_clicks_is_exact_across_instances() {
    let Some((_redis, a, b)) = redis_pair("l2 max_clicks", |_| {}).await else {
        return;
    };
    let code = a
        .create_ok(json!({"url": "https://example.com/", "max_clicks": 10}))
        .await;
    let path = format!("/{code}");
    let requests = (0..40).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.get(&path)
    });
    let statuses: Vec<u16> = join_all(requests)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let redirects = statuses.iter().filter(|&&s| s == 302).count();
    let exhausted = statuses.iter().filter(|&&s| s == 410).count();
    assert_eq!((redirects, exhausted), (10, 30), "{statuses:?}");
}

#[tokio::test]
async fn readiness_reports_redis_as_degraded_not_failed_and_recovers() {
    // Nothing listens on port 1: the service starts anyway and serves from the store.
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".into()).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.text().await.expect("text"),
        "{\"status\":\"ready\",\"redis\":\"degraded\"}\n"
    );
    let code = app.create_ok(link("https://example.com/")).await;
    app.service.l1().clear();
    assert_eq!(app.get(&format!("/{code}")).await.status(), 302);

    // Redis coming up after the service: it connects and is used from then on.
    let Some(mut redis) = RedisServer::reserve("l2 readiness") else {
        return;
    };
    let live = spawn_app_with(with_redis(&redis)).await;
    let ready = live.get("/readyz").await.text().await.expect("text");
    assert_eq!(ready, "{\"status\":\"ready\",\"redis\":\"degraded\"}\n");
    redis.restart();
    wait_until_redis_ok(&live).await;
    // Keys the service wrote are under its prefix.
    let admin = redis.admin().await;
    let code = live.create_ok(link("https://example.com/")).await;
    let stored: Option<String> = admin
        .get(format!("shortener:link:{code}"))
        .await
        .expect("GET");
    assert!(stored.is_some_and(|v| v.contains("https://example.com/")));
    admin.quit().await.expect("quit");
}

/// Polls `/readyz` (which reads the probe's verdict and never touches Redis) until it
/// reports Redis as `want`; returns how long that took. `within` guards against a hang.
async fn time_until_redis_is(app: &TestApp, want: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let want = format!(r#""redis":"{want}""#);
    loop {
        let body = app.get("/readyz").await.text().await.expect("text");
        if body.contains(&want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{want} not reported within {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const PROBE_MS: u64 = 200;
const BREAKER_OPEN_MS: u64 = 300;

fn with_fast_probe(redis: &RedisServer) -> impl Fn(&mut Settings) + use<> {
    let use_redis = with_redis(redis);
    move |s: &mut Settings| {
        use_redis(s);
        s.redis.probe_interval_ms = PROBE_MS.try_into().expect("> 0");
        s.redis.breaker_open_ms = BREAKER_OPEN_MS.try_into().expect("> 0");
    }
}

#[tokio::test]
async fn readiness_clears_without_traffic_once_redis_is_back() {
    let Some(mut redis) = RedisServer::start("l2 readiness probe") else {
        return;
    };
    let app = spawn_app_with(with_fast_probe(&redis)).await;
    wait_until_redis_ok(&app).await;
    let codes = app.create_links(5).await;
    redis.kill();
    // Traffic while Redis is down opens the breaker (what used to keep /readyz degraded
    // until the next request happened to be its trial).
    for code in codes.iter().cycle().take(50) {
        app.service.l1().clear();
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    }
    let skipped = r#"shortener_l2_requests_total{result="skipped"}"#;
    assert!(
        app.metric(skipped).await > 0.0,
        "breaker open: Redis skipped"
    );
    time_until_redis_is(&app, "degraded", Duration::from_secs(5)).await;

    // From here on, no request touches Redis: only the background probe can notice.
    redis.restart();
    let took = time_until_redis_is(&app, "ok", Duration::from_secs(10)).await;
    eprintln!("redis back, /readyz ok after {took:?} with no traffic");
    // fred reconnects with backoff (capped at 2 s), then the next probe is the
    // breaker's trial.
    assert!(
        took < Duration::from_millis(2000 + PROBE_MS + BREAKER_OPEN_MS + 1000),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_paused_redis_is_degraded_though_connected() {
    let Some(redis) = RedisServer::start("l2 readiness pause") else {
        return;
    };
    let app = spawn_app_with(with_fast_probe(&redis)).await;
    wait_until_redis_ok(&app).await;
    let admin = redis.admin().await;
    admin
        .client_pause(3000, Some(ClientPauseKind::All))
        .await
        .expect("CLIENT PAUSE");
    // Connections stay up and no traffic fails: only the probe's PING, unanswered within
    // the command timeout, can tell.
    time_until_redis_is(&app, "degraded", Duration::from_secs(3)).await;
    time_until_redis_is(&app, "ok", Duration::from_secs(10)).await;
    admin.quit().await.expect("quit");
}
