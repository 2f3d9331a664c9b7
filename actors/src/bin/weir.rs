//! The `weir` command line.

fn main() {
    eprintln!("weir: the simulate and bench commands are not built yet");
    std::process::exit(2);
}
