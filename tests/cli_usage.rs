//! The command line's own surface, without a database: exit codes of usage errors, help,
//! version and shell completions.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_litellm-org-operator");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LITELLM_ORG_OPERATOR_MANAGER")
        .output()
        .expect("run the binary")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A usage error exits 1, never 2 (2 is `plan`'s "changes pending"), says what is wrong on
/// stderr, and opens no database; `--help` and `--version` exit 0 on stdout.
#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, says) in [
        (&["plan", "-f", ".", "--no-such-flag"][..], "--no-such-flag"),
        (&["plan"][..], "--filename"),
        (&["apply"][..], "--filename"),
        (&["get"][..], "<WHAT>"),
        (&["get", "teams"][..], "teams"),
        (&["no-such-command"][..], "no-such-command"),
        (&[][..], "Usage"),
        (
            &["plan", "-f", ".", "--budget-reset-time", "25:00"][..],
            "25:00",
        ),
    ] {
        let out = run(dir.path(), args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(
        !dir.path().join("litellm-org-operator.db").exists(),
        "no database opened for a usage error"
    );
    for args in [
        &["--help"][..],
        &["--version"][..],
        &["plan", "--help"][..],
        &["help", "apply"][..],
    ] {
        let out = run(dir.path(), args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stdout.is_empty(), "{args:?}");
    }
}
