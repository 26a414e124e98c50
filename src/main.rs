use clap::Parser;
use std::process::ExitCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use ragstore::config::{Cli, Command, Config, LogFormat};
use ragstore::App;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => serve(*config),
        Command::Search(args) => search(args),
        Command::Ingest(args) => ingest(args),
        Command::Keys(cmd) => keys(cmd),
        Command::Projects(cmd) => projects(cmd),
        Command::MigrateIndex(args) => migrate_index(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "ragstore stopped with an error");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RAGSTORE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn search(args: ragstore::cli::SearchArgs) -> anyhow::Result<()> {
    ragstore::cli::search(args, &mut std::io::stdout().lock()).await
}

#[tokio::main]
async fn ingest(args: ragstore::cli::IngestArgs) -> anyhow::Result<()> {
    // Not locked: the progress bars draw to stdout from other threads.
    let mut out = std::io::stdout();
    let interactive = std::io::IsTerminal::is_terminal(&out);
    ragstore::cli::ingest(args, &mut out, interactive).await
}

#[tokio::main]
async fn keys(cmd: ragstore::admin::KeysCommand) -> anyhow::Result<()> {
    ragstore::admin::keys(
        cmd,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
    .await
}

#[tokio::main]
async fn projects(cmd: ragstore::admin::ProjectsCommand) -> anyhow::Result<()> {
    ragstore::admin::projects(cmd, &mut std::io::stdout().lock()).await
}

#[tokio::main]
async fn migrate_index(args: ragstore::admin::MigrateIndexArgs) -> anyhow::Result<()> {
    init_tracing(LogFormat::Text);
    ragstore::admin::migrate_index(args, &mut std::io::stdout().lock()).await
}

#[tokio::main]
async fn serve(config: Config) -> anyhow::Result<()> {
    init_tracing(config.log_format);
    let addr = config.addr;
    let data_dir = config.data_dir.clone();
    let app = App::build(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %data_dir.display(), "ragstore listening");

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    app.serve(listener, shutdown).await
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
    shutdown.cancel();
}
