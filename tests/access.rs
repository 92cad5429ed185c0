//! Access control through the real binary on the embedded store: the first start's
//! admin key, the access matrix, no token in any log line or metric, and
//! `shortener keys create|list|revoke`.

use std::process::Command;

#[path = "support/access.rs"]
mod matrix;
#[path = "support/process.rs"]
mod process;

use process::Server;

fn keys_env(dir: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("APP__AUTH__MODE".into(), "keys".into()),
        (
            "APP__AUTH__BOOTSTRAP_KEY_FILE".into(),
            dir.join("admin.key").display().to_string(),
        ),
        (
            "APP__STORE__PATH".into(),
            dir.join("links.redb").display().to_string(),
        ),
    ]
}

fn start(env: &[(String, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&env)
}

/// `shortener keys ...` on the store of `env`: (stdout, stderr), asserting success.
fn keys_cli(env: &[(String, String)], args: &[&str]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .arg("keys")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "info")
        .output()
        .expect("run shortener keys");
    assert!(output.status.success(), "{output:?}");
    (
        String::from_utf8(output.stdout).expect("utf-8"),
        String::from_utf8(output.stderr).expect("utf-8"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_end_to_end_and_no_token_reaches_a_log_line_or_a_metric() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = keys_env(dir.path());
    let mut server = start(&env);
    let logged = server
        .startup_logs
        .iter()
        .find(|line| line.contains("an admin key was created"))
        .expect("the bootstrap is logged")
        .clone();
    let admin = std::fs::read_to_string(dir.path().join("admin.key"))
        .expect("the key file")
        .trim()
        .to_owned();
    assert!(
        !logged.contains(&admin[4..]),
        "the bootstrap line names the file, not the key"
    );

    let base = server.url("");
    let api = matrix::Api {
        client: &server.client,
        base: &base,
        admin: &admin,
    };
    let mut tokens = matrix::run(&api).await;
    tokens.push(admin.clone());

    let metrics = server.metrics().await;
    assert!(metrics.contains("shortener_auth_refused_total{reason=\"unknown_key\"}"));
    server.signal_terminate();
    server.wait_success();
    let logs = [server.startup_logs.clone(), server.drain_logs()]
        .concat()
        .join("\n");
    assert!(
        logs.contains("API key created"),
        "key events are logged, by id"
    );
    for token in &tokens {
        let secret = &token[16..];
        assert!(!logs.contains(secret), "a secret in the logs");
        assert!(!metrics.contains(secret), "a secret in the metrics");
    }

    // A second start finds keys and writes no new file.
    std::fs::remove_file(dir.path().join("admin.key")).expect("remove");
    let mut again = start(&env);
    assert_eq!(again.status("/api/v1/links").await, 401);
    again.signal_terminate();
    again.wait_success();
    assert!(!dir.path().join("admin.key").exists());

    // The CLI, on the stopped service's store.
    let (token, _) = keys_cli(
        &env,
        &["create", "--owner", "cli-team", "--scopes", "links:read"],
    );
    let token = token.trim().to_owned();
    let (listing, _) = keys_cli(&env, &["list"]);
    let id = &token[3..15];
    let line = listing
        .lines()
        .find(|line| line.starts_with(id))
        .expect("the new key is listed");
    assert!(line.contains("cli-team") && line.contains("links:read") && line.ends_with('-'));
    assert!(!listing.contains(&token[16..]), "a listing shows no secret");

    let status = |server: &Server, token: String| {
        let request = server
            .client
            .get(server.url("/api/v1/links"))
            .bearer_auth(token);
        async move { request.send().await.expect("list").status().as_u16() }
    };
    let server = start(&env);
    assert_eq!(status(&server, token.clone()).await, 200);
    drop(server);
    keys_cli(&env, &["revoke", id]);
    let (listing, _) = keys_cli(&env, &["list"]);
    assert!(
        !listing
            .lines()
            .any(|l| l.starts_with(id) && l.ends_with('-'))
    );
    let server = start(&env);
    assert_eq!(status(&server, token).await, 401);
}

#[test]
fn the_open_mode_is_refused_on_a_public_address() {
    let output = Command::new(env!("CARGO_BIN_EXE_shortener"))
        .arg("serve")
        .env("APP__AUTH__MODE", "open")
        .env("APP__HTTP__LISTEN", "0.0.0.0:0")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.mode"), "{stderr}");
}
