//! `gru manage [--cluster c] [-c script] [--output text|json]`: the shell, a script given
//! with `-c`, or a script on standard input when it is not a terminal.
//!
//! A script runs every command even after one failed, then exits 64 if a line was not
//! understood, 1 if a command failed, 0 otherwise. The interactive shell exits 0.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use common::auth::OperatorToken;
use gru_agent::store::EtcdSettings;

use crate::args::{ManageArgs, OutputFormat};
use crate::exit::Usage;
use crate::manage::{self, Format, Session, Summary};

pub async fn run(etcd: &EtcdSettings, args: ManageArgs) -> anyhow::Result<()> {
    let format = match args.output {
        OutputFormat::Text => Format::Text,
        OutputFormat::Json => Format::Json,
    };
    let script = match args.script {
        Some(script) => Some(script),
        None if !std::io::stdin().is_terminal() => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the script on standard input")?;
            Some(text)
        }
        None => None,
    };
    let token = operator_token(args.token_file.as_deref(), std::env::var("GRU_TOKEN").ok())?;
    let tls = client_tls(&args.tls)?;
    let store = super::connect(etcd).await?;
    let mut session = Session::new(store, format)
        .with_token(token)
        .with_client(manage::AgentClient::with_tls(tls));
    let Some(script) = script else {
        if let Some(cluster) = &args.cluster {
            let outcome = session.run_line(&format!("use {cluster}")).await;
            if let manage::Step::Done(outcome) = outcome {
                manage::print(&outcome, format);
            }
        }
        return manage::interactive(&mut session).await;
    };
    let script = match &args.cluster {
        Some(cluster) => format!("use {cluster}\n{script}"),
        None => script,
    };
    let summary = manage::run_script(&mut session, &script).await;
    verdict(summary)
}

/// The TLS of the calls to agents: the CA, and the operator's certificate when given.
fn client_tls(
    args: &crate::args::ManageTlsArgs,
) -> anyhow::Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
    let Some(ca) = &args.tls_ca else {
        return Ok(None);
    };
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    gru_agent::tls::client_config(ca, identity)
        .map(|config| Some(std::sync::Arc::new(config)))
        .map_err(|err| Usage(err.to_string()).into())
}

/// The operator token: from `--token-file` if given, else from `GRU_TOKEN` (an empty
/// variable counts as none). A token that does not parse is a usage error that says why.
fn operator_token(
    file: Option<&std::path::Path>,
    variable: Option<String>,
) -> anyhow::Result<Option<OperatorToken>> {
    let (text, from) = match file {
        Some(file) => (
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?,
            format!("--token-file {}", file.display()),
        ),
        None => match variable.filter(|v| !v.trim().is_empty()) {
            Some(text) => (text, "GRU_TOKEN".to_owned()),
            None => return Ok(None),
        },
    };
    OperatorToken::parse(&text)
        .map(Some)
        .map_err(|why| Usage(format!("{from}: {why}")).into())
}

/// The exit of a script: a line not understood wins (64), then a failed command (1).
fn verdict(summary: Summary) -> anyhow::Result<()> {
    if summary.usage > 0 {
        return Err(Usage(format!(
            "{} of {} command(s) not understood, {} failed",
            summary.usage, summary.commands, summary.failed
        ))
        .into());
    }
    if summary.failed > 0 {
        anyhow::bail!(
            "{} of {} command(s) failed",
            summary.failed,
            summary.commands
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;

    #[test]
    fn a_script_exits_64_for_a_line_not_understood_then_1_for_a_failure() {
        let summary = |failed, usage| Summary {
            commands: 5,
            failed,
            usage,
        };
        assert!(verdict(summary(0, 0)).is_ok());
        let failed = verdict(summary(2, 0)).expect_err("failed");
        assert_eq!(exit::code_for(&failed), exit::FAILURE);
        assert_eq!(failed.to_string(), "2 of 5 command(s) failed");
        let usage = verdict(summary(1, 1)).expect_err("usage");
        assert_eq!(exit::code_for(&usage), exit::USAGE);
    }
}
