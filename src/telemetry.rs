//! Logging: `RUST_LOG` filters, `--log-format json|text` picks the shape. Logs go to stderr.

use tracing_subscriber::EnvFilter;

/// Shape of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber; `default_level` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only for a terminal: escape sequences in a redirected log are noise to a reader
    // and to a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        // Each line carries its own fields (a reconcile's lines name their object's kind,
        // namespace and name). The span is left out: tracing-subscriber writes a span's name
        // under the key `name` beside its fields, so the reconcile span's `name` field (the
        // object's) would be a duplicate key that most JSON readers resolve to "reconcile".
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}
