//! Python with packages from PyPI, for tests that check what another language reads (the
//! click events, with `confluent-kafka`): a virtual environment in the kit's cache
//! (`<cache>/python-<packages>`), created and filled with `pip` the first time.
//!
//! Needs `python3` with `venv` (Debian: `python3-venv`); without it, [`python`] says so
//! through [`crate::skip`] and returns `None`.

use std::path::PathBuf;
use std::process::Command;

const INSTALL_HINT: &str = "python3 with venv is needed: apt-get install -y python3-venv";

/// The interpreter of a virtual environment holding `packages` (pip requirement
/// strings, e.g. `confluent-kafka==2.16.2`); `None` (after saying so) without Python.
pub fn python(test: &str, packages: &[&str]) -> Option<PathBuf> {
    let venv = crate::jvm::cache().join(format!(
        "python-{}",
        packages.join("-").replace(['=', '<', '>'], "_")
    ));
    let interpreter = venv.join("bin/python");
    if venv.join(".complete").exists() {
        return Some(interpreter);
    }
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !created {
        crate::skip(test, INSTALL_HINT);
        return None;
    }
    let installed = Command::new(&interpreter)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .expect("run pip");
    assert!(installed.success(), "pip install {packages:?} failed");
    std::fs::write(venv.join(".complete"), b"").expect("mark the environment complete");
    Some(interpreter)
}
