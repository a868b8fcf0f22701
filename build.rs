//! Link-time set-up for libtorch: an rpath so binaries, tests and benches find libtorch without LD_LIBRARY_PATH,
//! and, in cuda mode, a hard link to libtorch_cuda so `--device cuda` works.
//!
//! torch-sys exports the directory of the libtorch it linked as DEP_TCH_LIBTORCH_LIB (visible to direct dependents
//! only, hence the direct torch-sys dependency). ADVDET_CUDA=1 keeps libtorch_cuda.so in the NEEDED list (the linker
//! drops it otherwise, as nothing references its symbols) and ADVDET_EXTRA_RPATH adds further rpath entries, such as
//! the torch/lib folder of a GPU host's own PyTorch.
fn main() {
    println!("cargo:rerun-if-env-changed=ADVDET_CUDA");
    println!("cargo:rerun-if-env-changed=ADVDET_EXTRA_RPATH");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if let Ok(extra) = std::env::var("ADVDET_EXTRA_RPATH") {
        for dir in extra.split(':').filter(|d| !d.is_empty()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
    if std::env::var("ADVDET_CUDA").map(|v| v == "1").unwrap_or(false) {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
