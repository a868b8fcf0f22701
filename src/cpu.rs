//! Reproducible CPU numerics: libtorch's CPU kernels pick their code path by processor (ATen's capability dispatch,
//! oneDNN's JIT ISA and cache-size blocking, NNPACK's tiling, MKL's vendor branch) and some reductions split their work
//! by thread count, so the same suite gave different weights and scores on different CPUs. The reproducible mode pins
//! all of them before libtorch first runs; the native mode leaves libtorch's own choices (faster, per machine only).
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// How the CPU kernels are chosen (`[suite] cpu_mode`, `--cpu-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuMode {
    /// Pinned kernels and thread count: the same bytes on any x86-64 machine with AVX2 and FMA.
    #[default]
    Reproducible,
    /// libtorch's own choice for this processor: faster, reproducible on this machine only.
    Native,
}

impl std::str::FromStr for CpuMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reproducible" => Ok(CpuMode::Reproducible),
            "native" => Ok(CpuMode::Native),
            _ => Err(Error::config("cpu-mode", s, "expected reproducible or native")),
        }
    }
}

impl std::fmt::Display for CpuMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuMode::Reproducible => "reproducible",
            CpuMode::Native => "native",
        })
    }
}

/// ATen's vectorised kernels: the AVX2 build of every kernel, whatever wider ISA the host has.
pub const ATEN_CPU_CAPABILITY: &str = "avx2";
/// MKL's conditional numerical reproducibility branch that gives the same results on Intel and non-Intel processors.
pub const MKL_CBWR: &str = "COMPATIBLE";
/// MKL may otherwise run a call on fewer threads than asked (its reproducibility conditions require this off).
pub const MKL_DYNAMIC: &str = "FALSE";
/// Intra-op threads: reductions over more than 32768 elements split their partial sums by thread count.
pub const THREADS: i32 = 2;

/// The CPU numerics a process runs with: the mode, the host and what was pinned. Recorded in the manifest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuNumerics {
    pub mode: CpuMode,
    /// The widest vector ISA the host offers: `avx512`, `avx2`, `avx` or `sse`.
    pub host_isa: String,
    pub host_vendor: String,
    /// Every setting the mode fixed, with its value (empty in native mode).
    pub pinned: BTreeMap<String, String>,
    /// The variables of `KERNEL_ENV` the process was started with (the reproducible mode overrides ATEN_CPU_CAPABILITY,
    /// MKL_CBWR, MKL_DYNAMIC and the thread counts, makes the oneDNN and MKL instruction caps moot, and refuses
    /// OMP_DYNAMIC).
    pub environment: BTreeMap<String, String>,
    pub threads: i32,
}

/// Environment variables that change which CPU kernels libtorch, oneDNN and MKL run.
pub const KERNEL_ENV: [&str; 10] = [
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "MKL_DYNAMIC",
    "MKL_NUM_THREADS",
    "OMP_DYNAMIC",
    "OMP_NUM_THREADS",
];

fn kernel_environment() -> BTreeMap<String, String> {
    KERNEL_ENV.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect()
}

impl CpuNumerics {
    /// A short tag for cache keys: everything that changes the bytes a CPU stage produces.
    pub fn tag(&self) -> String {
        match self.mode {
            CpuMode::Reproducible => {
                let pins: Vec<String> = self.pinned.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("cpu-reproducible[{}]", pins.join(","))
            }
            CpuMode::Native => {
                let env: Vec<String> = self.environment.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("cpu-native[{} {} threads={} {}]", self.host_vendor, self.host_isa, self.threads, env.join(","))
            }
        }
    }
}

static APPLIED: OnceLock<CpuNumerics> = OnceLock::new();

// libtorch's global context switches (C++ members of at::Context, Itanium ABI: `this` first). tch has no binding.
extern "C" {
    #[link_name = "_ZN2at13globalContextEv"]
    fn at_global_context() -> *mut std::ffi::c_void;
    #[link_name = "_ZN2at7Context20setUserEnabledMkldnnEb"]
    fn at_set_user_enabled_mkldnn(ctx: *mut std::ffi::c_void, enabled: bool);
    #[link_name = "_ZN2at7Context20setUserEnabledNNPACKEb"]
    fn at_set_user_enabled_nnpack(ctx: *mut std::ffi::c_void, enabled: bool);
    #[link_name = "_ZNK2at7Context17userEnabledMkldnnEv"]
    fn at_user_enabled_mkldnn(ctx: *const std::ffi::c_void) -> bool;
    #[link_name = "_ZNK2at7Context17userEnabledNNPACKEv"]
    fn at_user_enabled_nnpack(ctx: *const std::ffi::c_void) -> bool;
}

/// Sets the CPU numerics of this process. Call it before the first tensor operation (libtorch reads
/// `ATEN_CPU_CAPABILITY` and MKL reads `MKL_CBWR` once, at their first use) and before any other thread starts:
/// advdet's `main` does. A second call with the same mode is a no-op; with the other mode it is an error.
pub fn pin(mode: CpuMode) -> Result<&'static CpuNumerics> {
    if let Some(done) = APPLIED.get() {
        if done.mode != mode {
            return Err(Error::config(
                "cpu-mode",
                mode,
                format!("this process already runs in {} mode; the CPU mode is fixed per process", done.mode),
            ));
        }
        return Ok(done);
    }
    let (vendor, isa, environment) = (host_vendor(), host_isa(), kernel_environment());
    let mut pinned = BTreeMap::new();
    if mode == CpuMode::Reproducible {
        if !has_avx2_fma() {
            return Err(Error::Device(format!(
                "the reproducible CPU mode needs AVX2 and FMA, and this {vendor} processor offers {isa}: \
                 run with --cpu-mode native (or `cpu_mode = \"native\"` in the suite), whose results hold on this machine only"
            )));
        }
        // OpenMP reads OMP_DYNAMIC when its library loads, before main: too late to override, so refuse it instead.
        if let Some(v) = environment.get("OMP_DYNAMIC").filter(|v| !matches!(v.to_lowercase().as_str(), "false" | "0"))
        {
            return Err(Error::config(
                "OMP_DYNAMIC",
                v,
                "lets OpenMP change the thread count between calls, which changes results; unset it or run with \
                 --cpu-mode native",
            ));
        }
        let env = [("ATEN_CPU_CAPABILITY", ATEN_CPU_CAPABILITY), ("MKL_CBWR", MKL_CBWR), ("MKL_DYNAMIC", MKL_DYNAMIC)];
        for (k, v) in env {
            // Called at start-up before any other thread runs (see the doc comment): nothing reads the environment
            // concurrently.
            std::env::set_var(k, v);
            pinned.insert(k.to_string(), v.to_string());
        }
        // SAFETY: at::globalContext() returns the process-wide context, alive for the whole process; the setters
        // take a plain bool.
        unsafe {
            let ctx = at_global_context();
            at_set_user_enabled_mkldnn(ctx, false);
            at_set_user_enabled_nnpack(ctx, false);
            pinned.insert("mkldnn".into(), at_user_enabled_mkldnn(ctx).to_string());
            pinned.insert("nnpack".into(), at_user_enabled_nnpack(ctx).to_string());
        }
        tch::set_num_threads(THREADS);
        pinned.insert("threads".into(), THREADS.to_string());
    }
    let numerics = CpuNumerics {
        mode,
        host_isa: isa.into(),
        host_vendor: vendor,
        pinned,
        environment,
        threads: tch::get_num_threads(),
    };
    Ok(APPLIED.get_or_init(|| numerics))
}

/// The numerics this process runs with: what `pin` set, or libtorch's own choice when nothing was pinned.
pub fn current() -> CpuNumerics {
    APPLIED.get().cloned().unwrap_or_else(|| CpuNumerics {
        mode: CpuMode::Native,
        host_isa: host_isa().into(),
        host_vendor: host_vendor(),
        pinned: BTreeMap::new(),
        environment: kernel_environment(),
        threads: tch::get_num_threads(),
    })
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2_fma() -> bool {
    false
}

/// The widest vector ISA of the host, as ATen's dispatch names its levels.
pub fn host_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
            return "avx512";
        }
        if has!("avx2") && has!("fma") {
            return "avx2";
        }
        if has!("avx") {
            return "avx";
        }
        "sse"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

/// The processor's vendor string (`GenuineIntel`, `AuthenticAMD`, ...).
pub fn host_vendor() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let r = std::arch::x86_64::__cpuid(0);
        let bytes: Vec<u8> = [r.ebx, r.edx, r.ecx].iter().flat_map(|w| w.to_le_bytes()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "unknown".to_string()
    }
}
