//! Defines the two target predicates once. `web` is the browser (wasm32 with no OS);
//! `native` is everything else. Cargo.toml repeats the same literals in its target tables.
fn main() {
    cfg_aliases::cfg_aliases! {
        web: { all(target_arch = "wasm32", target_os = "unknown") },
        native: { not(all(target_arch = "wasm32", target_os = "unknown")) },
    }
}
