//! The `vcsync` binary: argument parsing, logging set-up and exit codes.
//!
//! Exit codes: 0 success, 1 runtime failure (an API unreachable, a bad
//! kubeconfig, an invalid policy file), 2 usage error.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use vcsync::config::{Args, Command, LogFormat, PolicyCommand};
use vcsync::kube_clients::error_chain_line;

fn main() -> ExitCode {
    // kube's rustls is built with `ring` only, but another crate in the
    // dependency graph enabling a second provider would make rustls refuse to
    // pick one implicitly; installing it explicitly first rules that out.
    // An Err means one is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let args = Args::parse();
    if let Err(err) = vcsync::logging::init(args.log_format, &args.log_level) {
        eprintln!("error: {}", error_chain_line(&err));
        return ExitCode::FAILURE;
    }

    match args.command {
        Command::Run(run) => match run_command(*run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                // One line, no backtrace: these are operator errors, not bugs.
                let line = error_chain_line(err.as_ref());
                // A log collector reading JSON would drop the plain line, so
                // it gets the error as an event too; in text mode that would
                // only print the same line twice.
                if args.log_format == LogFormat::Json {
                    tracing::error!(error = %line, "vcsync run failed");
                }
                eprintln!("error: {line}");
                ExitCode::FAILURE
            }
        },
        Command::Kubeconfig(args) => match vcsync::kubeconfig::build_from_files(&args.source()) {
            Ok(kubeconfig) => {
                print!("{kubeconfig}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {}", error_chain_line(&err));
                ExitCode::FAILURE
            }
        },
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => match vcsync::policy::Policy::load(&file) {
            Ok(policy) => {
                print!("{}", policy.to_yaml());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_command(run: vcsync::config::RunArgs) -> anyhow::Result<()> {
    let config = run.into_config();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = vcsync::run::shutdown_signal()?;
        vcsync::run::run_until(config, shutdown).await?;
        Ok(())
    })
}
