//! The OpenAPI document (docs/openapi.json, served at /api/v1/openapi.json) against the
//! router: every documented path and method is answered by a handler, every method the
//! document leaves out is 405, and every route the router knows is documented.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;
use shortener::http::router::Route;

use crate::helpers::spawn_app;

const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

#[tokio::test]
async fn the_served_document_is_openapi_3_1_and_matches_the_router() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.expect("json");
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");

    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = Route::ALL
        .iter()
        .filter(|route| **route != Route::Unmatched)
        .map(|route| route.template())
        .collect();
    assert_eq!(
        documented, routed,
        "documented paths = the router's templates"
    );

    let link = app
        .create_ok(crate::helpers::link("https://example.com/"))
        .await;
    for (template, item) in paths {
        let path = template
            .replace("{code}", &link)
            .replace("{id}", "nosuchkeyid0");
        assert_eq!(Route::classify(&path).0.template(), template, "{path}");
        for method in METHODS {
            let name = method.as_str().to_ascii_lowercase();
            let response = app
                .client
                .request(method.clone(), app.url(&path))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            if item.get(&name).is_some() {
                assert_ne!(status, 405, "{method} {template} is documented");
                let documented = item[&name]["responses"]
                    .as_object()
                    .expect("responses")
                    .contains_key(&status.to_string());
                assert!(
                    documented,
                    "{method} {template} answered an undocumented {status}"
                );
            } else {
                assert_eq!(status, 405, "{method} {template} is not documented");
                assert!(response.headers().contains_key("allow"));
            }
        }
    }
}
