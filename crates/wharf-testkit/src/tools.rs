//! External tools the tests drive (pip, uv, npm, ...): whether one is here, under the project's rule that
//! in CI (`WHARF_REQUIRE_TOOLS=1`) a missing tool fails the test instead of skipping it silently.

use std::process::{Command, Stdio};

/// Whether `program probe...` runs and succeeds. When it does not, the test should return early: this says
/// `SKIP` on stderr, or panics (failing the test) when `WHARF_REQUIRE_TOOLS=1`.
///
/// # Panics
/// When the tool is missing and `WHARF_REQUIRE_TOOLS=1`.
pub fn require_tool(program: &str, probe: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let what = std::iter::once(program)
            .chain(probe.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        if std::env::var("WHARF_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("`{what}` is required (WHARF_REQUIRE_TOOLS=1) but does not run");
        }
        eprintln!("SKIP: `{what}` does not run here");
    }
    ok
}
