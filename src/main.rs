//! The `tinylet` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use tinylet::cli::{self, Command};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tinylet: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match command {
        Command::Version => {
            println!("{}", tinylet::version_line());
            0
        }
        Command::Help(topic) => {
            print!("{}", cli::help(topic));
            0
        }
        Command::Run(flags) => tinylet::agent::run_main(*flags),
        Command::Status(flags) => tinylet::agent::status_main(flags),
        Command::Proxy(args) => tinylet::proxy::cmd::proxy_main(&args),
        Command::Ipvs(args) => tinylet::proxy::cmd::ipvs_main(&args),
        Command::Nft(args) => tinylet::proxy::nft::cmd::nft_main(&args),
        Command::Doctor(flags) => tinylet::doctor::doctor_main(*flags),
        Command::Shutdown(flags) => tinylet::shutdown::shutdown_main(*flags),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
