//! Links the unwinder (gcc's `libgcc_eh.a`) into nemoclaw on Linux/glibc targets, so that
//! `libgcc_s.so.1` is no longer loaded at every start.
//!
//! Every `nemoclaw` exec pays for each shared library it loads; `libgcc_s` also runs a CPU
//! feature probe (cpuid, expensive under virtualisation) in its constructor. Measured here:
//! 0.11 ms of the 0.9 ms an exec of `/bin/true` takes, on every `run`, `exec` and supervisor
//! start. Rust's std asks for `-lgcc_s`; a static `-lgcc_eh` placed before it (this crate's
//! native libraries come before std's on the link line) defines the same `_Unwind_*`
//! symbols, so with `--as-needed` the shared one is dropped. This is what `-static-libgcc`
//! does for C and C++ programs. Panics unwind as before (the crate's tests exercise them).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // An escape hatch for toolchains without libgcc_eh.a (gcc ships it).
    println!("cargo:rerun-if-env-changed=NEMOCLAW_DYNAMIC_LIBGCC");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let static_crt = features.split(',').any(|f| f == "crt-static");
    let opted_out = std::env::var_os("NEMOCLAW_DYNAMIC_LIBGCC").is_some();
    if os == "linux" && env == "gnu" && !static_crt && !opted_out {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
