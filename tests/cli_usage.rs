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
        (&["get", "organizations", "-o", "xml"][..], "xml"),
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

/// `completion bash|zsh|fish` prints a script for that shell that knows every subcommand and
/// their flags, opening no database; a shell it does not know is a usage error.
#[test]
fn completion_scripts_name_every_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef litellm-org-operator"),
        ("fish", "complete -c litellm-org-operator"),
    ] {
        let out = run(dir.path(), &["completion", shell]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: {stdout}");
        for word in ["plan", "apply", "validate", "export", "prune", "filename"] {
            assert!(stdout.contains(word), "{shell} script lacks {word}");
        }
    }
    let out = run(dir.path(), &["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    assert!(
        !dir.path().join("litellm-org-operator.db").exists(),
        "no database opened"
    );
}

/// Each subcommand's `--help` lists only the flags it reads: the database, ledger and writer
/// flags are not global.
#[test]
fn help_lists_only_the_flags_of_the_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = [
        "--database",
        "--manager",
        "--actor",
        "--ledger-schema",
        "--new-user-models",
        "--new-user-max-budget",
        "--new-user-budget-duration",
        "--budget-reset-timezone",
        "--budget-reset-time",
    ];
    let help = |sub: &str| {
        let out = run(dir.path(), &[sub, "--help"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{sub}: {stderr}");
        stdout
    };
    for sub in ["crd", "completion", "validate"] {
        let stdout = help(sub);
        for flag in writer {
            assert!(
                !stdout.contains(flag),
                "{sub} --help lists {flag}: {stdout}"
            );
        }
    }
    for sub in ["get", "export"] {
        let stdout = help(sub);
        for flag in ["--database", "--ledger-schema"] {
            assert!(stdout.contains(flag), "{sub} --help lacks {flag}: {stdout}");
        }
        for flag in [
            "--manager",
            "--actor",
            "--new-user-models",
            "--budget-reset-time",
        ] {
            assert!(
                !stdout.contains(flag),
                "{sub} --help lists {flag}: {stdout}"
            );
        }
    }
    let stdout = help("migrate");
    assert!(stdout.contains("--database"), "{stdout}");
    for flag in ["--manager", "--ledger-schema", "--new-user-models"] {
        assert!(
            !stdout.contains(flag),
            "migrate --help lists {flag}: {stdout}"
        );
    }
    for sub in ["plan", "apply", "run"] {
        let stdout = help(sub);
        for flag in writer {
            assert!(stdout.contains(flag), "{sub} --help lacks {flag}: {stdout}");
        }
        for var in [
            "DATABASE_URL",
            "LITELLM_ORG_OPERATOR_MANAGER",
            "LEDGER_SCHEMA",
        ] {
            assert!(stdout.contains(var), "{sub} --help lacks {var}: {stdout}");
        }
    }
    let out = run(dir.path(), &["--help"]);
    let (stdout, _) = text(&out);
    for flag in writer {
        assert!(!stdout.contains(flag), "--help lists {flag}: {stdout}");
    }
}

/// A flag that was global, given before the subcommand name, exits 1 naming the flag and
/// saying to put it after the subcommand name, with the command line that works; no database
/// is opened. A subcommand that does not take the flag says so.
#[test]
fn a_flag_before_the_subcommand_names_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, says) in [
        (
            &["--manager", "a", "apply", "-f", "x"][..],
            &[
                "--manager",
                "after the subcommand name",
                "litellm-org-operator apply --manager a -f x",
            ][..],
        ),
        (
            &["--actor=bot", "plan", "-f", "."][..],
            &[
                "--actor",
                "after the subcommand name",
                "plan --actor bot -f .",
            ][..],
        ),
        (
            &["--ledger-schema", "s", "get", "organizations"][..],
            &[
                "--ledger-schema",
                "after the subcommand name",
                "get --ledger-schema s organizations",
            ][..],
        ),
        (
            &[
                "--new-user-models",
                "m",
                "--budget-reset-time",
                "01:00",
                "apply",
                "-f",
                ".",
            ][..],
            &[
                "--new-user-models",
                "--budget-reset-time",
                "after the subcommand name",
            ][..],
        ),
        (
            &["--manager", "a"][..],
            &["--manager", "after the subcommand name", "run, plan, apply"][..],
        ),
        (
            &["--manager", "a", "validate", "-f", "."][..],
            &["validate takes no --manager"][..],
        ),
    ] {
        let out = run(dir.path(), args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
        for word in says {
            assert!(stderr.contains(word), "{args:?}: {stderr}");
        }
        assert!(!stderr.contains("unexpected argument"), "{stderr}");
    }
    // A database URL (it may hold a password) is never echoed in the suggestion.
    let out = run(
        dir.path(),
        &[
            "--database",
            "postgres://u:secret@h/d",
            "get",
            "organizations",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--database URL"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    assert!(
        !dir.path().join("litellm-org-operator.db").exists(),
        "no database opened"
    );
}

/// The environment variables of the moved flags are read by the subcommands that take them,
/// and by no other: `validate` ignores a malformed `BUDGET_RESET_TIME` or manager.
#[test]
fn environment_variables_reach_the_subcommands_that_take_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with_env = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path())
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("LITELLM_ORG_OPERATOR_MANAGER");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run the binary")
    };
    for (args, env, says) in [
        (
            &["plan", "-f", "."][..],
            ("BUDGET_RESET_TIME", "25:00"),
            "25:00",
        ),
        (
            &["apply", "-f", "."][..],
            ("BUDGET_RESET_TIMEZONE", "Nowhere/Void"),
            "Nowhere/Void",
        ),
        (
            &["plan", "-f", "."][..],
            ("LITELLM_ORG_OPERATOR_MANAGER", " "),
            "manager",
        ),
        (
            &["apply", "-f", "."][..],
            ("NEW_USER_MAX_BUDGET", "-1"),
            "-1",
        ),
        (
            &["get", "organizations"][..],
            ("DATABASE_URL", "sqlite://absent.db"),
            "absent.db",
        ),
    ] {
        let out = with_env(args, &[env]);
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} {env:?}: {stdout}{stderr}"
        );
        assert!(stderr.contains(says), "{args:?} {env:?}: {stderr}");
    }
    std::fs::write(dir.path().join("empty.yaml"), "").expect("write");
    let out = with_env(
        &["validate", "-f", "empty.yaml"],
        &[
            ("BUDGET_RESET_TIME", "25:00"),
            ("LITELLM_ORG_OPERATOR_MANAGER", " "),
            ("DATABASE_URL", "postgres://nowhere.invalid/db"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        !dir.path().join("litellm-org-operator.db").exists(),
        "no database opened"
    );
}
