//! The service on PostgreSQL, as deployed: real `shortener` processes sharing one real
//! database. Several instances see each other's links, deletes, statistics and click
//! budgets; and a create acknowledged before a SIGKILL is there afterwards.
//!
//! Needs the `postgres` feature (the README's test command enables every feature) and
//! PostgreSQL's binaries (skipped loudly without them; CI fails instead).
#![cfg(feature = "postgres")]

use std::time::Duration;

use serde_json::{Value, json};

use shortener_testkit::postgres as cluster;
#[path = "support/access.rs"]
mod matrix;
#[path = "support/process.rs"]
mod process;
use process::Server;

/// A fresh, migrated database for one test, or `None` (skipped) without PostgreSQL.
async fn database(test: &str) -> Option<String> {
    let cluster = cluster::cluster(test)?;
    let url = cluster.fresh_database().await;
    process::migrate_postgres(&url);
    Some(url)
}

/// An instance on the database at `url`, with `env` on top.
fn instance(url: &str, env: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("APP__STORE__BACKEND", "postgres"),
        ("APP__STORE__POSTGRES__URL", url),
        ("APP__STATS__FLUSH_INTERVAL_MS", "50"),
    ];
    all.extend_from_slice(env);
    Server::start(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_links_deletes_and_statistics() {
    let Some(url) = database("two_instances_share_links_deletes_and_statistics").await else {
        return;
    };
    let (mut a, mut b) = (instance(&url, &[]), instance(&url, &[]));
    let created = a
        .create(json!({"url": "https://example.com/shared", "alias": "shared"}))
        .await;
    assert_eq!(created["code"], "shared");

    // B has never seen the link: its redirect and its API read come from the database.
    for _ in 0..3 {
        assert_eq!(b.status("/shared").await, 302);
    }
    assert_eq!(b.link("shared").await["url"], "https://example.com/shared");
    // Clicks recorded by B are statistics A serves.
    let mut clicks = Value::Null;
    for _ in 0..100 {
        clicks = a.link("shared").await["clicks"].clone();
        if clicks == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(clicks, 3, "B's clicks, read on A");
    // An alias taken on A is taken on B.
    let taken = b
        .client
        .post(b.url("/api/v1/links"))
        .json(&json!({"url": "https://example.com/other", "alias": "shared"}))
        .send()
        .await
        .expect("create");
    assert_eq!(taken.status(), 409);

    let deleted = b
        .client
        .delete(b.url("/api/v1/links/shared"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    let on_a = a
        .client
        .get(a.url("/api/v1/links/shared"))
        .send()
        .await
        .expect("get");
    assert_eq!(on_a.status(), 404, "deleted on B, gone on A");
    a.terminate();
    b.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clicks_is_exact_across_instances_without_redis() {
    let Some(url) = database("max_clicks_is_exact_across_instances_without_redis").await else {
        return;
    };
    let instances = [
        instance(&url, &[]),
        instance(&url, &[]),
        instance(&url, &[]),
    ];
    instances[0]
        .create(json!({"url": "https://example.com/once", "alias": "fivetimes", "max_clicks": 5}))
        .await;
    // 60 racing clicks, spread over three instances: each instance alone would allow 5.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let server = &instances[i % instances.len()];
            let (client, url) = (server.client.clone(), server.url("/fivetimes"));
            tokio::spawn(async move {
                client
                    .get(url)
                    .send()
                    .await
                    .expect("redirect")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("join"));
    }
    let redirected = statuses.iter().filter(|s| **s == 301 || **s == 302).count();
    let gone = statuses.iter().filter(|s| **s == 410).count();
    assert_eq!((redirected, gone), (5, 55), "{statuses:?}");
    for mut server in instances {
        server.terminate();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_link_survives_sigkill_on_postgres() {
    let Some(url) = database("every_acknowledged_link_survives_sigkill_on_postgres").await else {
        return;
    };
    let mut server = instance(&url, &[]);
    let acknowledged = server.create_until_killed(1500).await;
    let mut restarted = instance(&url, &[]);
    restarted.assert_links(&acknowledged).await;
    restarted.terminate();
}

#[path = "support/generated.rs"]
mod generated;

/// The API property test of `tests/api/accepted.rs` against a real process on
/// PostgreSQL: whatever the API accepts, this backend stores and reads back too.
#[test]
fn any_create_body_gets_no_5xx_and_every_201_reads_back_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(url) = runtime.block_on(database("generated_creates")) else {
        return;
    };
    let server = instance(&url, &[]);
    let created = generated::creates_read_back(&server.url(""), 300)
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert!(created >= 20, "only {created} of 300 bodies were created");
}

/// The access matrix on PostgreSQL, and keys shared by two instances: a key made on one
/// works on the other, and a revocation reaches the other within its key cache time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_owners_hold_across_instances_on_postgres() {
    let Some(url) = database("keys_and_owners_hold_across_instances_on_postgres").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admin.key").display().to_string();
    let env = [
        ("APP__AUTH__MODE", "keys"),
        ("APP__AUTH__BOOTSTRAP_KEY_FILE", file.as_str()),
        ("APP__AUTH__KEY_CACHE_TTL_MS", "200"),
    ];
    let a = instance(&url, &env);
    let b = instance(&url, &env);
    let admin = std::fs::read_to_string(&file)
        .expect("the key file")
        .trim()
        .to_owned();
    let base = a.url("");
    let on_a = matrix::Api {
        client: &a.client,
        base: &base,
        admin: &admin,
    };
    matrix::run(&on_a).await;

    let (id, token) = on_a.key("team-c", &["links:write", "links:read"]).await;
    let code = on_a.link(&token).await;
    let base_b = b.url("");
    let on_b = matrix::Api {
        client: &b.client,
        base: &base_b,
        admin: &admin,
    };
    let path = format!("/api/v1/links/{code}");
    let (status, _) = on_b
        .send(reqwest::Method::GET, &path, Some(&token), None)
        .await;
    assert_eq!(
        status, 200,
        "a key and its link, seen by the other instance"
    );
    let (status, _) = on_a
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = on_b
        .send(reqwest::Method::GET, &path, Some(&token), None)
        .await;
    assert_eq!(
        status, 401,
        "revoked on A, refused by B after its cache time: {body}"
    );
}
