//! `cargo bench -p bench --bench matrix [-- --quick | bench flags]`: the real-socket matrix
//! (see `bench::matrix`), written to `out/bench/`. Same flags as `meshsim bench`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: bench::cli::BenchArgs,
}

fn main() {
    // cargo passes `--bench` to every bench target; it means nothing here.
    let argv: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let cli = Cli::parse_from(&argv);
    let command = format!(
        "cargo bench -p bench --bench matrix -- {}",
        argv[1..].join(" ")
    );
    let sidecar = (env!("CARGO_BIN_EXE_sidecar").into(), Vec::new());
    match bench::cli::run(&cli.args, sidecar, command, &mut |m| eprintln!("  {m}")) {
        Ok(r) => {
            print!("{}", reports::bench::markdown(&r));
            eprintln!("  wrote {}", cli.args.out.display());
        }
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    }
}
