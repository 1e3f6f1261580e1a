//! dfscan's command line: parse arguments, build the configuration once, run, pick the exit code.
mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use commands::Outcome;

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => commands::scan::scan(args),
        Command::Watch(args) => commands::scan::watch(args),
        Command::Import(args) => commands::prepare::import(args).map(|()| Outcome::Clean),
        Command::Extract(args) => commands::prepare::extract(args),
        Command::SelfBlend(args) => commands::prepare::self_blend(args).map(|()| Outcome::Clean),
        Command::Train(args) => commands::train::train(args).map(|()| Outcome::Clean),
        Command::TrainOod(args) => commands::train::train_ood(args).map(|()| Outcome::Clean),
        Command::Eval(args) => commands::measure::eval(args).map(|()| Outcome::Clean),
        Command::Cv(args) => commands::cv::cv(args).map(|()| Outcome::Clean),
        Command::FitEnsemble(args) => commands::cv::fit_ensemble(args).map(|()| Outcome::Clean),
        Command::FitAttribution(args) => commands::attribution::fit_attribution(args).map(|()| Outcome::Clean),
        Command::Bench(args) => commands::measure::bench(args).map(|()| Outcome::Clean),
        Command::Submit(args) => commands::submit::submit(args),
        Command::Worker(args) => commands::worker::worker(args),
        Command::Results(args) => commands::results::results(args),
    };
    // The one place exit codes are chosen: 0 clean, 1 fakes found, 2 errors (a failed input or
    // a failed command), 130 interrupted (as a shell reports Ctrl-C).
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::FakesFound) => ExitCode::from(1),
        Ok(Outcome::Failures) => ExitCode::from(2),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) => {
            eprintln!("dfscan: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// glibc gives the top of a heap back to the kernel once more than 128 kB is free there, and
/// libtorch frees every activation after each forward pass, so each pass faulted in and zeroed
/// its pages again: the MesoInception4 scan of the bench clips spent 1.4-1.6 s of its ~13 CPU
/// seconds in the kernel, 0.2 s with these limits (README, "Speed"). Memory freed stays mapped
/// for the next pass; blocks over 32 MB are still mapped and unmapped one by one, so a large
/// batch cannot pin a large heap.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; it runs before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
