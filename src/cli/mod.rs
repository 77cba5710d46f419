//! The `x700` command line. Every command takes `--json` and then prints
//! exactly one JSON object; the names of commands, flags and JSON keys are a
//! contract with users' scripts.

mod args;
mod bench;
mod cluster;
mod commands;
mod decode;
mod import;
mod load;
mod output;
mod pool;
mod remote;
mod replay;
mod serve;
mod tenant;
mod trace;

use args::{Cli, Command};
use clap::Parser;

/// Runs the command line; returns the process exit code: 0 when the command
/// did its job (a lookup that rejects is an answer, so 0 too), 1 when the
/// operation failed (conflict, not found, bad number, storage error), 2 for
/// usage errors.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let _ = error.print();
            return code;
        }
    };
    let json = cli.command.json();
    let outcome = match cli.command {
        Command::Bind(bind) => commands::bind(&bind),
        Command::Lookup(lookup) => commands::lookup(&lookup),
        Command::Unbind(unbind) => commands::unbind(&unbind),
        Command::Update(update) => commands::update(&update),
        Command::Query(query) => commands::query(&query),
        Command::Stats(stats) => commands::stats(&stats),
        Command::Check(check) => commands::check(&check.stats_args()),
        Command::Load(load) => load::load(&load),
        Command::Demo(demo) => load::demo(&demo),
        Command::Serve(serve) => return serve::serve(&serve),
        Command::Bench(bench) => return bench::bench(&bench),
        Command::Cluster(command) => cluster::run(&command),
        Command::Decode(decode) => return decode::decode(&decode),
        Command::Replay(replay) => return replay::replay(&replay),
        Command::Import(import) => import::import(&import),
        Command::Tenant(command) => tenant::tenant(&command),
        Command::Block(command) => tenant::block(&command),
        Command::Pool(command) => pool::pool(&command),
        Command::Trace(args) => trace::trace(&args),
    };
    output::emit(&outcome, json)
}
