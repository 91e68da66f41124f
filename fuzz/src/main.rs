//! The AFL++ binary: `junction-fuzz TARGET` fuzzes one target of the library (built by
//! `fuzz/run` with `cargo afl build --features afl`).

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(run) = junction_fuzz::target(&name) else {
        let names: Vec<&str> = junction_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: junction-fuzz TARGET (one of: {})", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| run(data));
}
