//! Generated create bodies against a running service: any JSON shape, the documented
//! fields at and past their edges, unicode, huge numbers, unknown fields. Every answer
//! must be below 500, and every 201 must read back equal, redirect and be listed.
//! Shared by the API tests (embedded store) and the PostgreSQL tests (real processes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

/// Posts `cases` generated bodies to the service at `base` (`http://host:port`) and
/// checks each answer; the number of links created, or the first failure (shrunk).
/// Blocks: call it from a plain `#[test]`, with the service on another runtime or process.
pub fn creates_read_back(base: &str, cases: u32) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let config = ProptestConfig {
        cases,
        // Failures are shrunk against the live server; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let created = AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&create_body(), |body| {
            runtime.block_on(async {
                let check = check_create(&client, base, body, &created);
                tokio::time::timeout(Duration::from_secs(30), check)
                    .await
                    .expect("answered in time")
            })
        })
        .map_err(|failure| failure.to_string())?;
    Ok(created.load(Ordering::Relaxed))
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
pub fn create_body() -> impl Strategy<Value = Value> {
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
    client: &reqwest::Client,
    base: &str,
    body: Value,
    count: &AtomicUsize,
) -> Result<(), TestCaseError> {
    let get = |path: String| client.get(format!("{base}{path}")).send();
    let response = client
        .post(format!("{base}/api/v1/links"))
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = response.status();
    prop_assert!(!status.is_server_error(), "{status} for {body}");
    if status != 201 {
        return Ok(());
    }
    count.fetch_add(1, Ordering::Relaxed);
    let created: Value = response.json().await.expect("json");
    let code = created["code"].as_str().expect("code");
    let read = get(format!("/api/v1/links/{code}")).await.expect("read");
    prop_assert_eq!(read.status(), 200, "{}", body);
    let read: Value = read.json().await.expect("json");
    prop_assert_eq!(&read, &created, "read back equal: {}", body);
    let redirect = get(format!("/{code}")).await.expect("redirect");
    prop_assert_eq!(
        u64::from(redirect.status().as_u16()),
        created["redirect"].as_u64().unwrap_or(0),
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
    let page = get("/api/v1/links?limit=1000".into()).await.expect("list");
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
