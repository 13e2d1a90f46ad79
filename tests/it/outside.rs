//! Programs outside the Rust toolchain that some checks use as independent implementations
//! (NSS, GnuTLS, Python's `cryptography`). OpenSSL and curl are on every machine the project
//! runs on; these are not, so `cargo test --workspace` passes without them and says loudly what
//! it left out. `.ci/run` installs them and sets `ESTGATE_TEST_REQUIRE_TOOLS=1`, which turns a
//! missing program into a failure: in CI every check runs.

use std::io::Write;
use std::path::Path;

/// Whether `program` is on PATH. When it is not: a notice on the terminal (written past the
/// test harness's output capture, so it shows in a passing run), or a failure under
/// `ESTGATE_TEST_REQUIRE_TOOLS=1`. `what` names the check left out and `package` the Debian
/// package that brings the program.
pub fn available(program: &str, what: &str, package: &str) -> bool {
    if on_path(program) {
        return true;
    }
    missing(&format!("{program} is not on PATH"), what, package);
    false
}

/// Whether `python3` can import `module`, with the same notice or failure as `available`.
pub fn python_module(module: &str, what: &str, package: &str) -> bool {
    let ok = on_path("python3")
        && std::process::Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        missing(&format!("python3 cannot import {module}"), what, package);
    }
    ok
}

fn missing(why: &str, what: &str, package: &str) {
    let required = std::env::var("ESTGATE_TEST_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{why}: {what} cannot run, and ESTGATE_TEST_REQUIRE_TOOLS=1 requires it (install {package})"
    );
    // Straight to the terminal: `eprintln!` would be captured and shown only on failure.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {what}: {why} (install {package}; .ci/run does) ***\n"
    );
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
