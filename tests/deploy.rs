//! The deployable stack as files: docker-compose.yml is valid against the Compose
//! specification's JSON schema (from `github.com/compose-spec/compose-go`, fetched with
//! `go mod download`, read with Python's `jsonschema`), Docker Compose itself (built from
//! its Go module) loads it with and without the PostgreSQL profile, it binds every port
//! to loopback, pins every image, and runs the versions the test kit runs. The compose Prometheus
//! config passes `promtool check config`, and the Kubernetes manifests pass
//! `kubernetes-validate --strict` (PyPI; the API schemas of Kubernetes 1.37).

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const COMPOSE_GO: &str = "github.com/compose-spec/compose-go/v2";
const COMPOSE_GO_VERSION: &str = "v2.10.0";
/// Docker Compose (`docker compose`, the CLI plugin, also a program of its own).
const DOCKER_COMPOSE: &str = "github.com/docker/compose/v5";
const DOCKER_COMPOSE_VERSION: &str = "v5.6.0";

/// Checks docker-compose.yml against the schema and prints one line per finding.
const VALIDATE: &str = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
compose = yaml.safe_load(open(sys.argv[2]))
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
for error in errors:
    print("schema:", "/".join(map(str, error.absolute_path)), error.message)
for name, service in compose["services"].items():
    image = service.get("image", "")
    if ":" not in image or image.endswith(":latest"):
        print("unpinned image:", name, image)
    for port in service.get("ports", []):
        if not str(port).startswith("127.0.0.1:"):
            print("port not on loopback:", name, port)
print(json.dumps({name: service.get("image", "") for name, service in compose["services"].items()}))
"#;

fn compose() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml")).expect("compose file")
}

#[test]
fn the_compose_file_is_valid_pinned_and_bound_to_loopback() {
    let test = "the_compose_file_is_valid_pinned_and_bound_to_loopback";
    let Some(schema) = shortener_testkit::go::module_file(
        test,
        COMPOSE_GO,
        COMPOSE_GO_VERSION,
        "schema/compose-spec.json",
    ) else {
        return;
    };
    let Some(python) =
        shortener_testkit::python::python(test, &["jsonschema==4.23.0", "PyYAML==6.0.2"])
    else {
        return;
    };
    let output = Command::new(python)
        .args(["-c", VALIDATE])
        .arg(schema)
        .arg(Path::new(ROOT).join("docker-compose.yml"))
        .output()
        .expect("run python");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (findings, images) = report.trim_end().rsplit_once('\n').unwrap_or(("", &report));
    assert!(findings.trim().is_empty(), "{findings}");
    let images: serde_json::Value = serde_json::from_str(images).expect("images");
    for service in [
        "scylla",
        "postgres",
        "redis",
        "kafka",
        "shortener",
        "analytics",
        "nginx",
        "prometheus",
        "grafana",
    ] {
        assert!(
            images.get(service).is_some(),
            "no {service} service: {images}"
        );
    }
}

/// `docker compose config` loads the file as `up` would (the schema, interpolation,
/// references between services, networks and volumes, dependency conditions, profiles)
/// and needs no engine: it runs here, where `up` cannot.
#[test]
fn docker_compose_loads_the_file_with_and_without_postgres() {
    let test = "docker_compose_loads_the_file_with_and_without_postgres";
    let Some(compose) = shortener_testkit::go::module_program(
        test,
        DOCKER_COMPOSE,
        DOCKER_COMPOSE_VERSION,
        "cmd",
        "docker-compose",
    ) else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    // The project as compose would run it: (service names, the instances' store).
    let load = |args: &[&str], store: Option<&str>| {
        let mut command = Command::new(&compose);
        command
            .args(["--file", "docker-compose.yml"])
            .args(args)
            .args(["config", "--format", "json"])
            .current_dir(ROOT)
            // No user's Docker settings or COMPOSE_* variables.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("DOCKER_CONFIG", home.path());
        if let Some(store) = store {
            command.env("STORE", store);
        }
        let output = command.output().expect("run docker-compose");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "docker compose config: {stderr}");
        // Warnings (an unset variable, an obsolete key) fail too.
        assert!(stderr.trim().is_empty(), "docker compose config: {stderr}");
        let project: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("the project as JSON");
        let services = project["services"].as_object().expect("services");
        let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
        names.sort_unstable();
        let backend = services["shortener"]["environment"]["APP__STORE__BACKEND"].clone();
        (names.join(" "), backend)
    };
    let (services, backend) = load(&[], None);
    assert_eq!(
        services,
        "analytics grafana kafka kafka-exporter keys-init migrate nginx prometheus redis \
         redis-exporter scylla shortener topics"
    );
    assert_eq!(backend, "scylla");
    let (services, backend) = load(&["--profile", "postgres"], Some("postgres"));
    assert!(services.contains(" postgres "), "{services}");
    assert_eq!(backend, "postgres");
}

#[test]
fn the_compose_stack_runs_the_servers_the_test_kit_runs() {
    let kit = |file: &str| {
        std::fs::read_to_string(Path::new(ROOT).join("crates/testkit/src").join(file))
            .expect("test kit source")
    };
    let kafka = kit("kafka.rs");
    let version = kafka
        .split("const VERSION: &str = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the kit's Kafka version");
    let compose = compose();
    assert!(
        compose.contains(&format!("image: apache/kafka:{version}")),
        "Kafka {version}"
    );
    // Debian 12's packages, which the kit starts: redis-server 7.0 and PostgreSQL 15.
    assert!(compose.contains("image: redis:7.0."), "Redis 7.0");
    assert!(compose.contains("image: postgres:15."), "PostgreSQL 15");
    // The same Prometheus as Debian 12's promtool, which checks the rules.
    assert!(compose.contains("image: prom/prometheus:v2.42.0"));
}

#[test]
fn the_compose_prometheus_config_is_valid() {
    let test = "the_compose_prometheus_config_is_valid";
    let output = Command::new("promtool")
        .args(["check", "config", "compose.yml"])
        .current_dir(Path::new(ROOT).join("config/prometheus"))
        .output();
    let Ok(output) = output else {
        shortener_testkit::skip(test, "promtool is needed: apt-get install -y prometheus");
        return;
    };
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_kubernetes_manifests_are_valid_against_the_api_schemas() {
    let test = "the_kubernetes_manifests_are_valid_against_the_api_schemas";
    let Some(python) = shortener_testkit::python::python(test, &["kubernetes-validate==1.37.0"])
    else {
        return;
    };
    let output = Command::new(python.with_file_name("kubernetes-validate"))
        .args(["--strict", "--quiet", "shortener.yaml"])
        .current_dir(Path::new(ROOT).join("config/kubernetes"))
        .output()
        .expect("run kubernetes-validate");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
