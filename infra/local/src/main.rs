//! `ripple-local` (being written).

fn main() {
    eprintln!("ripple-local: the local gateway is being written");
    std::process::exit(1);
}
