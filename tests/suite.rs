//! Suites end to end (the benchmark of Wang, Hu, Su, arXiv 1910.02673): schema errors name file, key and line;
//! runs are byte-reproducible, warm runs recompute nothing, a SIGKILLed run resumes to the same results, and merged
//! shards equal an unsharded run. The suites here are tiny (64 test images, FGSM, msp) to keep the file fast.
mod common;

use advdet::attacks::{AttackSpec, DeepFoolSpec, FgsmSpec};
use advdet::suite::schema;
use common::{advdet, run_advdet, TestResult};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BASE: &str = r#"[suite]
name = "tiny"
seed = 3

[data]
dataset = "mnist"
test_limit = 64
fit_size = 100

[subnet]
steps = 20
images_per_class = 40
batch_per_class = 8
cross_images_per_class = 10

[[attack]]
name = "fgsm"
eps = [0.1, 0.3]

[detectors]
names = ["msp"]
modes = ["full", "subnet"]

[metrics]
bootstrap = 50
"#;

fn parse_err(text: &str) -> String {
    match schema::parse(Path::new("attacks/x.toml"), text, String::new()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn expect(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "`{p}` not in: {msg}");
    }
}

#[test]
fn schema_errors_name_file_key_and_line() {
    let unknown = BASE.replace("fit_size = 100\n", "fit_size = 100\nfit_sise = 3\n");
    expect(&parse_err(&unknown), &["attacks/x.toml", "line 9", "fit_sise"]);
    let attack_key = BASE.replace("eps = [0.1, 0.3]\n", "eps = [0.1, 0.3]\nstepz = 3\n");
    expect(&parse_err(&attack_key), &["attacks/x.toml", "line 19", "attack.stepz", "#1"]);
    let attack_name = BASE.replace("name = \"fgsm\"", "name = \"fgsn\"");
    expect(&parse_err(&attack_name), &["attacks/x.toml", "line 17", "attack.name", "fgsn"]);
    let detector = BASE.replace("names = [\"msp\"]", "names = [\"msp\", \"nope\"]");
    expect(&parse_err(&detector), &["attacks/x.toml", "line 21", "detectors.names", "nope"]);
    let empty = BASE.replace("eps = [0.1, 0.3]", "eps = []");
    expect(&parse_err(&empty), &["attacks/x.toml", "line 18", "attack.eps", "empty"]);
    let section = BASE.replace("[metrics]", "[metricz]");
    expect(&parse_err(&section), &["attacks/x.toml", "line 24", "metricz"]);
    let protocol = BASE.replace("bootstrap = 50", "bootstrap = 50\nprotocol = \"some\"");
    expect(&parse_err(&protocol), &["line 26", "metrics.protocol", "some"]);
    // typed attack specs: a key the attack does not take, an unknown value, with the key and its line
    let not_taken = BASE.replace("eps = [0.1, 0.3]\n", "eps = [0.1, 0.3]\nc = 1.0\n");
    expect(&parse_err(&not_taken), &["attacks/x.toml", "line 19", "attack.c", "#1", "eps"]);
    let target = BASE.replace("eps = [0.1, 0.3]\n", "eps = [0.1, 0.3]\ntargeted = \"sideways\"\n");
    expect(&parse_err(&target), &["attacks/x.toml", "line 19", "attack.targeted", "sideways", "least-likely"]);
    let route = BASE.replace("modes = [\"full\", \"subnet\"]", "modes = [\"full\", \"gated\"]");
    expect(&parse_err(&route), &["attacks/x.toml", "line 22", "detectors.modes", "gated"]);
    let cpu_mode = BASE.replace("seed = 3\n", "seed = 3\ncpu_mode = \"fast\"\n");
    expect(&parse_err(&cpu_mode), &["attacks/x.toml", "line 4", "fast", "reproducible", "native"]);
}

#[test]
fn seeds_lambda_lists_gate_and_second_model_are_checked_at_parse_time() -> TestResult {
    let seeds = |list: &str| BASE.replace("seed = 3\n", &format!("seed = 3\nseeds = {list}\n"));
    expect(&parse_err(&seeds("[]")), &["attacks/x.toml", "line 4", "suite.seeds", "at least one"]);
    expect(&parse_err(&seeds("[0, 1, 0]")), &["line 4", "suite.seeds", "seed 0 is listed twice"]);
    expect(&parse_err(&seeds("[-1]")), &["line 4", "seeds"]);
    let with_model_seed = seeds("[0, 1]").replace("[subnet]", "[model]\nseed = 2\n\n[subnet]");
    expect(&parse_err(&with_model_seed), &["line 12", "model.seed", "suite.seeds"]);
    let with_weights = seeds("[0, 1]").replace("[subnet]", "[model]\nweights = \"w.safetensors\"\n\n[subnet]");
    expect(&parse_err(&with_weights), &["line 12", "model.weights", "suite.seeds"]);
    let lambda = |list: &str| BASE.replace("steps = 20\n", &format!("steps = 20\nlambda = {list}\n"));
    expect(&parse_err(&lambda("[0.01, 0.0]")), &["attacks/x.toml", "line 12", "subnet.lambda", "positive"]);
    expect(&parse_err(&lambda("[0.01, -0.05]")), &["line 12", "subnet.lambda", "positive"]);
    expect(&parse_err(&lambda("[]")), &["line 12", "subnet.lambda", "empty"]);
    expect(&parse_err(&lambda("[0.01, 0.01]")), &["line 12", "subnet.lambda", "twice"]);
    expect(&parse_err(&lambda("[0.01, \"x\"]")), &["line 12", "subnet.lambda", "not a number"]);
    let gate = BASE.replace("steps = 20\n", "steps = 20\ngate = \"fc\"\n");
    expect(&parse_err(&gate), &["attacks/x.toml", "line 12", "subnet.gate", "fc"]);
    let second = "modes = [\"full\", \"subnet\", \"second-model\"]";
    let no_second = BASE
        .replace("[subnet]", "[model]\nweights = \"w.safetensors\"\n\n[subnet]")
        .replace("modes = [\"full\", \"subnet\"]", second);
    expect(&parse_err(&no_second), &["attacks/x.toml", "line 25", "detectors.modes", "second_weights"]);
    let stray = BASE.replace("[subnet]", "[model]\nsecond_weights = \"w2.safetensors\"\n\n[subnet]");
    expect(&parse_err(&stray), &["line 11", "model.second_weights", "model.weights"]);
    // [subspace] k: 1 to the architecture's penultimate width, and only with the subspace mode
    let subspace = |k: &str, modes: &str| {
        BASE.replace("[metrics]", &format!("[subspace]\nk = {k}\n\n[metrics]"))
            .replace("modes = [\"full\", \"subnet\"]", &format!("modes = {modes}"))
    };
    let with_mode = "[\"full\", \"subspace\"]";
    expect(&parse_err(&subspace("0", with_mode)), &["attacks/x.toml", "line 25", "subspace.k", "between 1 and"]);
    expect(&parse_err(&subspace("501", with_mode)), &["line 25", "subspace.k", "500 penultimate features of lenet"]);
    expect(&parse_err(&subspace("5", "[\"full\"]")), &["line 25", "subspace.k", "subspace mode"]);
    expect(&parse_err(&subspace("\"five\"", with_mode)), &["attacks/x.toml", "line 25", "subspace.k", "five"]);
    // a list sweeps k against the full model beside the subnet: each value in range, none twice, whole numbers, at
    // least one, and the full and subnet modes run too
    let sweep_modes = "[\"full\", \"subnet\", \"subspace\"]";
    expect(&parse_err(&subspace("[]", sweep_modes)), &["line 25", "subspace.k", "empty"]);
    expect(&parse_err(&subspace("[20, 40]", with_mode)), &["line 25", "subspace.k", "full and subnet"]);
    expect(&parse_err(&subspace("[20, 20]", sweep_modes)), &["line 25", "subspace.k", "20 is listed twice"]);
    expect(&parse_err(&subspace("[20, 501]", sweep_modes)), &["line 25", "subspace.k", "501: must be between 1 and"]);
    expect(&parse_err(&subspace("[20, 2.5]", sweep_modes)), &["line 25", "subspace.k", "2.5", "not a whole number"]);
    let swept = schema::parse(Path::new("x.toml"), &subspace("[40, 20]", sweep_modes), String::new())?;
    assert_eq!((swept.subspace_k, swept.subspace_ks.clone()), (40, vec![40, 20]));
    let ks: Vec<Option<usize>> = swept.variants().iter().map(|v| v.subspace_k).collect();
    assert_eq!(ks, [Some(40), Some(20)]);
    assert_eq!(swept.for_variant(swept.variants()[1]).subspace_k, 20);
    let plain = schema::parse(Path::new("x.toml"), BASE, String::new())?;
    assert_eq!(plain.variants().iter().map(|v| v.subspace_k).collect::<Vec<_>>(), [None], "no subspace route: no k");
    assert_eq!(schema::parse(Path::new("x.toml"), &subspace("40", with_mode), String::new())?.subspace_k, 40);
    assert_eq!(schema::parse(Path::new("x.toml"), BASE, String::new())?.subspace_k, 5, "the paper's k by default");
    // [model] training: csg gives the csg routes a model; its schedule must reach a gated epoch
    let model = |keys: &str, modes: &str| {
        BASE.replace("[subnet]", &format!("[model]\n{keys}\n\n[subnet]"))
            .replace("modes = [\"full\", \"subnet\"]", &format!("modes = {modes}"))
    };
    let csg_modes = "[\"full\", \"csg\", \"csg-binary\"]";
    let s = schema::parse(Path::new("x.toml"), &model("training = \"csg\"", csg_modes), String::new())?;
    match &s.model {
        schema::ModelSpec::Train(c) => {
            assert_eq!(
                (c.epochs, &c.training),
                (9, &advdet::train::Training::Csg { warmup: 3, every: 3, gate_lr: 0.01 })
            )
        }
        other => panic!("{other:?}"),
    }
    expect(&parse_err(&model("seed = 1", csg_modes)), &["attacks/x.toml", "detectors.modes", "training = \"csg\""]);
    expect(&parse_err(&model("training = \"gated\"", csg_modes)), &["line 11", "model.training", "gated"]);
    let late = model("training = \"csg\"\nepochs = 4\ncsg_warmup = 3", csg_modes);
    expect(&parse_err(&late), &["attacks/x.toml", "line 13", "model.csg_warmup", "never train"]);
    expect(&parse_err(&model("training = \"csg\"\ncsg_every = 0", csg_modes)), &["model.csg_every", "at least 1"]);
    let gate_lr = model("training = \"csg\"\ncsg_gate_lr = 0.0", csg_modes);
    expect(&parse_err(&gate_lr), &["line 12", "model.csg_gate_lr", "positive"]);
    expect(&parse_err(&model("csg_every = 2", "[\"full\"]")), &["line 11", "model.csg_every", "training"]);
    expect(&parse_err(&model("adv_eps = 0.2", "[\"full\"]")), &["line 11", "model.adv_eps", "\"adversarial\""]);
    let beta = model("training = \"adversarial\"\nconsistency_beta = 1.0", "[\"full\"]");
    expect(&parse_err(&beta), &["line 12", "model.consistency_beta", "\"consistency\""]);
    expect(
        &parse_err(&model("training = \"consistency\"\nadv_eps = 2.0", "[\"full\"]")),
        &["line 12", "model.adv_eps"],
    );
    let cons = model("training = \"consistency\"\nadv_eps = 0.2\nadv_steps = 5", "[\"full\", \"subnet\"]");
    match &schema::parse(Path::new("x.toml"), &cons, String::new())?.model {
        schema::ModelSpec::Train(c) => assert_eq!(
            c.training,
            advdet::train::Training::Consistency(advdet::models::training::Robust {
                eps: 0.2,
                steps: 5,
                alpha: 0.1,
                adv_weight: 1.0,
                beta: 0.1
            })
        ),
        other => panic!("{other:?}"),
    }
    let weights = model("weights = \"w.safetensors\"\ntraining = \"csg\"", csg_modes);
    expect(&parse_err(&weights), &["model.weights", "model.training"]);
    // accepted: the variants in order, seeds first, and the next seed's model as the trained model's second network
    let ok = lambda("[0.01, 0.05]")
        .replace("seed = 3\n", "seed = 3\nseeds = [4, 7]\n")
        .replace("modes = [\"full\", \"subnet\"]", second);
    let s = schema::parse(Path::new("x.toml"), &ok, String::new())?;
    let v: Vec<(Option<u64>, f64)> = s.variants().iter().map(|v| (v.seed, v.lambda)).collect();
    assert_eq!(v, [(Some(4), 0.01), (Some(4), 0.05), (Some(7), 0.01), (Some(7), 0.05)]);
    let third = s.for_variant(s.variants()[2]);
    match (&third.model, third.model.second()) {
        (schema::ModelSpec::Train(c), Some(schema::ModelSpec::Train(d))) => {
            assert_eq!((c.seed, d.seed, third.subnet.seed, third.subnet.lambda), (7, 8, 7, 0.01))
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn eps_lists_expand_to_one_job_each() -> TestResult {
    let s = schema::parse(Path::new("x.toml"), BASE, String::new())?;
    let params: Vec<&str> = s.jobs.iter().map(|j| j.params.as_str()).collect();
    assert_eq!(params, ["eps=0.1", "eps=0.3"]);
    let fgsm = |eps| FgsmSpec { eps: Some(eps), targeted: None, seed: Some(3) };
    // the suite seed reaches attacks that take one
    assert_eq!(s.jobs[1].attack, AttackSpec::Fgsm(fgsm(0.3)));
    let deepfool = BASE.replace("name = \"fgsm\"\neps = [0.1, 0.3]", "name = \"deepfool\"\nsteps = 5");
    let s = schema::parse(Path::new("x.toml"), &deepfool, String::new())?;
    let want = DeepFoolSpec { steps: Some(5), overshoot: None };
    assert_eq!(s.jobs[0].attack, AttackSpec::DeepFool(want), "and no seed where the attack takes none");
    Ok(())
}

#[test]
fn every_shipped_suite_parses() -> TestResult {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("attacks");
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = schema::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            assert!(!s.jobs.is_empty());
            // Every expanded job validates on its own, in order, and names a distinct (attack, params) row.
            let mut seen = std::collections::BTreeSet::new();
            for (i, job) in s.jobs.iter().enumerate() {
                assert_eq!(job.index, i, "{}", path.display());
                job.attack.validate().map_err(|e| format!("{} job {i} ({}): {e}", path.display(), job.name))?;
                assert!(
                    seen.insert((job.name.clone(), job.params.clone())),
                    "{}: {} {} twice",
                    path.display(),
                    job.name,
                    job.params
                );
            }
        }
    }
    Ok(())
}

/// Writes the tiny suite (with the cached default LeNet as its weights) into `dir`.
fn tiny_suite(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let weights = common::lenet_mnist();
    let text = BASE.replace("[subnet]", &format!("[model]\nweights = {:?}\n\n[subnet]", weights.display().to_string()));
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs a suite; its (stdout, stderr) on success.
fn run_suite(suite: &Path, out: &Path, extra: &[&str]) -> Result<(String, String), Box<dyn std::error::Error>> {
    let mut args = vec!["run", suite.to_str().ok_or("path")?, "--out", out.to_str().ok_or("path")?, "--device", "cpu"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run_advdet(&args);
    if code != 0 {
        return Err(format!("advdet run exited {code}:\n{stdout}\n{stderr}").into());
    }
    Ok((stdout, stderr))
}

fn manifest(out: &Path) -> Result<advdet::report::manifest::Manifest, Box<dyn std::error::Error>> {
    Ok(serde_json::from_slice(&std::fs::read(out.join("tiny").join("manifest.json"))?)?)
}

fn results(out: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(out.join("tiny").join("results.csv"))
}

#[test]
fn runs_are_byte_identical_and_warm_runs_recompute_nothing() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let suite = tiny_suite(tmp.path())?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (stdout, stderr) = run_suite(&suite, &a, &[])?;
    run_suite(&suite, &b, &[])?;
    assert_eq!(results(&a)?, results(&b)?, "two runs with the same seed differ");
    let first = results(&a)?;
    assert_eq!(String::from_utf8(first.clone())?.lines().count(), 1 + 2 * 2, "header + 2 attacks x 2 modes");
    // where the time went: every job timed, the detector on each of its routes, each route's pass
    let m = manifest(&a)?;
    let jobs: Vec<(usize, &str, bool)> = m.jobs.iter().map(|j| (j.index, j.params.as_str(), j.computed)).collect();
    assert_eq!(jobs, [(0, "eps=0.1", true), (1, "eps=0.3", true)]);
    assert!(m.jobs.iter().all(|j| j.attack_seconds > 0.0 && j.scores_seconds > 0.0 && j.metrics_seconds > 0.0));
    let scoring: Vec<(&str, &str)> = m.scoring.iter().map(|t| (t.detector.as_str(), t.route.as_str())).collect();
    assert_eq!(scoring, [("msp", "full"), ("msp", "subnet")]);
    assert_eq!(m.route_passes.keys().collect::<Vec<_>>(), ["full", "subnet"]);
    // 4 image sets (the 64 clean test images, the 100 held-out fit images for the held-out threshold, 2 attacks),
    // one batch each, through the full and the subnet route
    assert_eq!((m.scoring_calls["forwards"], m.scoring_calls["backwards"]), (4 * 2, 0));
    assert!(a.join("tiny").join("stages.svg").is_file());
    // stderr is a pipe here, not a terminal: one line per finished job; the summary names the slowest
    assert!(
        stderr.contains("[tiny] job 1/2 fgsm eps=0.1: ") && stderr.contains("[tiny] job 2/2 fgsm eps=0.3: "),
        "{stderr}"
    );
    assert!(stdout.contains("slowest jobs:\n  fgsm eps="), "{stdout}");

    let (stdout, stderr) = run_suite(&suite, &a, &[])?;
    assert_eq!(results(&a)?, first);
    let m = manifest(&a)?;
    for s in m.stages.iter().filter(|s| s.stage != "report") {
        assert_eq!(s.computed, 0, "warm run recomputed {s:?}");
    }
    assert!(m.jobs.iter().all(|j| !j.computed) && m.scoring.is_empty(), "{:?}", m.jobs);
    assert!(stderr.contains("job 2/2 fgsm eps=0.3: ") && stderr.contains("from the cache"), "{stderr}");
    assert!(!stdout.contains("slowest jobs"), "nothing computed, nothing slow: {stdout}");
    for file in [
        "results.parquet",
        "table.md",
        "table.tex",
        "index.html",
        "roc/000-fgsm_eps_0.1.svg",
        "roc/001-fgsm_eps_0.3.png",
    ] {
        assert!(a.join("tiny").join(file).is_file(), "{file} missing");
    }
    let table = std::fs::read_to_string(a.join("tiny").join("table.md"))?;
    assert!(table.contains("| fgsm eps=0.1 |") && table.contains("msp (subnet)") && table.contains("**"), "{table}");
    Ok(())
}

/// Starts a run, SIGKILLs it as soon as `ready` holds for its cache, reruns it to the end.
fn killed_then_resumed(suite: &Path, out: &Path, ready: impl Fn(&Path) -> bool) -> TestResult {
    let cache = out.join("tiny").join("cache");
    let mut child = advdet()
        .args(["run", suite.to_str().ok_or("path")?, "--out", out.to_str().ok_or("path")?, "--device", "cpu"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let start = Instant::now();
    while !ready(&cache) && child.try_wait()?.is_none() && start.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let was_running = child.try_wait()?.is_none();
    child.kill()?; // SIGKILL on Unix
    child.wait()?;
    assert!(was_running, "the run ended before it could be killed");
    assert!(!out.join("tiny").join("results.csv").exists(), "killed before the report, yet results exist");
    run_suite(suite, out, &[]).map(|_| ())
}

fn stage_done(cache: &Path, prefix: &str) -> bool {
    std::fs::read_dir(cache).is_ok_and(|d| {
        d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(prefix) && e.path().join("done.json").is_file())
    })
}

#[test]
fn a_sigkilled_run_resumes_to_the_same_results() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let suite = tiny_suite(tmp.path())?;
    let reference = tmp.path().join("ref");
    run_suite(&suite, &reference, &[])?;
    let expected = results(&reference)?;
    for (i, prefix) in ["data-", "attack-"].iter().enumerate() {
        let out = tmp.path().join(format!("killed{i}"));
        killed_then_resumed(&suite, &out, |c| stage_done(c, prefix))?;
        assert_eq!(results(&out)?, expected, "resumed after a kill once {prefix} was done: results differ");
    }
    Ok(())
}

#[test]
fn merged_shards_equal_an_unsharded_run() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let suite = tiny_suite(tmp.path())?;
    let (whole, shards, merged) = (tmp.path().join("whole"), tmp.path().join("shards"), tmp.path().join("merged"));
    run_suite(&suite, &whole, &[])?;
    run_suite(&suite, &shards, &["--shard", "0/2"])?;
    run_suite(&suite, &shards, &["--shard", "1/2"])?;
    let dirs: Vec<String> =
        (0..2).map(|i| shards.join("tiny").join(format!("shard-{i}-of-2")).display().to_string()).collect();
    let (code, _, stderr) = run_advdet(&["merge", &dirs[0], "--out", merged.to_str().ok_or("path")?]);
    assert_eq!(code, 2, "merging one of two shards must fail: {stderr}");
    assert!(stderr.contains("missing job indices 1"), "{stderr}");
    let (code, _, stderr) = run_advdet(&["merge", &dirs[0], &dirs[1], "--out", merged.to_str().ok_or("path")?]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(results(&merged)?, results(&whole)?);
    for file in ["table.md", "index.html"] {
        assert_eq!(std::fs::read(merged.join("tiny").join(file))?, std::fs::read(whole.join("tiny").join(file))?);
    }
    // the shards' job times joined in suite order, the scoring times summed per (detector, route)
    let m = manifest(&merged)?;
    assert_eq!(m.jobs.iter().map(|j| j.index).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(m.scoring.len(), 2);
    let shard_seconds: f64 = dirs
        .iter()
        .map(|d| -> Result<f64, Box<dyn std::error::Error>> {
            let m: advdet::report::manifest::Manifest =
                serde_json::from_slice(&std::fs::read(Path::new(d).join("manifest.json"))?)?;
            Ok(m.scoring.iter().map(|t| t.seconds).sum())
        })
        .sum::<Result<f64, _>>()?;
    assert!((m.scoring.iter().map(|t| t.seconds).sum::<f64>() - shard_seconds).abs() < 1e-9);
    assert!(merged.join("tiny").join("stages.svg").is_file());
    Ok(())
}

/// Two seeds x two lambdas with the second-model control, on one-epoch models: one model per seed (and the next seed's
/// as its second network), one extraction per (seed, lambda), each attack once per seed; shards by seed merge into the
/// whole run's bytes.
#[test]
fn seeds_and_lambdas_give_every_variants_rows_and_shard_by_seed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let text = BASE
        .replace("name = \"tiny\"\nseed = 3\n", "name = \"tiny\"\nseed = 3\nseeds = [0, 1]\n")
        .replace("[subnet]\n", "[model]\nepochs = 1\n\n[subnet]\nlambda = [0.01, 0.05]\n")
        .replace("eps = [0.1, 0.3]", "eps = 0.3")
        .replace("names = [\"msp\"]", "names = [\"msp\", \"disagree\"]")
        .replace("modes = [\"full\", \"subnet\"]", "modes = [\"full\", \"subnet\", \"second-model\"]");
    let suite = tmp.path().join("tiny.toml");
    std::fs::write(&suite, text)?;
    let (whole, shards, merged) = (tmp.path().join("whole"), tmp.path().join("shards"), tmp.path().join("merged"));
    run_suite(&suite, &whole, &[])?;
    let csv = String::from_utf8(results(&whole)?)?;
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("no column {name}"));
    let (model, seed, lambda, det, mode, against) =
        (col("model")?, col("seed")?, col("lambda")?, col("detector")?, col("mode")?, col("delta_against")?);
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    // per variant: msp on full, subnet and the second model; disagree on subnet and the second model
    assert_eq!(rows.len(), 4 * 5, "{csv}");
    let variants: std::collections::BTreeSet<(&str, &str, &str)> =
        rows.iter().map(|r| (r[model], r[seed], r[lambda])).collect();
    let want = [
        ("lenet-s0-e1", "0", "0.01"),
        ("lenet-s0-e1", "0", "0.05"),
        ("lenet-s1-e1", "1", "0.01"),
        ("lenet-s1-e1", "1", "0.05"),
    ];
    assert_eq!(variants.into_iter().collect::<Vec<_>>(), want);
    // disagree has no full-model row: its second-model row is compared with its subnet row
    for r in rows.iter().filter(|r| r[mode] == "second-model") {
        assert_eq!(r[against], if r[det] == "msp" { "full" } else { "subnet" }, "{r:?}");
    }
    let m = manifest(&whole)?;
    let stage = |name: &str| m.stages.iter().find(|s| s.stage == name).map(|s| (s.computed, s.cached));
    assert_eq!(stage("attacks"), Some((2, 2)), "one attack per seed, the second lambda's from the cache");
    assert_eq!(stage("subnets").map(|s| s.0), Some(4));
    let table = std::fs::read_to_string(whole.join("tiny").join("table.md"))?;
    assert!(table.contains("2 seeds") && table.contains("## Extraction sweep") && table.contains("delta second-model"));
    // shard 0 of 2 owns seed 0, shard 1 seed 1; merged, they are the whole run
    run_suite(&suite, &shards, &["--shard", "0/2"])?;
    run_suite(&suite, &shards, &["--shard", "1/2"])?;
    let dirs: Vec<String> =
        (0..2).map(|i| shards.join("tiny").join(format!("shard-{i}-of-2")).display().to_string()).collect();
    let shard0 = String::from_utf8(std::fs::read(Path::new(&dirs[0]).join("results.csv"))?)?;
    assert!(shard0.lines().skip(1).all(|l| l.split(',').nth(seed) == Some("0")), "{shard0}");
    let (code, _, stderr) = run_advdet(&["merge", &dirs[0], &dirs[1], "--out", merged.to_str().ok_or("path")?]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(results(&merged)?, results(&whole)?);
    Ok(())
}

/// `[subspace] k` as a list: one variant per k on the same model and extraction; each attack runs once, the subspace
/// route's rows carry their k, the other routes' rows are the same at every k, and the report sweeps k.
#[test]
fn a_k_list_sweeps_the_subspace_route_on_one_model() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let text = BASE
        .replace("modes = [\"full\", \"subnet\"]", "modes = [\"full\", \"subnet\", \"subspace\"]")
        .replace("[metrics]", "[subspace]\nk = [40, 20]\n\n[metrics]");
    let suite = tmp.path().join("tiny.toml");
    std::fs::write(&suite, text)?;
    let out = tmp.path().join("out");
    let (_, stderr) = run_suite(&suite, &out, &[])?;
    for k in [20, 40] {
        assert!(stderr.contains(&format!("subspace route: {k} penultimate features per class")), "{stderr}");
    }
    let csv = String::from_utf8(results(&out)?)?;
    let header: Vec<&str> = csv.lines().next().ok_or("empty")?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("no column {name}"));
    let (k, params, mode, auroc) = (col("subspace_k")?, col("params")?, col("mode")?, col("auroc")?);
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 2 * 3, "2 ks x 2 attacks x msp on 3 routes");
    let at = |k_value: &str, p: &str, m: &str| -> Result<String, String> {
        let hit = rows.iter().find(|r| r[k] == k_value && r[params] == p && r[mode] == m);
        hit.map(|r| r[auroc].to_string()).ok_or(format!("no row k={k_value} {p} {m}"))
    };
    for p in ["eps=0.1", "eps=0.3"] {
        for m in ["full", "subnet"] {
            assert_eq!(at("20", p, m)?, at("40", p, m)?, "{p} {m}: the same scores at every k");
        }
    }
    let m = manifest(&out)?;
    let stage = |name: &str| m.stages.iter().find(|s| s.stage == name).map(|s| (s.computed, s.cached));
    assert_eq!(stage("attacks"), Some((2, 2)), "each attack once, the second k's from the cache");
    assert_eq!(stage("subnets").map(|s| s.0), Some(1), "one extraction for both ks");
    // scores are keyed by k where the subspace route is among the modes: each k scores msp on its clean test and
    // fit images and on both attacks' images, nothing twice
    assert_eq!(stage("scores"), Some((8, 0)), "2 ks x (clean, fit, 2 attacks)");
    let table = std::fs::read_to_string(out.join("tiny").join("table.md"))?;
    assert!(table.contains("## Subset sweep") && table.contains("| k 20 | k 40 |"), "{table}");
    assert!(table.contains("x 2 subspace sizes (k 40, 20)") && table.contains("at lambda 0.01, k 40"), "{table}");
    Ok(())
}

/// `[detectors] class_normalise`: the same images and scores ranked within their predicted class; a different AUROC
/// for a confidence detector on the full model, the held-out threshold taken on the normalised scores.
#[test]
fn class_normalisation_ranks_scores_within_the_predicted_class() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let raw = tiny_suite(tmp.path())?;
    let text = std::fs::read_to_string(&raw)?.replace("names = [\"msp\"]", "names = [\"msp\"]\nclass_normalise = true");
    let norm = tmp.path().join("norm.toml");
    std::fs::write(&norm, text.replace("name = \"tiny\"", "name = \"norm\""))?;
    run_suite(&raw, &tmp.path().join("a"), &[])?;
    run_suite(&norm, &tmp.path().join("a"), &[])?;
    let read = |suite: &str| -> Result<Vec<Vec<String>>, Box<dyn std::error::Error>> {
        let text = std::fs::read_to_string(tmp.path().join("a").join(suite).join("results.csv"))?;
        Ok(text.lines().map(|l| l.split(',').map(str::to_string).collect()).collect())
    };
    let (a, b) = (read("tiny")?, read("norm")?);
    let col = |name: &str| a[0].iter().position(|h| h == name).ok_or(format!("no column {name}"));
    let (auroc, fpr) = (col("auroc")?, col("test_fpr_at_heldout_threshold")?);
    assert_eq!(a.len(), b.len());
    // every row is there, and the ranking moved for at least one (detector, route) of each attack
    assert!(a.iter().zip(&b).skip(1).any(|(x, y)| x[auroc] != y[auroc]), "normalisation changed no AUROC");
    assert!(b.iter().skip(1).all(|r| !r[fpr].is_empty()), "held-out thresholds are taken on the normalised scores");
    let bad = BASE.replace("names = [\"msp\"]", "names = [\"msp\"]\nclass_normalise = \"yes\"");
    expect(&parse_err(&bad), &["attacks/x.toml", "line 22", "class_normalise"]);
    let cfg = tmp.path().join("cfg.json");
    std::fs::write(&cfg, r#"{"class_normalise": true}"#)?;
    let cfg = cfg.to_str().ok_or("path")?;
    let (code, _, err) =
        run_advdet(&["detect", "--model", "m.safetensors", "--adv", "a.safetensors", "--config", cfg, "--out", "o"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("class_normalise") && err.contains("suites only"), "{err}");
    Ok(())
}

#[test]
fn bad_shard_specs_and_missing_suites_exit_2() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let suite = tiny_suite(tmp.path())?;
    let (code, _, stderr) = run_advdet(&["run", suite.to_str().ok_or("path")?, "--shard", "3/2"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("shard") && stderr.contains("3/2") && stderr.contains("below N"), "{stderr}");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, BASE.replace("[data]", "[data]\ncolour = 1"))?;
    let (code, _, stderr) = run_advdet(&["run", bad.to_str().ok_or("path")?]);
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.toml") && stderr.contains("line 6") && stderr.contains("colour"), "{stderr}");
    let (code, _, stderr) = run_advdet(&["run", "attacks/does-not-exist.toml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("does-not-exist.toml"), "{stderr}");
    Ok(())
}

#[test]
fn the_class_specific_routes_run_end_to_end_on_a_csg_model() -> TestResult {
    let _rng = common::global_rng();
    let tmp = tempfile::tempdir()?;
    // a LeNet trained 2 epochs on 1,280 MNIST images with class-specific gates (the second epoch gated)
    let ds = advdet::data::load(advdet::data::DatasetName::Mnist, None, advdet::data::Split::Train)?.limit(1280);
    let mut cfg = advdet::train::TrainConfig::default_for(ds.name, advdet::models::Arch::Lenet);
    cfg.epochs = 2;
    cfg.training = advdet::train::Training::csg_for(2);
    let (model, _) = advdet::train::train(&cfg, &ds, tch::Device::Cpu)?;
    let weights = tmp.path().join("csg.safetensors");
    advdet::models::checkpoint::save(&model, &weights, None)?;
    let text = BASE
        .replace(
            "[subnet]",
            &format!("[model]\narch = \"lenet\"\nweights = {:?}\n\n[subnet]", weights.display().to_string()),
        )
        .replace(
            "modes = [\"full\", \"subnet\"]",
            "modes = [\"full\", \"subspace\", \"csg\", \"csg-binary\", \"cdrp\"]",
        )
        .replace("names = [\"msp\"]", "names = [\"msp\", \"path-class-dist\"]")
        .replace("[metrics]", "[subspace]\nk = 40\n\n[metrics]");
    let suite = tmp.path().join("tiny.toml");
    std::fs::write(&suite, &text)?;
    let out = tmp.path().join("out");
    let (_, stderr) = run_suite(&suite, &out, &[])?;
    assert!(stderr.contains("subspace route: 40 penultimate features per class"), "{stderr}");
    let csv = String::from_utf8(results(&out)?)?;
    let header: Vec<&str> = csv.lines().next().ok_or("empty")?.split(',').collect();
    let (mode, against) = (
        header.iter().position(|h| *h == "mode").ok_or("mode")?,
        header.iter().position(|h| *h == "delta_against").ok_or("delta_against")?,
    );
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 6, "2 attacks x (msp on 5 routes + path-class-dist on cdrp)");
    for m in ["subspace", "csg", "csg-binary", "cdrp"] {
        let r: Vec<&Vec<&str>> = rows.iter().filter(|r| r[mode] == m && r[mode - 1] == "msp").collect();
        assert_eq!(r.len(), 2, "{m}");
        assert!(r.iter().all(|r| r[against] == "full"), "{m}: each compared with the full model");
    }
    assert_eq!(rows.iter().filter(|r| r[mode - 1] == "path-class-dist" && r[mode] == "cdrp").count(), 2);
    let dir = out.join("tiny");
    for file in ["csg/gates.svg", "csg/gates.png", "csg/csg.md"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let md = std::fs::read_to_string(dir.join("csg/csg.md"))?;
    assert!(md.contains("50 channels x 10 classes") && md.contains("| 9 |"), "{md}");
    let table = std::fs::read_to_string(dir.join("table.md"))?;
    assert!(
        table.contains("msp (csg)") && table.contains("msp (csg-binary)") && table.contains("msp (subspace)"),
        "{table}"
    );
    // the same weights without their gate matrix: the csg routes cannot run, and the run says why
    std::fs::remove_file(advdet::models::csg::gates_path(&weights))?;
    let (code, _, err) = run_advdet(&["run", suite.to_str().ok_or("path")?, "--out", out.to_str().ok_or("path")?]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("csg mode needs a model trained with class-specific gates"), "{err}");
    Ok(())
}

#[test]
fn path_detectors_run_on_both_kinds_of_path_with_the_seen_row_and_the_path_heatmaps() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let suite = tiny_suite(tmp.path())?;
    let text = std::fs::read_to_string(&suite)?
        .replace(
            "names = [\"msp\"]",
            "names = [\"msp\", \"path-rf\", \"path-class-dist\"]\ntrain_attack = \"fgsm eps=0.3\"",
        )
        .replace("modes = [\"full\", \"subnet\"]", "modes = [\"full\", \"cdrp\", \"nnd\"]");
    std::fs::write(&suite, text)?;
    let out = tmp.path().join("out");
    run_suite(&suite, &out, &[])?;
    let dir = out.join("tiny");
    let csv = String::from_utf8(results(&out)?)?;
    let header: Vec<&str> = csv.lines().next().ok_or("empty results")?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("no column {name}"));
    let (det, mode, trained) = (col("detector")?, col("mode")?, col("trained_on")?);
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    // each path detector once per kind of path (fitted on that route's paths), one row per attack
    for name in ["path-rf", "path-class-dist"] {
        let of: Vec<&Vec<&str>> = rows.iter().filter(|r| r[det] == name).collect();
        let on = |m: &str| of.iter().filter(|r| r[mode] == m).count();
        assert_eq!((of.len(), on("cdrp"), on("nnd")), (4, 2, 2), "{name}");
        let want = if name == "path-rf" { "fgsm eps=0.3" } else { "\"\"" };
        assert!(of.iter().all(|r| r[trained] == want), "{name} trained on {want}");
    }
    assert!(rows.iter().filter(|r| r[det] == "msp").all(|r| r[trained] == "\"\""), "msp is oblivious");
    assert!(std::fs::read_to_string(dir.join("table.md"))?.contains("(seen)"));
    let m = manifest(&out)?;
    assert!(!m.detectors_oblivious_to_attacks);
    // learning paths (NND's modules, CDRP's paths, the heatmaps) is its own stage, the extraction's apart
    let stage = |name: &str| m.stages.iter().find(|s| s.stage == name).map(|s| (s.computed, s.cached));
    assert_eq!(stage("subnets"), Some((1, 0)));
    assert!(stage("paths").is_some_and(|(computed, _)| computed >= 1 + 5 + 2), "{:?}", stage("paths"));
    assert_eq!(m.train_attack.as_deref(), Some("fgsm eps=0.3"));
    // the class similarity of the CDRP paths of the 100 fit images, beside the CSS class-mask heatmap
    let rec: advdet::records::SuiteRecord =
        serde_json::from_slice(&std::fs::read(dir.join("records").join("suite.json"))?)?;
    assert_eq!(rec.paths.iter().map(|p| p.route.as_str()).collect::<Vec<_>>(), ["cdrp", "nnd"]);
    let p = &rec.paths[0];
    assert_eq!((p.images, p.similarity.len()), (100, 10));
    assert!(p.open_share > 0.0 && p.open_share < 1.0, "open share {}", p.open_share);
    for (c, row) in p.similarity.iter().enumerate() {
        for (d, v) in row.iter().enumerate() {
            assert!((0.0..=1.0).contains(v) && (v - p.similarity[d][c]).abs() < 1e-12, "[{c}][{d}] = {v}");
        }
        assert!(row[c] == 1.0 || row[c] == 0.0, "a class's path against itself: 1, or 0 when empty");
    }
    assert!(dir.join("paths").join("cdrp-similarity.svg").is_file());
    assert!(dir.join("paths").join("nnd-similarity.svg").is_file());
    // CDRP's paths are learned once per image set and cached: the clean test and fit images, the two attacks' images,
    // the training attack's images
    let before = results(&out)?;
    let cache = dir.join("cache");
    let stages = |prefix: &str| -> std::io::Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(&cache)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect())
    };
    let path_stages = stages("cdrp-paths-")?;
    assert_eq!(path_stages.len(), 5, "{path_stages:?}");
    // a path cache of another shape (another model's or image set's paths) read by a scoring stage that must be
    // redone: exit 2 naming the file and both shapes, results left as they were
    for p in &path_stages {
        let wrong = tch::Tensor::zeros([3, 7], (tch::Kind::Float, tch::Device::Cpu));
        advdet::suite::stages::save_tensors(&p.join("paths.safetensors"), &[("paths", &wrong)])?;
    }
    for p in stages("clean-scores-")? {
        std::fs::remove_dir_all(p)?;
    }
    let args = ["run", suite.to_str().ok_or("path")?, "--out", out.to_str().ok_or("path")?, "--device", "cpu"];
    let (code, _, stderr) = run_advdet(&args);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("paths.safetensors") && stderr.contains("CDRP paths of shape [3, 7], expected [100, 570]"),
        "{stderr}"
    );
    assert_eq!(results(&out)?, before, "nothing half-written");
    // a damaged one: the same
    for p in &path_stages {
        std::fs::write(p.join("paths.safetensors"), b"")?;
    }
    let (code, _, stderr) = run_advdet(&args);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("paths.safetensors") && stderr.contains("unreadable cache file"), "{stderr}");
    assert_eq!(results(&out)?, before, "nothing half-written");
    // a damaged cache of NND's modules: the same
    let stage = std::fs::read_dir(&cache)?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("nnd-"))
        .ok_or("no nnd stage in the cache")?;
    std::fs::write(stage.path().join("nnd.safetensors"), b"not a safetensors file")?;
    let (code, _, stderr) = run_advdet(&args);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nnd.safetensors") && stderr.contains("unreadable nnd modules"), "{stderr}");
    assert_eq!(results(&out)?, before, "nothing half-written");
    Ok(())
}
