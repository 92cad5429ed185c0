use serde_json::{Value, json};

use crate::helpers::{error_code, link, spawn_app};

#[tokio::test]
async fn create_redirect_delete_then_404() {
    let app = spawn_app().await;
    let code = app.create_ok(link("https://example.com/landing")).await;

    let redirect = app.get(&format!("/{code}")).await;
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        redirect.headers()["location"],
        "https://example.com/landing"
    );

    let deleted = app.delete(&format!("/api/v1/links/{code}")).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get(&format!("/{code}")).await.status(), 404);
    assert_eq!(
        app.get(&format!("/api/v1/links/{code}")).await.status(),
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/links/{code}")).await.status(),
        404
    );
}

#[tokio::test]
async fn create_answers_the_documented_fields() {
    let app = spawn_app().await;
    let response = app
        .create(json!({
            "url": "https://Example.com/a?b=1",
            "alias": "docs-example",
            "expires_at": "2099-01-01T00:00:00Z",
            "redirect": 308
        }))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/v1/links/docs-example");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "docs-example");
    assert_eq!(body["url"], "https://example.com/a?b=1", "normalised");
    assert_eq!(
        body["short_url"],
        format!("http://{}/docs-example", app.addr)
    );
    assert_eq!(body["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(body["redirect"], 308);
    assert!(
        body["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let fetched: Value = app
        .get("/api/v1/links/docs-example")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(fetched, body, "GET returns exactly what create answered");
}

#[tokio::test]
async fn generated_codes_are_seven_base62_characters_by_default() {
    let app = spawn_app().await;
    for _ in 0..20 {
        let code = app.create_ok(link("https://example.com/")).await;
        assert_eq!(code.len(), 7);
        assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code}");
    }
}

#[tokio::test]
async fn code_length_and_alphabet_follow_config() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.links.code_length = 12;
        s.links.code_alphabet = "abcdefghijklmnop".into();
    })
    .await;
    let code = app.create_ok(link("https://example.com/")).await;
    assert_eq!(code.len(), 12);
    assert!(code.bytes().all(|b| (b'a'..=b'p').contains(&b)), "{code}");
}

#[tokio::test]
async fn short_url_uses_the_configured_public_base() {
    let app =
        crate::helpers::spawn_app_with(|s| s.http.public_base_url = "https://sho.rt/".into()).await;
    let body: Value = app
        .create(json!({"url": "https://example.com/", "alias": "base"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["short_url"], "https://sho.rt/base");
}

#[tokio::test]
async fn a_colliding_generated_code_is_redrawn() {
    let app = spawn_app().await;
    app.store
        .collide_next
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let code = app.create_ok(link("https://example.com/retry")).await;
    assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("shortener_code_collisions_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn running_out_of_free_codes_is_a_503_not_a_hang() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.links.max_create_attempts = 3.try_into().expect("> 0")
    })
    .await;
    app.store
        .collide_next
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let response = app.create(link("https://example.com/")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "codes_exhausted");
    assert_eq!(
        app.create(link("https://example.com/")).await.status(),
        201,
        "the next create works"
    );
}

#[tokio::test]
async fn alias_taken_returns_409() {
    let app = spawn_app().await;
    app.create_ok(json!({"url": "https://first.example/", "alias": "mine"}))
        .await;
    let second = app
        .create(json!({"url": "https://second.example/", "alias": "mine"}))
        .await;
    assert_eq!(second.status(), 409);
    assert_eq!(error_code(second).await, "alias_taken");
    let still: Value = app
        .get("/api/v1/links/mine")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        still["url"], "https://first.example/",
        "the first owner keeps the alias"
    );
}

#[tokio::test]
async fn eight_concurrent_creates_of_one_alias_give_exactly_one_201() {
    let app = spawn_app().await;
    let attempts = (0..8).map(|i| {
        let body = json!({"url": format!("https://racer{i}.example/"), "alias": "contested"});
        let request = app.client.post(app.url("/api/v1/links")).json(&body).send();
        async move { request.await.expect("request").status().as_u16() }
    });
    let mut statuses = futures_join_all(attempts).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
}

#[tokio::test]
async fn a_created_link_is_visible_even_if_its_code_was_cached_as_unknown() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/later").await.status(),
        404,
        "now cached as unknown"
    );
    app.create_ok(json!({"url": "https://example.com/", "alias": "later"}))
        .await;
    assert_eq!(
        app.get("/later").await.status(),
        302,
        "create invalidated the negative entry"
    );
}

/// `join_all` without pulling in the `futures` crate for one helper.
async fn futures_join_all<F: Future<Output = u16> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn targets_that_are_not_public_are_refused_with_the_reason() {
    let app = spawn_app().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://0x7f000001/",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://192.168.1.1/",
        "http://metadata.google.internal/",
        "https://аpple.com/",
    ] {
        let response = app.create(link(url)).await;
        assert_eq!(response.status(), 422, "{url}");
        assert_eq!(error_code(response).await, "target_not_allowed", "{url}");
    }
    let response = app.create(link("https://goo\u{200b}gle.com/")).await;
    assert_eq!(response.status(), 422);
    assert_eq!(error_code(response).await, "invalid_url");
    app.create_ok(link("https://пример.рф/путь")).await;
}

#[tokio::test]
async fn the_blocklist_file_is_reloaded_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("blocked.txt");
    std::fs::write(&file, "# none yet\n").expect("write");
    let path = file.to_string_lossy().into_owned();
    let app = crate::helpers::spawn_app_with(|s| {
        s.targets.blocklist_file = path;
        s.targets.blocklist_reload_ms = 50;
    })
    .await;
    app.create_ok(link("https://phish.example/login")).await;
    std::fs::write(&file, "phish.example\n").expect("write");
    let refused = async {
        loop {
            let response = app.create(link("https://www.phish.example/login")).await;
            if response.status() == 422 {
                return error_code(response).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let code = tokio::time::timeout(std::time::Duration::from_secs(10), refused)
        .await
        .expect("the new list is in force within seconds");
    assert_eq!(code, "target_not_allowed");
    // A broken file keeps the previous list.
    std::fs::write(&file, "not a domain\n").expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let response = app.create(link("https://phish.example/")).await;
    assert_eq!(response.status(), 422);
}
