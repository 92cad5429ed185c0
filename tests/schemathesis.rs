//! Schemathesis (from PyPI) against the real binary with an admin key: it generates
//! requests from docs/openapi.json (examples, boundary values, random data, and chains of
//! operations through the document's links) and checks every answer against it. The
//! run must find no server error and no answer the document does not describe.
//!
//! Rate limits are off for the run, so that the generated requests reach the handlers.

use std::process::Command;

#[path = "support/process.rs"]
mod process;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_request_gets_an_answer_the_document_describes() {
    let test = "every_generated_request_gets_an_answer_the_document_describes";
    let Some(python) = shortener_testkit::python::python(test, &[SCHEMATHESIS]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admin.key").display().to_string();
    let store = dir.path().join("links.redb").display().to_string();
    let server = process::Server::start(&[
        ("APP__AUTH__MODE", "keys"),
        ("APP__AUTH__BOOTSTRAP_KEY_FILE", &file),
        ("APP__STORE__PATH", &store),
    ]);
    let admin = std::fs::read_to_string(&file)
        .expect("the key file")
        .trim()
        .to_owned();
    let output = Command::new(python.with_file_name("st"))
        .arg("run")
        .arg(server.url("/api/v1/openapi.json"))
        .args([
            "--checks",
            CHECKS,
            "--max-examples",
            "30",
            "--seed",
            "20261206",
        ])
        .arg("--header")
        .arg(format!("Authorization: Bearer {admin}"))
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("No issues found"), "{report}");
    let metrics = server.metrics().await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("shortener_http_requests_total") && l.contains("status=\"5")),
        "a 5xx was answered:\n{metrics}"
    );
}
