//! The reproducible CPU mode and the noise-aware regression check, on the smoke suite that CI checks: the same
//! results.csv under different ISA caps (the caps emulate an older processor on this one), a deliberately weakened
//! detector caught by `advdet check`, and the numerical noise of a native run under another ISA cap let through.
mod common;

use common::{advdet, run_advdet, TestResult};
use std::path::{Path, PathBuf};

/// An AVX2 machine, emulated: ATen's dispatch, oneDNN's JIT and MKL's branch and instruction set capped at AVX2.
const CAP_AVX2: [(&str, &str); 4] = [
    ("ATEN_CPU_CAPABILITY", "avx2"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ("MKL_CBWR", "AVX2"),
    ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
];

/// One heavy run at a time: the tests of this file each run whole suites, and side by side on a 2-core machine they
/// would only fight over the cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn suite_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("attacks").join("smoke.toml")
}

fn baseline() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reports").join("baselines").join("smoke.csv")
}

/// Runs `suite` into `out` (its own stage cache; the model cache is shared) with `env` added and the kernel variables
/// of the test's own environment removed, and returns the results.csv path.
fn run_smoke(
    suite: &Path,
    out: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut cmd = advdet();
    cmd.args(["run", suite.to_str().ok_or("path")?, "--out", out.to_str().ok_or("path")?, "--device", "cpu"]);
    cmd.args(extra);
    for k in advdet::cpu::KERNEL_ENV {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let o = cmd.output()?;
    if !o.status.success() {
        return Err(format!(
            "advdet run {} exited {:?}:\n{}",
            suite.display(),
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(out.join("smoke").join("results.csv"))
}

fn check(results: &Path) -> (i32, String, String) {
    run_advdet(&["check", results.to_str().unwrap_or(""), "--baseline", baseline().to_str().unwrap_or("")])
}

#[test]
fn the_smoke_suite_gives_the_same_bytes_under_two_isa_caps_in_the_reproducible_mode() -> TestResult {
    let _one = serial();
    let tmp = tempfile::tempdir()?;
    let host = run_smoke(&suite_file(), &tmp.path().join("host"), &[], &[])?;
    let capped = run_smoke(&suite_file(), &tmp.path().join("avx2"), &CAP_AVX2, &[])?;
    let (a, b) = (std::fs::read(&host)?, std::fs::read(&capped)?);
    assert_eq!(String::from_utf8(a)?, String::from_utf8(b)?, "the pinned mode moved with the ISA cap");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("avx2").join("smoke").join("manifest.json"))?)?;
    assert_eq!(manifest["cpu"]["mode"], "reproducible");
    assert_eq!(manifest["cpu"]["pinned"]["ATEN_CPU_CAPABILITY"], advdet::cpu::ATEN_CPU_CAPABILITY);
    assert_eq!(manifest["cpu"]["pinned"]["MKL_CBWR"], advdet::cpu::MKL_CBWR);
    assert_eq!(manifest["cpu"]["pinned"]["mkldnn"], "false");
    assert_eq!(manifest["cpu"]["environment"]["ONEDNN_MAX_CPU_ISA"], "AVX2");
    let (code, stdout, stderr) = check(&capped);
    assert_eq!(code, 0, "{stdout}{stderr}");
    Ok(())
}

#[test]
fn training_gives_the_same_weights_under_two_isa_caps_in_the_reproducible_mode() -> TestResult {
    let _one = serial();
    let tmp = tempfile::tempdir()?;
    let train = |name: &str, env: &[(&str, &str)]| -> std::io::Result<std::process::Child> {
        let mut cmd = advdet();
        let out = tmp.path().join(format!("{name}.safetensors"));
        cmd.args(["train", "--dataset", "mnist", "--epochs", "1", "--device", "cpu", "--out"]).arg(out);
        for k in advdet::cpu::KERNEL_ENV {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cmd.spawn()
    };
    // Both at once: a loaded machine must not change the bytes either.
    let mut runs = [train("host", &[])?, train("avx2", &CAP_AVX2)?];
    for r in &mut runs {
        assert!(r.wait()?.success(), "advdet train failed");
    }
    let (a, b) =
        (std::fs::read(tmp.path().join("host.safetensors"))?, std::fs::read(tmp.path().join("avx2.safetensors"))?);
    assert!(a == b, "one epoch of LeNet gave different weights under the AVX2 cap");
    Ok(())
}

#[test]
fn check_catches_a_deliberately_weakened_detector_on_the_smoke_suite() -> TestResult {
    let _one = serial();
    let tmp = tempfile::tempdir()?;
    // Mahalanobis with a large input-preprocessing step: every image, clean or adversarial, is first pushed towards
    // its nearest class mean, which erases most of what the distance separated.
    let text = std::fs::read_to_string(suite_file())?;
    let names = "names = [\"msp\", \"entropy\", \"margin\", \"kl\", \"mahalanobis\"]";
    let weakened = text.replace(names, &format!("{names}\nmahalanobis = {{ magnitude = 0.3 }}"));
    assert_ne!(text, weakened, "the smoke suite's [detectors] table moved");
    let suite = tmp.path().join("smoke.toml");
    std::fs::write(&suite, weakened)?;
    let results = run_smoke(&suite, &tmp.path().join("out"), &[], &[])?;
    let (code, stdout, stderr) = check(&results);
    assert_eq!(code, 1, "the weakened detector passed the check:\n{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("fell by")).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains("detector=mahalanobis")), "{stdout}");
    Ok(())
}

#[test]
fn check_lets_through_a_native_run_under_another_isa_cap() -> TestResult {
    let _one = serial();
    let tmp = tempfile::tempdir()?;
    let results = run_smoke(&suite_file(), &tmp.path().join("out"), &CAP_AVX2, &["--cpu-mode", "native"])?;
    let baseline = std::fs::read(baseline())?;
    assert_ne!(
        std::fs::read(&results)?,
        baseline,
        "the native mode under a cap should differ from the pinned baseline"
    );
    let (code, stdout, stderr) = check(&results);
    assert_eq!(code, 0, "numerical noise failed the check:\n{stdout}{stderr}");
    assert!(stderr.contains("expect noise"), "{stderr}");
    Ok(())
}

#[test]
fn the_cpu_mode_is_fixed_per_process_and_recorded() -> TestResult {
    // This test process was pinned before main (tests/common), as advdet's own commands are.
    let numerics = advdet::cpu::pin(advdet::cpu::CpuMode::Reproducible)?;
    assert_eq!(numerics.mode, advdet::cpu::CpuMode::Reproducible);
    assert_eq!(numerics.threads, advdet::cpu::THREADS);
    assert_eq!(tch::get_num_threads(), advdet::cpu::THREADS);
    assert_eq!(std::env::var("MKL_CBWR")?, advdet::cpu::MKL_CBWR);
    let tag = advdet::cpu::current().tag();
    for part in ["reproducible", "ATEN_CPU_CAPABILITY=avx2", "MKL_CBWR=COMPATIBLE", "mkldnn=false", "nnpack=false"] {
        assert!(tag.contains(part), "{part} not in {tag}");
    }
    let err = advdet::cpu::pin(advdet::cpu::CpuMode::Native).expect_err("a second mode in one process");
    assert!(err.to_string().contains("fixed per process"), "{err}");

    let (code, _, stderr) = run_advdet(&["eval", "--model", "x.safetensors", "--cpu-mode", "fast"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("fast") && stderr.contains("reproducible or native"), "{stderr}");
    Ok(())
}
