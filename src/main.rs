//! dfscan's command line: parse arguments, build the configuration once, run, pick the exit code.
mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => commands::scan::scan(args),
        Command::Watch(args) => commands::scan::watch(args),
        Command::Import(args) => commands::prepare::import(args).map(|()| 0),
        Command::Extract(args) => commands::prepare::extract(args),
        Command::SelfBlend(args) => commands::prepare::self_blend(args).map(|()| 0),
        Command::Train(args) => commands::train::train(args).map(|()| 0),
        Command::TrainOod(args) => commands::train::train_ood(args).map(|()| 0),
        Command::Eval(args) => commands::measure::eval(args).map(|()| 0),
        Command::Cv(args) => commands::cv::cv(args).map(|()| 0),
        Command::FitEnsemble(args) => commands::cv::fit_ensemble(args).map(|()| 0),
        Command::Bench(args) => commands::measure::bench(args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("dfscan: {e:#}");
            ExitCode::from(2)
        }
    }
}
