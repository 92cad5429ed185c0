//! Access control and abuse limits on the embedded store: the access matrix, the key
//! API, and the rate limits (GCRA) on the API and on redirect misses.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use shortener::config::{AuthMode, Rate};

use crate::helpers::{TestApp, error_code, link, spawn_app_with};

#[path = "../support/access.rs"]
mod matrix;

async fn with_keys() -> TestApp {
    spawn_app_with(|s| s.auth.mode = AuthMode::Keys).await
}

#[tokio::test]
async fn every_endpoint_answers_each_kind_of_caller_as_the_matrix_says() {
    let app = with_keys().await;
    let (base, admin) = (app.url(""), app.admin_key());
    let api = matrix::Api {
        client: &app.client,
        base: &base,
        admin: &admin,
    };
    matrix::run(&api).await;
}

#[tokio::test]
async fn the_first_start_writes_one_admin_key_to_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let app = with_keys().await;
    let token = app.admin_key();
    assert!(token.starts_with("sk_"), "{token}");
    let path = app.store_dir().join("admin.key");
    let mode = std::fs::metadata(&path).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let keys = app
        .client
        .get(app.url("/api/v1/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("keys");
    assert_eq!(keys.status(), 200);
    let body: serde_json::Value = keys.json().await.expect("json");
    assert_eq!(body["keys"].as_array().expect("keys").len(), 1);
    assert_eq!(body["keys"][0]["owner"], "admin");
    assert_eq!(body["keys"][0]["scopes"], json!(["admin"]));
}

#[tokio::test]
async fn a_new_key_is_validated_and_its_token_works_at_once() {
    let app = with_keys().await;
    let admin = app.admin_key();
    for (body, code) in [
        (
            json!({"owner": "a b", "scopes": ["links:read"]}),
            "invalid_owner",
        ),
        (json!({"owner": "a", "scopes": []}), "invalid_scopes"),
        (
            json!({"owner": "a", "scopes": ["links:delete"]}),
            "invalid_scopes",
        ),
        (json!({"owner": "a"}), "invalid_request"),
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/keys"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("create key");
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(error_code(response).await, code, "{body}");
    }
    let created: serde_json::Value = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"owner": "team-a", "scopes": ["links:write", "links:read"]}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("json");
    let token = created["token"].as_str().expect("token");
    let response = app
        .client
        .post(app.url("/api/v1/links"))
        .bearer_auth(token)
        .json(&link("https://example.com/"))
        .send()
        .await
        .expect("create link");
    assert_eq!(response.status(), 201);
    let unknown = app
        .client
        .delete(app.url("/api/v1/keys/nosuchkeyid0"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke");
    assert_eq!(unknown.status(), 404);
}

/// A client scanning random codes is stopped after its burst, before the store; another
/// client's cached redirects go on untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_unknown_codes_is_limited_while_another_clients_redirects_pass() {
    let app = spawn_app_with(|s| {
        s.limits.enabled = true;
        s.limits.redirect_miss_per_client = Rate {
            per_s: 100,
            burst: 200,
        };
        s.clicks.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    })
    .await;
    let code = app.create_ok(link("https://example.com/hot")).await;
    // Cache it for the second client before the scan starts.
    assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    let gets_before = app.store_gets();

    let scanner = {
        let (client, base) = (app.client.clone(), app.url(""));
        tokio::spawn(async move {
            let (mut limited, mut not_found) = (0u32, 0usize);
            let mut retry_after = None;
            for i in 0..20_000u32 {
                let response = client
                    .get(format!("{base}/scan{i:08x}"))
                    .header("x-forwarded-for", "198.51.100.7")
                    .send()
                    .await
                    .expect("scan");
                match response.status() {
                    StatusCode::TOO_MANY_REQUESTS => {
                        limited += 1;
                        retry_after = response.headers().get("retry-after").cloned();
                    }
                    StatusCode::NOT_FOUND => not_found += 1,
                    other => panic!("unexpected {other}"),
                }
            }
            (limited, not_found, retry_after)
        })
    };
    let mut redirects = 0;
    while !scanner.is_finished() {
        let response = app
            .client
            .get(app.url(&format!("/{code}")))
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .expect("redirect");
        assert_eq!(response.status(), 302, "the other client is never limited");
        redirects += 1;
    }
    let (limited, not_found, retry_after) = scanner.await.expect("scanner");
    assert!(redirects > 0);
    assert!(limited >= 15_000, "{limited} of 20,000 answered 429");
    assert_eq!(limited as usize + not_found, 20_000);
    assert_eq!(retry_after.expect("Retry-After"), "1");
    // Only the requests let through reached the store.
    let reads = app.store_gets() - gets_before;
    assert_eq!(reads, not_found, "a limited request reads nothing");
    let counted = app
        .metric("shortener_rate_limited_total{limit=\"redirect_miss\"}")
        .await;
    assert!(counted >= f64::from(limited), "{counted}");
}

#[tokio::test]
async fn api_requests_past_a_clients_burst_get_429_with_retry_after_and_the_json_error() {
    let app = spawn_app_with(|s| {
        s.limits.enabled = true;
        s.limits.api_per_client = Rate { per_s: 1, burst: 5 };
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(app.get("/api/v1/links").await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let response = app.get("/api/v1/links").await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(error_code(response).await, "rate_limited");
    // Health probes are not management requests and are never limited.
    assert_eq!(app.get("/healthz").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(app.get("/api/v1/links").await.status(), 200, "refilled");
}

#[tokio::test]
async fn each_key_has_its_own_budget() {
    let app = spawn_app_with(|s| {
        s.auth.mode = AuthMode::Keys;
        s.limits.enabled = true;
        s.limits.api_per_key = Rate { per_s: 1, burst: 3 };
    })
    .await;
    let admin = app.admin_key();
    let other: serde_json::Value = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"owner": "b", "scopes": ["links:read"]}))
        .send()
        .await
        .expect("key")
        .json()
        .await
        .expect("json");
    let other = other["token"].as_str().expect("token").to_owned();
    let status = |token: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/api/v1/links"))
                .bearer_auth(token)
                .send()
                .await
                .expect("list")
                .status()
                .as_u16()
        }
    };
    // The admin used one request of its burst making the other key.
    assert_eq!(status(admin.clone()).await, 200);
    assert_eq!(status(admin.clone()).await, 200);
    assert_eq!(status(admin.clone()).await, 429);
    assert_eq!(
        status(other.clone()).await,
        200,
        "another key is not held back"
    );
}
