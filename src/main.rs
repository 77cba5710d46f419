//! The `x700` command.

fn main() {
    std::process::exit(x700::cli::run());
}
