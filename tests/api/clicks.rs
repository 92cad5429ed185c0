//! The click pipeline end to end: redirects in, statistics out.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::helpers::{link, spawn_app_with};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// A server whose batcher flushes quickly, trusting loopback as a proxy so each request
/// can claim its own client address (and so count as its own visitor).
async fn spawn() -> crate::helpers::TestApp {
    spawn_app_with(|s| {
        s.clicks.flush_interval_ms = 25.try_into().expect("> 0");
        s.clicks.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
        s.clicks.country_header = "x-country".into();
        s.clicks.visitor_secret = "test".into();
    })
    .await
}

fn top(stats: &Value, dimension: &str) -> Vec<(String, u64)> {
    stats["top"][dimension]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            (
                e["value"].as_str().expect("value").to_owned(),
                e["clicks"].as_u64().expect("clicks"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_redirect_is_counted_and_split_into_humans_bots_and_dimensions() {
    let app = spawn().await;
    let code = app.create_ok(link("https://example.com/counted")).await;
    // 300 redirects: 200 from 100 distinct human visitors, 100 from bots.
    let mut expected_human = 0;
    for i in 0..300u32 {
        let (agent, referrer, country) = match i % 6 {
            0 => (CHROME, Some("https://news.example/a"), "DE"),
            1 => (IPHONE, Some("https://news.example/b"), "US"),
            2 => (FIREFOX, None, "DE"),
            3 => (CHROME, Some("https://mail.example/"), "FR"),
            4 => (SLACK, None, "US"),
            _ => (GOOGLEBOT, None, "US"),
        };
        if i % 6 < 4 {
            expected_human += 1;
        }
        let mut request = app
            .client
            .get(app.url(&format!("/{code}")))
            .header("user-agent", agent)
            .header("x-country", country)
            .header(
                "x-forwarded-for",
                format!("203.0.{}.{}", (i % 100) / 50, i % 50),
            );
        if let Some(referrer) = referrer {
            request = request.header("referer", referrer);
        }
        assert_eq!(request.send().await.expect("redirect").status(), 302);
    }
    // HEAD is not a click.
    app.client
        .head(app.url(&format!("/{code}")))
        .send()
        .await
        .expect("head");
    app.wait_for_clicks(&code, 300).await;

    let stats: Value = app
        .get(&format!("/api/v1/links/{code}/stats"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(stats["totals"]["clicks"], 300);
    assert_eq!(stats["totals"]["human"], expected_human);
    assert_eq!(stats["totals"]["bot"], 300 - expected_human);
    // 100 distinct client addresses; with Chrome/iPhone/Firefox the (address, agent)
    // pairs are the visitors: HyperLogLog must land within a few percent of the truth.
    let unique = stats["totals"]["unique_visitors"].as_u64().expect("unique");
    let truth = {
        let mut pairs = std::collections::HashSet::new();
        for i in 0..300u32 {
            if i % 6 < 4 {
                pairs.insert((i % 100, [CHROME, IPHONE, FIREFOX, CHROME][(i % 6) as usize]));
            }
        }
        pairs.len() as f64
    };
    assert!(
        (unique as f64 - truth).abs() / truth < 0.05,
        "unique {unique}, truth {truth}"
    );
    assert_eq!(
        stats["series"].as_array().expect("series").len(),
        1,
        "all today"
    );
    assert_eq!(stats["series"][0]["clicks"], 300);

    let referrers = top(&stats, "referrer");
    assert_eq!(referrers[0], ("(direct)".to_owned(), 150));
    assert!(referrers.contains(&("news.example".to_owned(), 100)));
    assert!(referrers.contains(&("mail.example".to_owned(), 50)));
    assert_eq!(top(&stats, "country")[0], ("US".to_owned(), 150));
    assert!(top(&stats, "device").contains(&("bot".to_owned(), 100)));
    assert!(
        top(&stats, "browser")
            .iter()
            .any(|(b, n)| b == "Chrome" && *n == 100)
    );

    let hourly: Value = app
        .get(&format!("/api/v1/links/{code}/stats?granularity=hour"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(hourly["totals"]["clicks"], 300);
    assert_eq!(hourly["granularity"], "hour");
}

#[tokio::test]
async fn hostile_referrers_and_user_agents_are_capped_and_stored_safely() {
    let app = spawn().await;
    let code = app.create_ok(link("https://example.com/")).await;
    let ten_kb = "A".repeat(10 * 1024);
    let hostile: Vec<Vec<u8>> = vec![
        ten_kb.clone().into_bytes(),
        b"<script>alert(document.cookie)</script>".to_vec(),
        b"\"; DROP TABLE links; --".to_vec(),
        b"caf\xe9 \xff\xfe invalid utf-8".to_vec(),
        b"tab\there".to_vec(),
    ];
    for value in &hostile {
        let header = reqwest::header::HeaderValue::from_bytes(value).expect("a legal header value");
        let response = app
            .client
            .get(app.url(&format!("/{code}")))
            .header("user-agent", header.clone())
            .header("referer", header)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 302);
    }
    app.wait_for_clicks(&code, hostile.len() as u64).await;
    let response = app.get(&format!("/api/v1/links/{code}/stats?top=50")).await;
    assert_eq!(response.status(), 200);
    let stats: Value = response
        .json()
        .await
        .expect("valid JSON despite hostile input");
    assert_eq!(stats["totals"]["clicks"], hostile.len());
    assert!(
        top(&stats, "referrer")
            .iter()
            .all(|(host, _)| host.len() <= 512)
    );
    assert!(
        top(&stats, "referrer")
            .iter()
            .any(|(host, _)| host == "(invalid)")
    );
}

#[tokio::test]
async fn a_full_queue_drops_clicks_counts_them_and_redirects_still_answer() {
    let app = spawn_app_with(|s| {
        s.clicks.queue_capacity = 2.try_into().expect("> 0");
        s.clicks.batch_max = 1.try_into().expect("> 0");
        s.clicks.flush_interval_ms = 25.try_into().expect("> 0");
        // Room for one link-day in memory: a stuck store write then stops the batcher.
        s.stats.max_pending_cells = 1.try_into().expect("> 0");
    })
    .await;
    let code = app.create_ok(link("https://example.com/")).await;
    // Hold the batcher inside a flush so the queue cannot drain.
    app.store.apply_delay_ms.store(1_000, Ordering::SeqCst);
    let dropped_before = app
        .metric(r#"shortener_clicks_dropped_total{reason="queue_full"}"#)
        .await;
    for _ in 0..20 {
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    }
    let dropped = app
        .metric(r#"shortener_clicks_dropped_total{reason="queue_full"}"#)
        .await
        - dropped_before;
    // At most one click in the stuck store write, one pending in memory, one in the
    // publish waiting for room, and two in the queue; the rest are dropped.
    assert!(dropped >= 15.0, "dropped {dropped}");
}

#[tokio::test]
async fn listing_links_with_totals_is_one_store_call_not_n_plus_one() {
    let app = spawn().await;
    let mut codes = Vec::new();
    for i in 0..20 {
        codes.push(
            app.create_ok(json!({"url": "https://example.com/", "alias": format!("list-{i:02}")}))
                .await,
        );
    }
    app.get("/list-03").await;
    app.get("/list-03").await;
    app.wait_for_clicks("list-03", 2).await;

    let (lists, totals) = (
        app.store.lists.load(Ordering::SeqCst),
        app.store.totals_calls.load(Ordering::SeqCst),
    );
    let page: Value = app
        .get("/api/v1/links?limit=15")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        app.store.lists.load(Ordering::SeqCst) - lists,
        1,
        "one store call for the page"
    );
    assert_eq!(
        app.store.totals_calls.load(Ordering::SeqCst) - totals,
        0,
        "no per-link totals query"
    );

    let links = page["links"].as_array().expect("links");
    assert_eq!(links.len(), 15);
    assert_eq!(links[3]["code"], "list-03");
    assert_eq!(links[3]["clicks"], 2);
    assert_eq!(links[0]["clicks"], 0);
    let cursor = page["next_cursor"].as_str().expect("more pages");
    let rest: Value = app
        .get(&format!("/api/v1/links?limit=15&cursor={cursor}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(rest["links"].as_array().expect("links").len(), 5);
    assert_eq!(rest["next_cursor"], Value::Null);
}

#[tokio::test]
async fn bad_stats_and_list_parameters_are_422_and_unknown_links_404() {
    let app = spawn().await;
    let code = app.create_ok(link("https://example.com/")).await;
    for query in [
        "granularity=week",
        "from=yesterday",
        "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "from=2000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&granularity=hour",
        "top=0",
        "bogus=1",
    ] {
        let response = app
            .get(&format!("/api/v1/links/{code}/stats?{query}"))
            .await;
        assert_eq!(response.status(), 422, "{query}");
        assert_eq!(crate::helpers::error_code(response).await, "invalid_query");
    }
    for query in ["limit=0", "limit=5000", "limit=x", "cursor=a/b", "bogus=1"] {
        assert_eq!(
            app.get(&format!("/api/v1/links?{query}")).await.status(),
            422,
            "{query}"
        );
    }
    assert_eq!(app.get("/api/v1/links/nope123/stats").await.status(), 404);
}

#[tokio::test]
async fn max_clicks_is_exact_under_concurrency_and_head_does_not_count() {
    let app = spawn().await;
    let code = app
        .create_ok(json!({"url": "https://example.com/", "max_clicks": 10}))
        .await;
    for _ in 0..5 {
        let head = app
            .client
            .head(app.url(&format!("/{code}")))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 302, "HEAD is not a click");
    }
    let url = app.url(&format!("/{code}"));
    let requests: Vec<_> = (0..50)
        .map(|_| tokio::spawn(app.client.get(&url).send()))
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(
            request
                .await
                .expect("task")
                .expect("request")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 302).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|&&s| s == 410).count(), 40);
    let gone = app.get(&format!("/{code}")).await;
    assert_eq!(gone.status(), 410);
    assert_eq!(crate::helpers::error_code(gone).await, "exhausted");
    let link = app.wait_for_clicks(&code, 10).await;
    assert_eq!(link["max_clicks"], 10);
}

#[tokio::test]
async fn max_clicks_must_be_positive() {
    let app = spawn().await;
    let response = app
        .create(json!({"url": "https://example.com/", "max_clicks": 0}))
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        crate::helpers::error_code(response).await,
        "invalid_max_clicks"
    );
    assert_eq!(
        app.create(json!({"url": "https://example.com/", "max_clicks": -1}))
            .await
            .status(),
        422
    );
}

#[tokio::test]
async fn deleting_a_link_resets_its_statistics_for_a_reused_alias() {
    let app = spawn().await;
    app.create_ok(json!({"url": "https://example.com/", "alias": "reused", "max_clicks": 2}))
        .await;
    app.get("/reused").await;
    app.get("/reused").await;
    assert_eq!(app.get("/reused").await.status(), 410);
    app.wait_for_clicks("reused", 2).await;
    assert_eq!(app.delete("/api/v1/links/reused").await.status(), 204);
    app.create_ok(json!({"url": "https://example.com/", "alias": "reused", "max_clicks": 2}))
        .await;
    let link: Value = app
        .get("/api/v1/links/reused")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(link["clicks"], 0);
    assert_eq!(app.get("/reused").await.status(), 302, "a fresh budget");
}

/// The long tail, small: 20,000 redirects over 5,000 links, Zipf-distributed (a few
/// links get thousands of clicks, most get one or none), each from its own client
/// address. Every click must be in the statistics, exactly, and none dropped: the sum of
/// the listed totals is the number of redirects, link by link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_tail_of_links_is_counted_exactly_with_nothing_dropped() {
    const LINKS: usize = 5_000;
    const CLICKS: usize = 20_000;
    let app = spawn_app_with(|s| {
        s.clicks.flush_interval_ms = 50.try_into().expect("> 0");
        s.stats.flush_interval_ms = 100.try_into().expect("> 0");
        s.clicks.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
        s.clicks.visitor_secret = "test".into();
    })
    .await;
    let created_at = time::OffsetDateTime::now_utc();
    let links = (0..LINKS)
        .map(|i| shortener_core::Link {
            code: shortener_core::ShortCode::parse(&format!("tail{i:04}")).expect("code"),
            target: shortener_core::TargetUrl::parse("https://example.com/").expect("url"),
            created_at,
            expires_at: None,
            redirect: shortener_core::RedirectKind::Found,
            max_clicks: None,
            owner: None,
        })
        .collect();
    assert_eq!(app.store.seed(links).await, LINKS);

    // Zipf(1.0) by inverse transform over the harmonic CDF, with a fixed-seed LCG.
    let cdf: Vec<f64> = (1..=LINKS)
        .scan(0.0, |sum, k| {
            *sum += 1.0 / k as f64;
            Some(*sum)
        })
        .collect();
    let total = cdf[LINKS - 1];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut expected = vec![0u64; LINKS];
    let targets: Vec<usize> = (0..CLICKS)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 * total;
            let rank = cdf.partition_point(|&c| c < u).min(LINKS - 1);
            expected[rank] += 1;
            rank
        })
        .collect();
    assert!(expected[0] > 1_000, "a hot head");
    let clicked_once = expected.iter().filter(|&&n| n == 1).count();
    assert!(
        clicked_once > 1_000,
        "a long tail of single clicks: {clicked_once}"
    );

    let chunks: Vec<Vec<(usize, usize)>> = targets
        .into_iter()
        .enumerate()
        .collect::<Vec<_>>()
        .chunks(CLICKS / 16)
        .map(<[_]>::to_vec)
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (client, base) = (app.client.clone(), app.url(""));
            tokio::spawn(async move {
                for (i, rank) in chunk {
                    let response = client
                        .get(format!("{base}/tail{rank:04}"))
                        .header("user-agent", CHROME)
                        .header(
                            "x-forwarded-for",
                            format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                        )
                        .send()
                        .await
                        .expect("redirect");
                    assert_eq!(response.status(), 302);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }

    // Page through every link with its total until all clicks are in (the writer runs
    // every 100 ms); then compare link by link.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let counted = loop {
        let mut counted = vec![0u64; LINKS];
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/links?limit=1000&cursor={c}"),
                None => "/api/v1/links?limit=1000".to_owned(),
            };
            let page: Value = app.get(&path).await.json().await.expect("json");
            for link in page["links"].as_array().expect("links") {
                let code = link["code"].as_str().expect("code");
                let rank: usize = code["tail".len()..].parse().expect("rank");
                counted[rank] = link["clicks"].as_u64().expect("clicks");
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        if counted.iter().sum::<u64>() == CLICKS as u64 {
            break counted;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "statistics stuck at {} of {CLICKS} clicks",
            counted.iter().sum::<u64>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(counted, expected, "every link's total is exact");

    // Each click came from its own address: below the exact limit uniques are exact,
    // above it (the head) within the sketch's bound.
    for rank in [0, 10, 100, 1_000] {
        let stats: Value = app
            .get(&format!(
                "/api/v1/links/tail{rank:04}/stats?granularity=day"
            ))
            .await
            .json()
            .await
            .expect("json");
        let uniques = stats["totals"]["unique_visitors"]
            .as_u64()
            .expect("uniques");
        let truth = expected[rank];
        if truth <= shortener_core::visitors::EXACT_LIMIT as u64 {
            assert_eq!(uniques, truth, "rank {rank}");
        } else {
            let error = (uniques as f64 - truth as f64).abs() / truth as f64;
            assert!(error < 0.07, "rank {rank}: {uniques} for {truth}");
        }
    }
}
