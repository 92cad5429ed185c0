use std::time::Duration;

use serde_json::json;
use shortener_core::{Link, LinkStore, RedirectKind, ShortCode, TargetUrl};
use time::OffsetDateTime;

use crate::helpers::{error_code, link, spawn_app, spawn_app_with};

async fn seed(
    app: &crate::helpers::TestApp,
    code: &str,
    expires_at: Option<OffsetDateTime>,
    redirect: RedirectKind,
) {
    let link = Link {
        code: ShortCode::parse(code).expect("code"),
        target: TargetUrl::parse("https://example.com/seeded").expect("url"),
        created_at: OffsetDateTime::now_utc() - time::Duration::days(2),
        expires_at,
        redirect,
        max_clicks: None,
        owner: None,
    };
    app.store.insert_if_absent(&link).await.expect("seed");
}

#[tokio::test]
async fn the_default_redirect_is_302_with_an_empty_body() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/x")).await;
    let response = app.get(&format!("/{code}")).await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "https://example.com/x");
    assert!(response.headers().get("cache-control").is_none());
    assert!(response.headers().contains_key("x-request-id"));
    assert!(response.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn each_link_answers_with_its_own_status() {
    let app = spawn_app_with(|s| s.links.permanent_redirect_max_age_s = 600).await;
    for status in [301u16, 302, 307, 308] {
        let code = app
            .create_ok(json!({"url": "https://example.com/", "redirect": status}))
            .await;
        let response = app.get(&format!("/{code}")).await;
        assert_eq!(response.status().as_u16(), status);
        let cache_control = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().expect("ascii").to_owned());
        if status == 301 || status == 308 {
            assert_eq!(cache_control.as_deref(), Some("private, max-age=600"));
        } else {
            assert_eq!(cache_control, None);
        }
    }
}

#[tokio::test]
async fn permanent_redirects_of_expiring_links_are_cached_no_longer_than_the_link_lives() {
    let app = spawn_app_with(|s| s.links.permanent_redirect_max_age_s = 86_400).await;
    let expires = OffsetDateTime::now_utc() + time::Duration::seconds(100);
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let code = app
        .create_ok(json!({"url": "https://example.com/", "redirect": 301, "expires_at": expires}))
        .await;
    let response = app.get(&format!("/{code}")).await;
    let value = response.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let max_age: u64 = value
        .strip_prefix("private, max-age=")
        .expect("format")
        .parse()
        .expect("number");
    assert!((95..=100).contains(&max_age), "{value}");
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/head")).await;
    let response = app
        .client
        .head(app.url(&format!("/{code}")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "https://example.com/head");
    assert!(response.bytes().await.expect("body").is_empty());

    let unknown = app
        .client
        .head(app.url("/missing1"))
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);
    assert!(unknown.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn an_expired_link_returns_410() {
    let app = spawn_app().await;
    seed(
        &app,
        "expired",
        Some(OffsetDateTime::now_utc() - time::Duration::hours(1)),
        RedirectKind::Found,
    )
    .await;
    let response = app.get("/expired").await;
    assert_eq!(response.status(), 410);
    assert_eq!(error_code(response).await, "expired");
    let meta = app.get("/api/v1/links/expired").await;
    assert_eq!(
        meta.status(),
        200,
        "the owner can still see an expired link"
    );
}

#[tokio::test]
async fn a_cached_link_stops_redirecting_when_it_expires() {
    let app = spawn_app().await;
    seed(
        &app,
        "shortlived",
        Some(OffsetDateTime::now_utc() + time::Duration::milliseconds(1_500)),
        RedirectKind::Found,
    )
    .await;
    assert_eq!(app.get("/shortlived").await.status(), 302, "now cached");
    // Wall-clock expiry is the behaviour under test, so this sleeps instead of pausing
    // tokio's clock (which does not move `OffsetDateTime::now_utc`).
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(
        app.get("/shortlived").await.status(),
        410,
        "the cache must not outlive the link"
    );
}

#[tokio::test]
async fn query_strings_are_forwarded_only_when_configured() {
    let off = spawn_app().await;
    let code = off.create_ok(link("https://example.com/a?x=1#frag")).await;
    let response = off.get(&format!("/{code}?utm_source=mail")).await;
    assert_eq!(
        response.headers()["location"],
        "https://example.com/a?x=1#frag"
    );

    let on = spawn_app_with(|s| s.links.forward_query = true).await;
    let code = on.create_ok(link("https://example.com/a?x=1#frag")).await;
    let response = on.get(&format!("/{code}?utm_source=mail")).await;
    assert_eq!(
        response.headers()["location"],
        "https://example.com/a?x=1&utm_source=mail#frag"
    );
    let plain = on.create_ok(link("https://example.com/b")).await;
    let response = on.get(&format!("/{plain}?utm_source=mail")).await;
    assert_eq!(
        response.headers()["location"],
        "https://example.com/b?utm_source=mail"
    );
    let response = on.get(&format!("/{plain}")).await;
    assert_eq!(response.headers()["location"], "https://example.com/b");
}

#[tokio::test]
async fn redirects_work_over_http2() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/h2")).await;
    let client = app.h2_client();
    let response = client
        .get(app.url(&format!("/{code}")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "https://example.com/h2");
}
