//! One module per subcommand; each turns its arguments into settings and calls the agent
//! library.

mod completions;
mod config;
mod create;
mod join;
mod manage;
mod secret;
mod tls;
mod token;

use gru_agent::store::{EtcdSettings, Store};

use crate::args::{Cli, Command, EtcdArgs};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let etcd = etcd_settings(&cli.etcd);
    match cli.command {
        Command::Create { cluster, force } => create::run(&etcd, &cluster, force).await,
        Command::Config(command) => config::run(&etcd, command).await,
        Command::Join(args) => join::run(etcd, args).await,
        Command::Manage(args) => manage::run(&etcd, args).await,
        Command::Token(command) => token::run(&etcd, command).await,
        Command::Secret(command) => secret::run(&etcd, command).await,
        Command::Tls(command) => tls::run(command),
        Command::Leave { cluster, node, tls } => {
            common::keys::check_name("node", &node)
                .map_err(|err| crate::exit::Usage(err.to_string()))?;
            let args = crate::args::ManageArgs {
                cluster: Some(cluster),
                script: Some(format!("leave node {node}")),
                token_file: None,
                output: crate::args::OutputFormat::Text,
                tls,
            };
            manage::run(&etcd, args).await
        }
        Command::Completions { shell } => completions::run(shell, &mut std::io::stdout()),
    }
}

fn etcd_settings(args: &EtcdArgs) -> EtcdSettings {
    EtcdSettings {
        endpoints: EtcdSettings::parse_endpoints(&args.endpoints),
        user: args.user.clone(),
        password: args.password.clone(),
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
    }
}

async fn connect(etcd: &EtcdSettings) -> anyhow::Result<Store> {
    Ok(Store::connect(etcd).await?)
}
