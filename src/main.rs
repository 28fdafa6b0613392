//! The `sluice` command line (SPEC §2).

use clap::{Parser, Subcommand};
use sluice::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "A gateway for the Anthropic Claude API"
)]
struct Cli {
    /// Config file.
    #[arg(
        short = 'c',
        long = "conf",
        default_value = "conf/sluice.yaml",
        global = true
    )]
    conf: PathBuf,
    /// Validate the config and exit (0 = valid; else every problem as FILE:LINE:COL).
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Run in the background (Pingora daemon mode).
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Take over the listening sockets of a running sluice (zero-downtime upgrade).
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print a new gateway key and the config line holding its SHA-256.
    Keygen {
        /// Tenant name for the printed config snippet.
        #[arg(long)]
        tenant: String,
    },
    /// Translate an nginx/OpenResty front-proxy config into a starting sluice config
    /// (YAML on stdout; everything not translated as FILE:LINE: warnings on stderr).
    ImportNginx {
        /// The nginx.conf to translate.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::ImportNginx { file }) = &cli.cmd {
        return match sluice::nginx_import::import_file(file) {
            Ok(out) => {
                print!("{}", out.yaml);
                let name = file.display().to_string();
                for w in &out.warnings {
                    eprintln!("{}", w.render(&name));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(Cmd::Keygen { tenant }) = &cli.cmd {
        let key = sluice::keygen::new_key();
        print!("{}", sluice::keygen::render(tenant, &key));
        return ExitCode::SUCCESS;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();

    let cfg = match Config::load(&cli.conf) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            if !cli.test {
                eprintln!("sluice: refusing to start with an invalid config");
            }
            return ExitCode::from(1);
        }
    };
    if cli.test {
        for w in &cfg.warnings {
            eprintln!("{w}");
        }
        println!("{}: configuration is valid", cli.conf.display());
        return ExitCode::SUCCESS;
    }
    match sluice::server::run(
        cfg,
        sluice::server::RunOptions {
            daemon: cli.daemon,
            upgrade: cli.upgrade,
        },
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::from(1)
        }
    }
}
