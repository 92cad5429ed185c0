//! What the API accepts can always be read back: no input stores a row that a later
//! read, redirect or listing cannot decode, and no input (of any JSON shape) gets a 5xx.

use serde_json::{Value, json};

use crate::helpers::{error_code, link, spawn_app};

#[path = "../support/generated.rs"]
mod generated;

#[tokio::test]
async fn an_expiry_past_year_9999_in_utc_is_refused_and_the_list_still_works() {
    let app = spawn_app().await;
    // Year 9999 at -00:01 is year 10000 in UTC: it used to be stored and then poison
    // every read of the link and every listing that reached it.
    for expires_at in [
        "9999-12-31T23:59:59-00:01",
        "9999-12-31T23:59:59.9999-23:59",
    ] {
        let response = app
            .create(json!({"url": "https://example.com/p", "expires_at": expires_at}))
            .await;
        assert_eq!(response.status(), 422, "{expires_at}");
        assert_eq!(error_code(response).await, "invalid_expires_at");
    }
    // The last millisecond of year 9999 is fine, and comes back in UTC.
    let response = app
        .create(json!({"url": "https://example.com/p", "expires_at": "9999-12-31T23:59:59.999999+00:00"}))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["expires_at"], "9999-12-31T23:59:59.999Z");
    let listed = app.get("/api/v1/links").await;
    assert_eq!(listed.status(), 200);
}

#[tokio::test]
async fn an_expiry_is_answered_in_utc_as_every_later_read_shows_it() {
    let app = spawn_app().await;
    let response = app
        .create(json!({"url": "https://example.com/", "expires_at": "2099-06-01T12:00:00.123456+02:00"}))
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["expires_at"], "2099-06-01T10:00:00.123Z");
    let code = created["code"].as_str().expect("code");
    let read: Value = app
        .get(&format!("/api/v1/links/{code}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read, created);
}

#[tokio::test]
async fn max_clicks_above_what_every_store_keeps_is_refused() {
    let app = spawn_app().await;
    let too_many = (i64::MAX as u64) + 1;
    let response = app
        .create(json!({"url": "https://example.com/", "max_clicks": too_many}))
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(error_code(response).await, "invalid_max_clicks");
    let code = app
        .create_ok(json!({"url": "https://example.com/", "max_clicks": i64::MAX}))
        .await;
    assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
}

#[tokio::test]
async fn a_create_body_that_is_not_a_json_object_is_422() {
    let app = spawn_app().await;
    for body in [
        json!(["https://example.com/"]),
        json!(["https://example.com/", null, null, 302, null]),
        json!("https://example.com/"),
        json!(42),
        json!(null),
    ] {
        let response = app.create(body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(error_code(response).await, "invalid_request", "{body}");
    }
}

#[tokio::test]
async fn a_row_that_cannot_be_decoded_is_skipped_by_listings_counted_and_costs_only_its_link() {
    let app = spawn_app().await;
    let codes: Vec<String> = futures::future::join_all(
        ["aaa-1", "bbb-2", "ccc-3"]
            .map(|alias| app.create_ok(json!({"url": "https://example.com/", "alias": alias}))),
    )
    .await;
    // What the poisoned create used to store: an expiry in year 10000.
    app.store
        .put_raw(
            "bbb-2",
            br#"{"v":1,"url":"https://a.com/","created_ms":0,"expires_ms":253402300859000,"redirect":302}"#,
        )
        .await
        .expect("raw write");
    let page: Value = app
        .get("/api/v1/links?limit=2")
        .await
        .json()
        .await
        .expect("json");
    let listed: Vec<&str> = page["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l["code"].as_str())
        .collect();
    assert_eq!(listed, ["aaa-1", "ccc-3"], "filled past the bad row");
    assert_eq!(page["next_cursor"], "ccc-3");
    // Its own reads fail as before; the others are untouched.
    assert_eq!(app.get("/api/v1/links/bbb-2").await.status(), 503);
    assert_eq!(app.get(&format!("/{}", codes[0])).await.status(), 302);
    assert_eq!(app.get(&format!("/{}", codes[2])).await.status(), 302);
    assert!(
        app.metric("shortener_store_corrupt_rows_skipped_total")
            .await
            >= 1.0,
        "counted (the recorder is shared by this binary's tests: at least ours)"
    );
    // A DELETE clears it.
    assert_eq!(app.delete("/api/v1/links/bbb-2").await.status(), 204);
}

/// Statistics ranges at the edges of time: clamped explicitly (and shown so in the
/// answer), an empty range is 422, and nothing answers 500 or becomes the epoch.
#[tokio::test]
async fn stats_ranges_at_the_edges_of_time_are_clamped_never_500() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/")).await;
    let stats = |query: &'static str| {
        let app = &app;
        let code = code.clone();
        async move {
            let response = app
                .get(&format!("/api/v1/links/{code}/stats?{query}"))
                .await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    // The default `from` of an end in year 0 used to land in year -1: 500.
    let (status, body) = stats("to=0000-01-01T00:00:00Z").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    let (status, body) = stats("from=0000-01-01T00:00:00%2B00:01&to=2024-01-01T00:00:00Z").await;
    assert_eq!(status, 422, "ten years at most by day: {body}");
    let (status, body) = stats("from=0000-01-01T00:00:00%2B00:01&to=1970-01-02T00:00:00Z").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["from"], "1970-01-01T00:00:00Z",
        "clamped to the epoch, and said so"
    );
    let (status, body) = stats("to=9999-12-31T23:59:59Z").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["to"], "9999-12-31T00:00:00Z", "not the epoch");
    assert_eq!(body["from"], "9999-12-01T00:00:00Z");
    let (status, body) = stats("from=9999-12-31T23:59:59-23:59&granularity=hour").await;
    assert_eq!(status, 422, "from after to: {body}");
    let (status, _) = stats("to=9999-12-31T23:59:59-23:59&granularity=hour").await;
    assert_eq!(status, 200);
}

#[test]
fn any_create_body_gets_no_5xx_and_every_201_reads_back_redirects_and_lists() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = runtime.block_on(spawn_app());
    let result = generated::creates_read_back(&app.url(""), 1000);
    runtime.block_on(app.stop());
    let created = result.unwrap_or_else(|failure| panic!("{failure}"));
    // The generator must reach the store, not only the validators.
    assert!(created >= 80, "only {created} of 1000 bodies were created");
}

#[tokio::test]
async fn a_malformed_expiry_names_its_field() {
    let app = spawn_app().await;
    for expires_at in [json!("tomorrow"), json!(1_900_000_000), json!("2030-01-01")] {
        let response = app
            .create(json!({"url": "https://example.com/", "expires_at": expires_at}))
            .await;
        assert_eq!(response.status(), 422, "{expires_at}");
        assert_eq!(
            error_code(response).await,
            "invalid_expires_at",
            "{expires_at}"
        );
    }
    let null = app
        .create(json!({"url": "https://example.com/", "expires_at": null}))
        .await;
    assert_eq!(null.status(), 201, "null is no expiry");
}

#[tokio::test]
async fn a_target_on_this_shortener_is_refused_as_a_redirect_loop() {
    // The test's shortener is on loopback, which the target policy refuses on its own.
    let app = crate::helpers::spawn_app_with(|s| s.targets.allow_private = true).await;
    let code = app.create_ok(link("https://example.com/")).await;
    let response = app
        .create(json!({"url": app.url(&format!("/{code}"))}))
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(error_code(response).await, "invalid_url");
    // The same host on another port is another service.
    let other = format!("http://{}:1/x", app.addr.ip());
    assert_eq!(app.create(json!({ "url": other })).await.status(), 201);
}

#[tokio::test]
async fn every_json_answer_ends_with_a_newline() {
    let app = spawn_app().await;
    let created = app.create(link("https://example.com/")).await;
    assert!(created.text().await.expect("text").ends_with("}\n"));
    for path in [
        "/api/v1/links",
        "/api/v1/links/nope",
        "/nope-nope",
        "/healthz",
        "/readyz",
    ] {
        let text = app.get(path).await.text().await.expect("text");
        assert!(text.ends_with("}\n"), "{path}: {text:?}");
    }
}
