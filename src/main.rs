//! The `wick` command line; everything it does is in `wick::cli`.

fn main() {
    wick::cli::command::main();
}
