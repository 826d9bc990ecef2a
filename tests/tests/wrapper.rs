//! `bin/pipeline`, the wrapper users call: when nothing needs building it prints nothing of its
//! own — no cargo "Finished" line and no Python warning from locating libtorch — so stdout and
//! stderr are the command's own (what `--json` users pipe into other tools).

use std::path::Path;
use std::process::Command;

#[test]
fn wrapper_is_silent_when_nothing_needs_building() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wrapper = repo.join("bin/pipeline");
    // Twice: the first call may still have to link the binaries for this checkout (bin/test has
    // built them; `cargo test` may have rebuilt them with its own feature set).
    let run = || {
        Command::new(&wrapper)
            .arg("--version")
            // Exercise the path a user without LIBTORCH takes: env.sh locates torch itself.
            .env_remove("LIBTORCH")
            .output()
            .expect("run bin/pipeline")
    };
    let _ = run();
    let out = run();
    assert!(out.status.success(), "bin/pipeline --version failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("pipeline {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "the wrapper printed something of its own on stderr");
}
