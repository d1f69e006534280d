//! The same target predicate as the postsocket crate's build.rs: `web` is the
//! browser (wasm32 with no OS). Natively this crate compiles to an empty library.
fn main() {
    cfg_aliases::cfg_aliases! {
        web: { all(target_arch = "wasm32", target_os = "unknown") },
    }
}
