//! The access matrix: every management endpoint, asked with no key, a malformed one, an
//! unknown one, a wrong secret, a revoked one, a key without the scope, another owner's
//! key, the owner's and an admin's, and the status and error code each must get. Shared
//! by the tests that run it on each backend (included with `#[path]`).
#![allow(dead_code)]

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// A management API at `base` (`http://host:port`), driven with `admin`'s token.
pub struct Api<'a> {
    pub client: &'a Client,
    pub base: &'a str,
    pub admin: &'a str,
}

impl Api<'_> {
    /// Sends a request with `token` (`None`: no Authorization header; a token that
    /// contains a space is sent as the whole header value).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            let value = if token.contains(' ') {
                token.to_owned()
            } else {
                format!("Bearer {token}")
            };
            request = request.header("authorization", value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Makes a key as the admin; returns (id, token).
    pub async fn key(&self, owner: &str, scopes: &[&str]) -> (String, String) {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v1/keys",
                Some(self.admin),
                Some(json!({"owner": owner, "scopes": scopes})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["token"].as_str().expect("token").to_owned(),
        )
    }

    /// Creates a link with `token`; returns its code.
    pub async fn link(&self, token: &str) -> String {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v1/links",
                Some(token),
                Some(json!({"url": "https://example.com/owned"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["code"].as_str().expect("code").to_owned()
    }
}

fn code_of(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Runs the matrix; returns every token it made (for the test that looks for them in
/// logs and metrics).
pub async fn run(api: &Api<'_>) -> Vec<String> {
    let (_, owner_a) = api
        .key("team-a", &["links:write", "links:read", "stats:read"])
        .await;
    let (_, owner_b) = api
        .key("team-b", &["links:write", "links:read", "stats:read"])
        .await;
    let (_, read_only) = api.key("team-a", &["links:read"]).await;
    let (revoked_id, revoked) = api.key("team-a", &["links:write", "links:read"]).await;
    let (status, _) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/keys/{revoked_id}"),
            Some(api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (id_a, _) = api.key("team-a", &["links:read"]).await;
    let wrong_secret = format!("sk_{id_a}_{}", "A".repeat(32));
    let unknown = format!("sk_{}_{}", "Z".repeat(12), "A".repeat(32));

    let link_a = api.link(&owner_a).await;
    let link_b = api.link(&owner_b).await;

    // (method, path, body, the scope-less key, whether another owner's key gets 404)
    let endpoints: Vec<(Method, String, Option<Value>, bool)> = vec![
        (
            Method::POST,
            "/api/v1/links".into(),
            Some(json!({"url": "https://example.com/m"})),
            false,
        ),
        (Method::GET, "/api/v1/links".into(), None, false),
        (Method::GET, format!("/api/v1/links/{link_a}"), None, true),
        (
            Method::GET,
            format!("/api/v1/links/{link_a}/stats"),
            None,
            true,
        ),
        (
            Method::DELETE,
            format!("/api/v1/links/{link_a}"),
            None,
            true,
        ),
        (Method::GET, "/api/v1/keys".into(), None, false),
        (
            Method::POST,
            "/api/v1/keys".into(),
            Some(json!({"owner": "x", "scopes": ["links:read"]})),
            false,
        ),
        (
            Method::DELETE,
            format!("/api/v1/keys/{revoked_id}"),
            None,
            false,
        ),
    ];
    for (method, path, body, owned) in &endpoints {
        let ask = |token: Option<String>| {
            let (method, body) = (method.clone(), body.clone());
            async move { api.send(method, path, token.as_deref(), body).await }
        };
        let case = |what: &str| format!("{method} {path} with {what}");
        for (token, status, code) in [
            (None, 401, "missing_key"),
            (Some("Bearer nope".to_owned()), 401, "malformed_key"),
            (Some("Basic dXNlcjpwYXNz".to_owned()), 401, "malformed_key"),
            (Some(unknown.clone()), 401, "unknown_key"),
            (Some(wrong_secret.clone()), 401, "unknown_key"),
            (Some(revoked.clone()), 401, "key_revoked"),
        ] {
            let (got, answer) = ask(token.clone()).await;
            assert_eq!(got.as_u16(), status, "{}: {answer}", case(code));
            assert_eq!(code_of(&answer), code, "{}", case(code));
        }
        // A key without the scope: admin endpoints for an owner's key, writes and
        // statistics for a read-only key.
        let scopeless = if path.starts_with("/api/v1/keys") {
            &owner_a
        } else {
            &read_only
        };
        let needs_more =
            path.starts_with("/api/v1/keys") || *method != Method::GET || path.ends_with("/stats");
        if needs_more {
            let (got, answer) = ask(Some(scopeless.clone())).await;
            assert_eq!(got, StatusCode::FORBIDDEN, "{}: {answer}", case("no scope"));
            assert_eq!(code_of(&answer), "insufficient_scope");
        }
        if *owned {
            let (got, answer) = ask(Some(owner_b.clone())).await;
            assert_eq!(
                got,
                StatusCode::NOT_FOUND,
                "{}: {answer}",
                case("another owner's key")
            );
            assert_eq!(code_of(&answer), "not_found");
        }
    }

    // The owner and an admin get through (the deletes last: they remove what they ask).
    for token in [&owner_a, api.admin] {
        let (got, _) = api
            .send(
                Method::GET,
                &format!("/api/v1/links/{link_a}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(got, StatusCode::OK);
        let (got, _) = api
            .send(
                Method::GET,
                &format!("/api/v1/links/{link_a}/stats"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(got, StatusCode::OK);
    }
    let listed = |body: Value| -> Vec<String> {
        body["links"]
            .as_array()
            .expect("links")
            .iter()
            .map(|l| l["code"].as_str().expect("code").to_owned())
            .collect()
    };
    let (_, of_a) = api
        .send(
            Method::GET,
            "/api/v1/links?limit=1000",
            Some(&owner_a),
            None,
        )
        .await;
    let of_a = listed(of_a);
    assert!(
        of_a.contains(&link_a) && !of_a.contains(&link_b),
        "{of_a:?}"
    );
    let (_, all) = api
        .send(
            Method::GET,
            "/api/v1/links?limit=1000",
            Some(api.admin),
            None,
        )
        .await;
    let all = listed(all);
    assert!(all.contains(&link_a) && all.contains(&link_b), "{all:?}");
    let (got, keys) = api
        .send(Method::GET, "/api/v1/keys", Some(api.admin), None)
        .await;
    assert_eq!(got, StatusCode::OK);
    let listed_keys = keys.to_string();
    assert!(
        !listed_keys.contains(&owner_a[15..]),
        "a listing shows no secret"
    );
    assert!(listed_keys.contains(&revoked_id) && listed_keys.contains("revoked_at"));

    let (got, _) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/links/{link_a}"),
            Some(&owner_a),
            None,
        )
        .await;
    assert_eq!(got, StatusCode::NO_CONTENT, "the owner deletes its link");
    let (got, _) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/links/{link_b}"),
            Some(api.admin),
            None,
        )
        .await;
    assert_eq!(got, StatusCode::NO_CONTENT, "an admin deletes anyone's");
    // Redirects stay public.
    let code = api.link(&owner_a).await;
    let redirect = api
        .client
        .get(format!("{}/{code}", api.base))
        .send()
        .await
        .expect("redirect");
    assert_eq!(redirect.status(), StatusCode::FOUND);
    vec![owner_a, owner_b, read_only, revoked]
}
