//! What the API accepts can always be read back: no input stores a row that a later
//! read, redirect or listing cannot decode, and no input (of any JSON shape) gets a 5xx.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, link, spawn_app};

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

/// A JSON value for one field: mostly plausible values at the edges, sometimes anything.
fn field(
    plausible: impl Strategy<Value = Value> + 'static,
) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        10 => plausible.prop_map(Some),
        6 => Just(None),
        1 => any_json().prop_map(Some),
    ]
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::hash_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An RFC 3339 instant anywhere in `time`'s years, at any offset, with any precision.
fn instant() -> impl Strategy<Value = Value> {
    (
        prop_oneof![1 => 0u32..=9999, 3 => 2030u32..2100, 2 => 9998u32..=9999],
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        prop_oneof![Just(String::new()), "\\.[0-9]{1,9}"],
        prop_oneof![
            Just("Z".to_owned()),
            "[+-](0[0-9]|1[0-9]|2[0-3]):[0-5][0-9]"
        ],
    )
        .prop_map(|(y, mo, d, h, mi, frac, offset)| {
            Value::from(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:59{frac}{offset}"
            ))
        })
}

/// A create body: the documented fields with values at and past their edges, unicode,
/// huge numbers, unknown fields; or any JSON at all.
fn create_body() -> impl Strategy<Value = Value> {
    let url = prop_oneof![
        6 => "https://[a-z]{1,12}\\.(com|org|xn--p1ai)/[\\PC]{0,40}".prop_map(Value::from),
        1 => "(http|https|ftp|javascript)://[\\PC]{0,30}".prop_map(Value::from),
        2 => (0usize..2200).prop_map(|n| Value::from(format!("https://example.com/{}", "é".repeat(n / 2)))),
        1 => "[0-9.]{7,15}".prop_map(|host| Value::from(format!("http://{host}/"))),
    ];
    let alias = prop_oneof![
        4 => "[A-Za-z0-9_-]{3,70}".prop_map(Value::from),
        1 => "[\\PC]{0,10}".prop_map(Value::from),
    ];
    let redirect = prop_oneof![
        6 => prop_oneof![Just(301), Just(302), Just(307), Just(308)].prop_map(Value::from),
        1 => (0i64..70000).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
    ];
    let max_clicks = prop_oneof![
        6 => prop_oneof![
            1 => Just(0u64),
            4 => 1u64..1000,
            2 => Just(i64::MAX as u64),
            1 => Just(i64::MAX as u64 + 1),
            1 => Just(u64::MAX)
        ]
        .prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(json!(1e300)),
        1 => Just(json!(2.5)),
    ];
    // The URL is required: mostly there, so that the other fields get tested too.
    let url = prop_oneof![
        20 => url.prop_map(Some),
        1 => Just(None),
        1 => any_json().prop_map(Some),
    ];
    let object = (
        url,
        field(alias),
        field(instant()),
        field(redirect),
        field(max_clicks),
        prop::option::weighted(0.1, any_json()),
    )
        .prop_map(|(url, alias, expires_at, redirect, max_clicks, extra)| {
            let mut body = serde_json::Map::new();
            for (key, value) in [
                ("url", url),
                ("alias", alias),
                ("expires_at", expires_at),
                ("redirect", redirect),
                ("max_clicks", max_clicks),
                ("extra", extra),
            ] {
                if let Some(value) = value {
                    body.insert(key.to_owned(), value);
                }
            }
            Value::Object(body)
        });
    prop_oneof![9 => object, 1 => any_json()]
}

/// One generated create: never a 5xx; a 201 reads back equal, redirects, and lists.
async fn check_create(
    app: &TestApp,
    body: Value,
    count: &AtomicUsize,
) -> Result<(), TestCaseError> {
    let response = app.create(body.clone()).await;
    let status = response.status();
    prop_assert!(!status.is_server_error(), "{status} for {body}");
    if status != 201 {
        return Ok(());
    }
    count.fetch_add(1, Ordering::Relaxed);
    let created: Value = response.json().await.expect("json");
    let code = created["code"].as_str().expect("code");
    let read = app.get(&format!("/api/v1/links/{code}")).await;
    prop_assert_eq!(read.status(), 200, "{}", body);
    let read: Value = read.json().await.expect("json");
    prop_assert_eq!(&read, &created, "read back equal: {}", body);
    let redirect = app.get(&format!("/{code}")).await;
    prop_assert_eq!(
        redirect.status().as_u16(),
        u16::try_from(created["redirect"].as_u64().unwrap_or(0)).unwrap_or(0),
        "{}",
        body
    );
    prop_assert_eq!(
        redirect
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        created["url"].as_str()
    );
    let page = app.get("/api/v1/links?limit=1000").await;
    prop_assert_eq!(page.status(), 200);
    let page: Value = page.json().await.expect("json");
    let listed = page["links"]
        .as_array()
        .expect("links")
        .iter()
        .any(|l| l["code"] == created["code"]);
    prop_assert!(listed, "{} not listed", code);
    Ok(())
}

#[test]
fn any_create_body_gets_no_5xx_and_every_201_reads_back_redirects_and_lists() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = runtime.block_on(spawn_app());
    let config = ProptestConfig {
        cases: 1000,
        // Failures are shrunk against the live server; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let created = AtomicUsize::new(0);
    let result = runner.run(&create_body(), |body| {
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), check_create(&app, body, &created))
                .await
                .expect("answered in time")
        })
    });
    let created = created.load(Ordering::Relaxed);
    runtime.block_on(app.stop());
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The generator must reach the store, not only the validators.
    assert!(created >= 80, "only {created} of 1000 bodies were created");
}
