//! Go modules, for tests that check a file with another project's own code: a file it
//! publishes in its module (the Compose specification's JSON schema is in
//! `github.com/compose-spec/compose-go`), or a program it ships (Docker Compose's
//! `docker compose config`, which reads a compose file without a Docker engine).
//! Fetched with `go mod download` through the Go module proxy into the kit's cache
//! (`<cache>/go`), and programs built there, the first time.
//!
//! Needs `go`; without it, [`module_file`] and [`module_program`] say so through
//! [`crate::skip`] and return `None`.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "Go 1.26 or newer is needed on PATH, to fetch and build Go modules";

/// `go` with the kit's module cache; the installed Go only (no toolchain download).
fn go(cache: &Path) -> Command {
    let mut command = Command::new("go");
    command
        .env("GOPATH", cache)
        .env("GOMODCACHE", cache.join("mod"))
        .env("GOTOOLCHAIN", "local");
    command
}

/// The directory of `module@version` in the kit's module cache, or `None` without Go.
fn download(test: &str, cache: &Path, module: &str, version: &str) -> Option<PathBuf> {
    let output = go(cache)
        .args(["mod", "download", "-json"])
        .arg(format!("{module}@{version}"))
        .env("GOFLAGS", "-mod=mod")
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
    Some(PathBuf::from(dir))
}

/// The file at `path` inside Go module `module` at `version`, or `None` (after saying
/// so) without Go.
pub fn module_file(test: &str, module: &str, version: &str, path: &str) -> Option<PathBuf> {
    let cache = crate::jvm::cache().join("go");
    let file = download(test, &cache, module, version)?.join(path);
    assert!(
        file.is_file(),
        "{} is not in {module}@{version}",
        file.display()
    );
    Some(file)
}

/// The program in package `package` (a directory of the module, e.g. `cmd`) of Go
/// module `module` at `version`, built once into `<cache>/go/bin/<name>-<version>`; or
/// `None` (after saying so) without Go.
///
/// It is built inside the module's own directory, so that the module's `go.mod`, with
/// its `replace` and `exclude` directives, is the main module, as in its own release
/// builds (`go install module/package@version` refuses modules that have them).
pub fn module_program(
    test: &str,
    module: &str,
    version: &str,
    package: &str,
    name: &str,
) -> Option<PathBuf> {
    let cache = crate::jvm::cache().join("go");
    let program = cache.join("bin").join(format!("{name}-{version}"));
    if program.is_file() {
        return Some(program);
    }
    let dir = download(test, &cache, module, version)?;
    // Built beside, then renamed: a build cut short leaves no program behind.
    let partial = program.with_extension("partial");
    let output = go(&cache)
        .args(["build", "-o"])
        .arg(&partial)
        .arg(format!("./{package}"))
        .current_dir(&dir)
        .output()
        .expect("run go build");
    assert!(
        output.status.success(),
        "go build {module}@{version}/{package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &program).expect("move the program into place");
    Some(program)
}
