//! Files from Go modules, for tests that check a file against a schema another project
//! publishes in its module (the Compose specification's JSON schema is in
//! `github.com/compose-spec/compose-go`): fetched with `go mod download` through the Go
//! module proxy into the kit's cache (`<cache>/go`) the first time.
//!
//! Needs `go`; without it, [`module_file`] says so through [`crate::skip`] and returns
//! `None`.

use std::path::PathBuf;
use std::process::Command;

const INSTALL_HINT: &str =
    "go is needed to fetch a schema from its Go module: apt-get install -y golang-go";

/// The file at `path` inside Go module `module` at `version`, or `None` (after saying
/// so) without Go.
pub fn module_file(test: &str, module: &str, version: &str, path: &str) -> Option<PathBuf> {
    let cache = crate::jvm::cache().join("go");
    let output = Command::new("go")
        .args(["mod", "download", "-json"])
        .arg(format!("{module}@{version}"))
        .env("GOPATH", &cache)
        .env("GOMODCACHE", cache.join("mod"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        .current_dir(std::env::temp_dir())
        .output();
    let Ok(output) = output else {
        crate::skip(test, INSTALL_HINT);
        return None;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let dir = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("\"Dir\": \""))
        .and_then(|rest| rest.strip_suffix("\","))
        .unwrap_or_else(|| panic!("go mod download {module}@{version}: {text}"));
    let file = PathBuf::from(dir).join(path);
    assert!(
        file.is_file(),
        "{} is not in {module}@{version}",
        file.display()
    );
    Some(file)
}
