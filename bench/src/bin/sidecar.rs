//! `sidecar`: one meshsim sidecar on real sockets (the benches start it as its own process).

use clap::Parser;

#[derive(Parser)]
#[command(about = "One meshsim sidecar on real sockets, with static routes")]
struct Cli {
    #[command(flatten)]
    args: bench::sidecar::SidecarArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match bench::sidecar::run(&cli.args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidecar: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
