//! Command line: wiring only. See `litellm-org-operator --help`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use litellm_org_operator::cli::error::CliError;
use litellm_org_operator::cli::manifest::ManifestSet;
use litellm_org_operator::cli::offline::{self, RunOptions};
use litellm_org_operator::cli::output::{self, Format, escape};
use litellm_org_operator::cli::plan_output::{self, PlanFormat};
use litellm_org_operator::controller::tenancy::{Grant, Grants};
use litellm_org_operator::controller::{self, RunConfig};
use litellm_org_operator::engine::{CLI_MANAGER, DEFAULT_ACTOR, Engine, OPERATOR_MANAGER};
use litellm_org_operator::store::NewUserDefaults;
use litellm_org_operator::store::Store;
use litellm_org_operator::store::ledger::DEFAULT_LEDGER_SCHEMA;
use litellm_org_operator::store::open::{self as database, DEFAULT_DATABASE_URL};
use litellm_org_operator::telemetry::{self, LogFormat};

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// jemalloc: glibc's malloc fragments under the watch caches' churn (every watch event
/// replaces one cached object), keeping about a third more resident at 60,000 objects.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Declarative LiteLLM organizations and members.
#[derive(Parser)]
#[command(name = "litellm-org-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--database`: every subcommand that opens the database.
#[derive(clap::Args)]
struct DatabaseArgs {
    /// Database URL: postgres://user:password@host:port/db or sqlite://file.db.
    /// Defaults to an embedded SQLite file in the working directory.
    #[arg(long = "database", env = "DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
}

impl DatabaseArgs {
    /// The URL given, else the embedded SQLite file.
    fn url(&self) -> SecretString {
        SecretString::from(
            self.database
                .clone()
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
        )
    }
}

/// `--ledger-schema`: every subcommand that reads or writes the ledger.
#[derive(clap::Args)]
struct LedgerArgs {
    /// PostgreSQL schema of the operator's ledger (created on first `apply` or `run`).
    #[arg(long, env = "LEDGER_SCHEMA", default_value = DEFAULT_LEDGER_SCHEMA)]
    ledger_schema: String,
}

/// The flags of the subcommands that write LiteLLM's tables (`run`, `plan`, `apply`).
#[derive(clap::Args)]
struct WriteArgs {
    #[command(flatten)]
    database: DatabaseArgs,

    /// Name written to created_by / updated_by (a label for LiteLLM's audit columns; it has
    /// no part in deciding what the tool owns).
    #[arg(long, default_value = DEFAULT_ACTOR)]
    actor: String,

    /// Who owns what this run writes, in the ledger: each manager prunes and takes over only
    /// its own rows. Default: `operator` for `run`, `cli` for `plan` and `apply`; give each
    /// manifest set applied with the CLI its own name. `--prune` requires it.
    #[arg(long, env = MANAGER_ENV, value_parser = manager_name)]
    manager: Option<String>,

    /// Models of every user this tool creates, as LiteLLM's
    /// `default_internal_user_params.models` (comma-separated or repeated). Existing users are
    /// never changed.
    #[arg(long, value_delimiter = ',', env = "NEW_USER_MODELS")]
    new_user_models: Vec<String>,

    /// `max_budget` (USD) of every user this tool creates, as LiteLLM's
    /// `max_internal_user_budget`.
    #[arg(long, env = "NEW_USER_MAX_BUDGET", value_parser = non_negative_usd)]
    new_user_max_budget: Option<f64>,

    /// `budget_duration` of every user this tool creates, as LiteLLM's
    /// `internal_user_budget_duration` (30s, 30m, 24h, 30d, 2w, 1mo, daily, ...: what
    /// LiteLLM's `validate_budget_duration` accepts).
    #[arg(long, env = "NEW_USER_BUDGET_DURATION", value_parser = budget_duration)]
    new_user_budget_duration: Option<String>,

    /// Time zone of budget resets, as the proxy's `litellm_settings.timezone`: a budget
    /// created with a duration first resets as LiteLLM's `get_budget_reset_time` computes it.
    #[arg(long, env = "BUDGET_RESET_TIMEZONE", default_value = "UTC")]
    budget_reset_timezone: String,

    /// Time of day (HH:MM) of daily, weekly and monthly budget resets, as the proxy's
    /// `litellm_settings.budget_reset_time`.
    #[arg(long, env = "BUDGET_RESET_TIME", default_value = "00:00")]
    budget_reset_time: String,

    #[command(flatten)]
    ledger: LedgerArgs,
}

impl WriteArgs {
    /// Apply the budget reset settings (a usage error when malformed): every budget this
    /// process creates with a duration gets its first reset from them.
    fn configure_resets(&self) -> Result<(), CliError> {
        let settings = litellm_org_operator::duration::ResetSettings::parse(
            &self.budget_reset_timezone,
            &self.budget_reset_time,
        )
        .map_err(CliError::Usage)?;
        litellm_org_operator::duration::configure(settings);
        Ok(())
    }

    fn new_user(&self) -> NewUserDefaults {
        NewUserDefaults {
            models: self.new_user_models.clone(),
            max_budget: self.new_user_max_budget,
            budget_duration: self.new_user_budget_duration.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kubernetes controllers (in a cluster, or against any kubeconfig).
    Run {
        /// Namespace to watch (repeat for several); all namespaces when absent.
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        /// Reconciles in flight at once, per kind.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
        /// Period of the resync that repairs drift, e.g. 5m, 30s.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        resync_interval: Duration,
        /// Read the database URL from this file (a mounted Secret) instead of --database.
        #[arg(long)]
        database_url_file: Option<PathBuf>,
        /// Server-side apply the operator's CRDs at start.
        #[arg(long)]
        install_crds: bool,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_addr: SocketAddr,
        /// Log line format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Elect a leader through a Lease: every replica watches, only the leader writes.
        #[arg(long)]
        leader_elect: bool,
        /// Name of the Lease.
        #[arg(long, default_value = "litellm-org-operator")]
        lease_name: String,
        /// Namespace of the Lease (default: $POD_NAMESPACE, else "default").
        #[arg(long)]
        lease_namespace: Option<String>,
        /// Let namespaces reach LiteLLM organizations they do not declare (join one made in
        /// LiteLLM or declared in another namespace, adopt an existing one with
        /// spec.organizationId): NAMESPACE=ORGANIZATION_ID, each side an exact value, * or a
        /// prefix ending in *; repeat for several. None: each namespace reaches only the
        /// organizations it declares. `*=*` allows everything.
        #[arg(
            long = "grant",
            value_name = "NAMESPACE=ORGANIZATION_ID",
            env = "LITELLM_ORG_OPERATOR_GRANTS",
            value_delimiter = ','
        )]
        grants: Vec<Grant>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Print both CustomResourceDefinitions as YAML.
    Crd,
    /// Print a shell completion script on stdout, e.g.
    /// `source <(litellm-org-operator completion bash)`.
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Create LiteLLM's tables on an empty database (never alters an existing schema).
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Show what `apply` would change. Exit 0: nothing to do, 2: changes pending, 1: errors.
    Plan(ManifestRun),
    /// Reconcile the database to the manifests, one transaction per object.
    Apply(ManifestRun),
    /// Check manifests without a database: parsing, the rules the CRDs state, rules across
    /// objects, duplicate names. Every error is listed. Exit 0: valid, 1: errors.
    Validate {
        /// Manifest files or folders (recursive; .yaml, .yml, .json).
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write manifests that adopt the organizations (and their members) no manager holds yet,
    /// with exactly their current values: applying them changes nothing in LiteLLM and takes
    /// ownership in the ledger. The way into GitOps for organizations made in LiteLLM.
    Export {
        /// Namespace of the manifests.
        #[arg(long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// List what the database holds.
    Get {
        what: GetWhat,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
}

/// What `plan` and `apply` take: the manifests, the prune, how to show the report, and the
/// flags of a run that writes.
#[derive(clap::Args)]
struct ManifestRun {
    /// Manifest files or folders (recursive; .yaml, .yml, .json).
    #[arg(short = 'f', long = "filename", required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    prune: Prune,
    /// Also show the ledger lines (`= ledger: … managed by …`).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Output: text, json (schema litellm-org-operator/plan/v1) or markdown (a
    /// pull-request comment). The exit code is the same in every format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: PlanFormat,
    /// Also write the same run's report in another format to a file: FORMAT=PATH, e.g.
    /// json=plan.json (repeat for several). A CI job posts the Markdown and keeps the JSON
    /// of one run.
    #[arg(long = "output-file", value_name = "FORMAT=PATH", value_parser = output_file)]
    output_files: Vec<(PlanFormat, PathBuf)>,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum GetWhat {
    #[value(alias = "organization", alias = "orgs", alias = "lorg")]
    Organizations,
    #[value(alias = "member", alias = "organizationmembers", alias = "lorgm")]
    Members,
}

/// Environment variable of `--manager`.
const MANAGER_ENV: &str = "LITELLM_ORG_OPERATOR_MANAGER";

/// `--manager`: a name the ledger can show and tell apart, so neither empty nor blank nor
/// holding control characters.
fn manager_name(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("a manager needs a name (for example `cli`, `team-a`); it cannot be empty".into())
    } else if text.chars().any(char::is_control) {
        Err("a manager's name cannot hold control characters".into())
    } else {
        Ok(text.to_string())
    }
}

/// `--new-user-max-budget`: a finite amount of USD, zero or more.
fn non_negative_usd(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{text:?} is not an amount of USD: use a number, 0 or more"
        )),
    }
}

/// `--new-user-budget-duration`: a LiteLLM budget duration.
fn budget_duration(text: &str) -> Result<String, String> {
    litellm_org_operator::duration::parse_duration(text)
        .map(|_| text.to_string())
        .ok_or_else(|| {
            format!("{text:?} is not a budget duration LiteLLM accepts: use a number and a unit, such as 30s, 30m, 24h, 30d or 2w, or 1mo, hourly, daily, weekly, monthly")
        })
}

/// This process's identity in the Lease and the logs, unique whatever the environment:
/// `$POD_NAME` in a pod, else the host's name and a random suffix (two replicas outside a
/// cluster, or on one host, never share one).
fn instance_identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME")
        .ok()
        .filter(|p| !p.trim().is_empty())
    {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "litellm-org-operator".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// Runs past this many objects get a progress bar on a terminal.
const PROGRESS_THRESHOLD: usize = 300;

#[tokio::main]
async fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(message) = misplaced_flags(&args) {
        eprintln!("{message}");
        return ExitCode::from(1);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    match &cli.command {
        Command::Run { log_format, .. } => telemetry::init(*log_format, "info"),
        _ => telemetry::init(LogFormat::Text, "warn"),
    }
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", escape(&error.to_string()));
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run {
            namespaces,
            concurrency,
            resync_interval,
            database_url_file,
            install_crds,
            http_addr,
            log_format: _,
            leader_elect,
            lease_name,
            lease_namespace,
            grants,
            write,
        } => {
            write.configure_resets()?;
            let url = match database_url_file {
                Some(path) => SecretString::from(
                    std::fs::read_to_string(&path)
                        .map_err(|source| CliError::ReadFile { path, source })?
                        .trim()
                        .to_string(),
                ),
                None => SecretString::from(write.database.database.clone().ok_or_else(|| {
                    CliError::Usage(
                        "run needs a database: set DATABASE_URL, --database or --database-url-file"
                            .into(),
                    )
                })?),
            };
            let new_user = write.new_user();
            let config = RunConfig {
                namespaces,
                concurrency,
                resync: resync_interval,
                actor: write.actor,
                manager: write
                    .manager
                    .unwrap_or_else(|| OPERATOR_MANAGER.to_string()),
                ledger_schema: write.ledger.ledger_schema,
                install_crds,
                instance: instance_identity(),
                grants: Grants::new(grants),
            };
            let lease = leader_elect.then(|| {
                (
                    lease_name,
                    lease_namespace
                        .or_else(|| std::env::var("POD_NAMESPACE").ok())
                        .unwrap_or_else(|| "default".to_string()),
                )
            });
            operate(&url, config, new_user, http_addr, lease).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "litellm-org-operator",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Crd => {
            let yaml = litellm_org_operator::crd::crds_yaml()?;
            print!("{yaml}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { database } => {
            let store = database::open(&database.url()).await?;
            store.migrate().await?;
            println!("schema ready");
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(run) => manifests(run, false).await,
        Command::Apply(run) => manifests(run, true).await,
        Command::Validate { paths } => Ok(validate(&paths, DEFAULT_ACTOR)),
        Command::Export {
            namespace,
            database,
            ledger,
        } => {
            let store = database::open(&database.url())
                .await?
                .with_ledger_schema(&ledger.ledger_schema)?;
            database::ensure_schema(&store).await?;
            let export = litellm_org_operator::cli::export::export(&store, &namespace).await?;
            print!("{}", export.yaml);
            Ok(partial(
                "export: left out",
                &export.left_out,
                "row(s) left out: applying the rest adopts only what was exported",
            ))
        }
        Command::Get {
            what,
            output,
            database,
            ledger,
        } => {
            let url = database.url();
            refuse_missing_sqlite(&url)?;
            let store = database::open(&url)
                .await?
                .with_ledger_schema(&ledger.ledger_schema)?;
            database::ensure_schema(&store).await?;
            let (text, unreadable) = match what {
                GetWhat::Organizations => {
                    let listing = store.list_organizations().await?;
                    (
                        output::organizations(&listing.rows, output),
                        listing.unreadable,
                    )
                }
                GetWhat::Members => {
                    let listing = store.list_members().await?;
                    (output::members(&listing.rows, output), listing.unreadable)
                }
            };
            print!("{text}");
            let skipped: Vec<String> = unreadable.iter().map(ToString::to_string).collect();
            Ok(partial("get: skipped", &skipped, "row(s) skipped"))
        }
    }
}

/// Flags that were global (given before the subcommand) until they moved into the
/// subcommands that read them. Each takes a value.
const MOVED_FLAGS: [&str; 9] = [
    "database",
    "actor",
    "manager",
    "new-user-models",
    "new-user-max-budget",
    "new-user-budget-duration",
    "budget-reset-timezone",
    "budget-reset-time",
    "ledger-schema",
];

/// A moved flag given before the subcommand name (`--manager a apply -f x`): the error
/// naming it and the command line that works, instead of clap's "unexpected argument".
/// `None` when every flag follows the subcommand name.
fn misplaced_flags(args: &[String]) -> Option<String> {
    // The flags met before the subcommand name, each with its value if one follows.
    let mut moved: Vec<(&str, Option<&str>)> = Vec::new();
    let mut rest = args.iter().skip(1).map(String::as_str);
    let mut subcommand = None;
    while let Some(arg) = rest.next() {
        if arg == "--" || !arg.starts_with('-') {
            subcommand = Some(arg).filter(|a| *a != "--");
            break;
        }
        let (name, inline) = match arg.trim_start_matches('-').split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.trim_start_matches('-'), None),
        };
        if !arg.starts_with("--") {
            continue;
        }
        if let Some(flag) = MOVED_FLAGS.iter().find(|f| **f == name) {
            let value = inline.or_else(|| rest.next());
            moved.push((flag, value));
        }
    }
    if moved.is_empty() {
        return None;
    }
    let program = "litellm-org-operator";
    let command = <Cli as clap::CommandFactory>::command();
    let takers = |flag: &str| -> Vec<String> {
        command
            .get_subcommands()
            .filter(|s| s.get_arguments().any(|a| a.get_long() == Some(flag)))
            .map(|s| s.get_name().to_string())
            .collect()
    };
    let shown = |flag: &str, value: Option<&str>| match (flag, value) {
        // A database URL can hold a password: never echo it.
        ("database", _) => "--database URL".to_string(),
        (_, None) => format!("--{flag} VALUE"),
        (_, Some(value)) => format!("--{flag} {}", shell_word(value)),
    };
    let names = |flags: &[(&str, Option<&str>)]| {
        let list = flags
            .iter()
            .map(|(f, _)| format!("--{f}"))
            .collect::<Vec<_>>()
            .join(", ");
        if flags.len() == 1 {
            format!("{list} is given")
        } else {
            format!("{list} are given")
        }
    };
    let pronoun = |n: usize| if n == 1 { "it" } else { "them" };
    let sub = subcommand.and_then(|name| command.find_subcommand(name));
    let mut lines = Vec::new();
    match sub {
        Some(sub) => {
            let (taken, foreign): (Vec<_>, Vec<_>) = moved
                .iter()
                .partition(|(flag, _)| sub.get_arguments().any(|a| a.get_long() == Some(flag)));
            if !taken.is_empty() {
                let flags: Vec<String> = taken.iter().map(|(f, v)| shown(f, *v)).collect();
                let after: Vec<String> = rest.map(shell_word).collect();
                lines.push(format!(
                    "error: {} before the subcommand; put {} after the subcommand name: {program} {} {}{}",
                    names(&taken),
                    pronoun(taken.len()),
                    sub.get_name(),
                    flags.join(" "),
                    if after.is_empty() { String::new() } else { format!(" {}", after.join(" ")) },
                ));
            }
            for (flag, _) in foreign {
                lines.push(format!(
                    "error: {} takes no --{flag}: remove it (it is a flag of {}, given after the subcommand name)",
                    sub.get_name(),
                    takers(flag).join(", ")
                ));
            }
        }
        None => {
            let flags: Vec<String> = moved.iter().map(|(f, v)| shown(f, *v)).collect();
            lines.push(format!(
                "error: {} before the subcommand; put {} after the subcommand name: {program} SUBCOMMAND {} ... ({})",
                names(&moved),
                pronoun(moved.len()),
                flags.join(" "),
                moved
                    .iter()
                    .map(|(f, _)| format!("--{f} is a flag of {}", takers(f).join(", ")))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
    }
    Some(lines.join("\n"))
}

/// A word as a shell reads it back: quoted when it holds anything but plain characters,
/// control characters escaped.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", escape(&word.replace('\'', "'\\''")))
    }
}

/// A command line clap refused: `--help` and `--version` print on stdout and exit 0; every
/// usage error (unknown flag, missing or malformed argument) prints on stderr and exits 1,
/// never 2, which `plan` keeps for "changes pending".
fn usage_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `validate`: read and check the manifests, open no database; every error on stderr, a
/// one-line summary on stdout.
fn validate(paths: &[PathBuf], actor: &str) -> ExitCode {
    let set = ManifestSet::load(paths);
    for notice in set.skipped.iter().chain(&set.notices) {
        eprintln!("{}", escape(notice));
    }
    let errors = litellm_org_operator::cli::validate::check(&set, actor);
    for e in &errors {
        eprintln!("error: {}", escape(&e.to_string()));
    }
    let (orgs, members) = (set.organizations.len(), set.members.len());
    if errors.is_empty() {
        println!("valid: {orgs} Organization(s), {members} OrganizationMember(s)");
        ExitCode::SUCCESS
    } else {
        println!(
            "invalid: {} error(s) in {orgs} Organization(s), {members} OrganizationMember(s) read",
            errors.len()
        );
        ExitCode::from(1)
    }
}

/// `get` reads a database; on SQLite, opening a path that does not exist would create an
/// empty one and list nothing, so a missing file is an error naming it.
fn refuse_missing_sqlite(url: &SecretString) -> Result<(), CliError> {
    if !matches!(database::backend_of(url)?, database::Backend::Sqlite) {
        return Ok(());
    }
    let options = database::sqlite_options(url)?;
    let path = options.get_filename();
    if path.as_os_str() != ":memory:" && !path.exists() {
        return Err(CliError::Usage(format!(
            "no SQLite database at {}: get reads an existing database and creates none; pass \
             --database (or DATABASE_URL) with the path of the database apply wrote",
            escape(&path.display().to_string())
        )));
    }
    Ok(())
}

/// Exit code 3 when some rows were skipped or left out (each named on stderr), else 0.
fn partial(prefix: &str, lines: &[String], summary: &str) -> ExitCode {
    for line in lines {
        eprintln!("{prefix} {}", escape(line));
    }
    if lines.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} {summary}.", lines.len());
        ExitCode::from(PARTIAL)
    }
}

/// Exit code of `get` and `export` when some rows could not be read or represented.
const PARTIAL: u8 = 3;

/// `--prune` and what it may delete (`plan` and `apply`).
#[derive(clap::Args, Debug)]
struct Prune {
    /// Also delete (with `plan`: plan deleting) rows this tool owns that no manifest declares.
    #[arg(long = "prune")]
    enabled: bool,
    /// Let the prune delete organizations that still have teams or API keys (LiteLLM's
    /// whole cascade); without it those deletes are refused, the others run.
    #[arg(long, requires = "enabled")]
    delete_teams_and_keys: bool,
}

/// `--output-file FORMAT=PATH`.
fn output_file(text: &str) -> Result<(PlanFormat, PathBuf), String> {
    let (format, path) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not FORMAT=PATH: write e.g. json=plan.json"))?;
    let format = <PlanFormat as ValueEnum>::from_str(format, true).map_err(|_| {
        format!(
            "{format:?} is not an output format: use text, json or markdown (e.g. json=plan.json)"
        )
    })?;
    if path.is_empty() {
        return Err(format!("{text:?} names no file: write e.g. json=plan.json"));
    }
    Ok((format, PathBuf::from(path)))
}

/// `plan` and `apply`: read the manifests, run them through the engine, print the report.
async fn manifests(run: ManifestRun, apply: bool) -> Result<ExitCode, CliError> {
    let ManifestRun {
        paths,
        prune,
        verbose,
        output,
        output_files,
        write: cli,
    } = run;
    cli.configure_resets()?;
    if prune.enabled && cli.manager.is_none() {
        // Every manifest set applied under the default manager shares its rows: a prune from
        // one repository would delete what another applied. Refuse before reading anything.
        return Err(CliError::Usage(format!(
            "--prune needs the manager named explicitly: without --manager (or {MANAGER_ENV}) \
             the default manager {CLI_MANAGER:?} is shared by every manifest set, so a prune \
             would delete organizations other repositories applied. Pass --manager NAME \
             (the name this manifest set applies under, e.g. --manager {CLI_MANAGER} for rows \
             applied so far without one, or --manager {OPERATOR_MANAGER} to review a database \
             the operator manages)"
        )));
    }
    let set = ManifestSet::load(&paths);
    for notice in set.skipped.iter().chain(&set.notices) {
        eprintln!("{}", escape(notice));
    }
    let store = database::open(&cli.database.url())
        .await?
        .with_ledger_schema(&cli.ledger.ledger_schema)?;
    database::ensure_schema(&store).await?;
    let engine = Engine::new(store, cli.actor.clone())
        .with_manager(
            cli.manager
                .clone()
                .unwrap_or_else(|| CLI_MANAGER.to_string()),
        )
        .with_new_user_defaults(cli.new_user());
    if apply {
        let imported = engine.ensure_ledger().await?;
        if imported > 0 {
            eprintln!(
                "ledger created; {imported} rows marked by an earlier version imported as manager {:?}",
                engine.manager()
            );
        }
    }
    let options = RunOptions {
        apply,
        prune: prune.enabled,
        delete_teams_and_keys: prune.delete_teams_and_keys,
        progress: std::io::stdout().is_terminal() && set.len() > PROGRESS_THRESHOLD,
    };
    let report = offline::run(&engine, &set, options).await;
    let cx = plan_output::Context::new(&set, apply, verbose, engine.manager());
    let code = print_report(&report, &cx, output);
    for (format, path) in &output_files {
        let rendered = plan_output::render(&report, &cx, *format);
        std::fs::write(path, rendered.stdout).map_err(|source| CliError::WriteFile {
            path: path.clone(),
            source,
        })?;
    }
    Ok(code)
}

/// The report on stdout in the format asked for; errors and a refused prune also on
/// stderr (every value escaped), for the job log; the exit code: 0 done or nothing to do,
/// 2 changes pending (plan), 1 errors.
fn print_report(
    report: &offline::RunReport,
    cx: &plan_output::Context<'_>,
    format: PlanFormat,
) -> ExitCode {
    let rendered = plan_output::render(report, cx, format);
    print!("{}", rendered.stdout);
    let errors = plan_output::all_errors(cx.set, report);
    for e in &errors {
        eprintln!("error: {}", escape(&e.to_string()));
    }
    if let Some(refusal) = &report.prune_refused {
        eprintln!("{refusal}");
    }
    if !errors.is_empty() {
        eprintln!("{}.", output::count(errors.len(), "error", "errors"));
    }
    ExitCode::from(rendered.exit_code)
}

/// Start-up checks, then the controllers and the HTTP endpoints until SIGTERM.
async fn operate(
    url: &SecretString,
    config: RunConfig,
    new_user: NewUserDefaults,
    http_addr: SocketAddr,
    lease: Option<(String, String)>,
) -> Result<(), CliError> {
    tracing::info!(identity = %config.instance, "starting");
    let listener = litellm_org_operator::http::bind(http_addr)
        .await
        .map_err(CliError::Cluster)?;
    let store = database::open(url)
        .await?
        .with_ledger_schema(&config.ledger_schema)?;
    database::ensure_schema(&store).await?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| CliError::Cluster(format!("cannot reach the Kubernetes API: {e}")))?;
    if config.install_crds {
        controller::install_crds(&client)
            .await
            .map_err(|e| CliError::Cluster(format!("cannot install the CRDs: {e}")))?;
    }
    controller::check_crds(&client, &config.namespaces)
        .await
        .map_err(CliError::Cluster)?;
    let metrics = Arc::new(litellm_org_operator::metrics::Metrics::new());
    let counter = metrics.clone();
    let engine = Arc::new(
        Engine::new(store, config.actor.clone())
            .with_manager(config.manager.clone())
            .with_new_user_defaults(new_user)
            .with_member_counts_every(config.resync)
            .with_observer(Arc::new(move |op| counter.count_database(op))),
    );
    let imported = engine.ensure_ledger().await?;
    if imported > 0 {
        tracing::info!(
            imported,
            manager = %config.manager,
            "ledger created; rows marked by an earlier version imported"
        );
    }
    let readiness = Arc::new(litellm_org_operator::http::Readiness::new(engine.clone()));
    let mut http = tokio::spawn(litellm_org_operator::http::serve(
        listener,
        readiness.clone(),
        metrics.clone(),
    ));
    tracing::info!(
        namespaces = ?config.namespaces,
        concurrency = config.concurrency,
        resync = ?config.resync,
        grants = ?config.grants.describe(),
        "starting controllers"
    );
    let leadership = match lease {
        None => controller::Leadership::default(),
        Some((name, namespace)) => {
            let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &name)
                .with_namespace(&namespace)
                .with_identity(&config.instance)
                .with_duration(15)
                .with_grace(5)
                .build()
                .await
                .map_err(|e| {
                    CliError::Cluster(format!("cannot set up the lease {namespace}/{name}: {e}"))
                })?;
            let (rx, _task) = manager.watch().await;
            tracing::info!(lease = %name, %namespace, identity = %config.instance, "leader election on");
            controller::Leadership::from_lease(rx)
        }
    };
    // The probes and the controllers live and die together: a server that stops (its
    // listener failed) ends the process with its error.
    let controllers = controller::run(client, engine, config, metrics, readiness, leadership);
    tokio::select! {
        result = controllers => {
            http.abort();
            result.map_err(|e| CliError::Cluster(e.to_string()))
        }
        served = &mut http => Err(CliError::Cluster(match served {
            Ok(Ok(())) => format!("the server of /healthz, /readyz and /metrics on {http_addr} stopped"),
            Ok(Err(message)) => message,
            Err(join) => format!("the server of /healthz, /readyz and /metrics on {http_addr} failed: {join}"),
        })),
    }
}
