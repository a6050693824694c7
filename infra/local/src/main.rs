//! `ripple-local`: the whole Ripple stack on one machine (`make dev`). Flags: `--help`.

use clap::Parser;
use ripple_local::cli::Args;
use ripple_local::stack::LocalStack;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // dynoxide logs every 4xx it answers (conditional-check failures included) as a
            // warning; those are normal traffic here.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,dynoxide::server=error")),
        )
        .with_writer(std::io::stderr)
        .init();

    // The functions' CloudWatch EMF lines are function logs: stderr, with the rest of them.
    shared::telemetry::emf::set_sink(shared::telemetry::emf::Sink::Stderr);
    let stack = LocalStack::start(args.stack_options()).await?;
    // The banner goes to stdout (logs go to stderr) so scripts can read the URLs.
    println!("{}", stack.banner());

    wait_for_stop_signal().await?;
    eprintln!("ripple-local: stopping");
    stack.stop().await;
    Ok(())
}

/// Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
