//! The Mahalanobis detector's estimator (Lee et al. 2018: class means, one tied covariance, pinvh; plain, fixed
//! shrinkage and Ledoit-Wolf) against NumPy's values from the definitions (tests/fixtures/metrics/mahalanobis.json from
//! scripts/reference/gen_mahalanobis_vectors.py), and its properties on the default LeNet's real MNIST features.
mod common;

use advdet::data::{self, DatasetName, Split};
use advdet::detectors::mahalanobis::{Gaussians, MahalanobisConfig};
use advdet::detectors::{by_name, DetectorConfig};
use advdet::eval::{fit_split, score};
use advdet::routes::{Resources, RouteKind};
use common::{fixtures, load_lenet_mnist, TestResult};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn matrix(v: &Value) -> Result<Tensor, Box<dyn std::error::Error>> {
    let rows = v.as_array().ok_or("not a matrix")?;
    let flat: Vec<f64> =
        rows.iter().flat_map(|r| r.as_array().into_iter().flatten().filter_map(Value::as_f64)).collect();
    Ok(Tensor::from_slice(&flat).view([rows.len() as i64, -1]))
}

fn floats(t: &Tensor) -> Result<Vec<f64>, tch::TchError> {
    Vec::<f64>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Double).flatten(0, -1))
}

/// The largest of `|got - want| / (tol * scale)` over the entries, `scale` = max(|want|, floor): at most 1 passes.
fn worst(got: &Tensor, want: &Tensor, tol: f64, floor: f64) -> Result<f64, tch::TchError> {
    assert_eq!(got.size(), want.size());
    let (g, w) = (floats(got)?, floats(want)?);
    Ok(g.iter().zip(&w).map(|(g, w)| (g - w).abs() / (tol * w.abs().max(floor))).fold(0.0, f64::max))
}

#[test]
fn gaussians_match_the_numpy_reference() -> TestResult {
    let path = fixtures().join("metrics").join("mahalanobis.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let cases = doc["cases"].as_array().ok_or("no cases")?;
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().ok_or("name")?;
        let feats = matrix(&case["fit_features"])?;
        let labels: Vec<i64> =
            case["fit_labels"].as_array().ok_or("labels")?.iter().filter_map(Value::as_i64).collect();
        let labels = Tensor::from_slice(&labels);
        let queries = matrix(&case["queries"])?;
        let classes = case["classes"].as_i64().ok_or("classes")?;
        let variants = case["variants"].as_array().ok_or("variants")?;
        assert_eq!(variants.len(), 3, "{name}");
        for v in variants {
            let cfg: MahalanobisConfig = serde_json::from_value(v["config"].clone())?;
            let what = format!("{name}/{}", v["name"]);
            let g = Gaussians::fit(&feats, &labels, classes, &cfg)?;
            assert!(worst(&g.means, &matrix(&case["means"])?, 1e-12, 1.0)? <= 1.0, "{what}: means");
            let s = v["shrinkage"].as_f64().ok_or("shrinkage")?;
            assert!((g.shrinkage - s).abs() <= 1e-12, "{what}: shrinkage {} vs {s}", g.shrinkage);
            if !v["precision"].is_null() {
                let want = matrix(&v["precision"])?;
                let scale = want.abs().max().double_value(&[]);
                assert!(worst(&g.precision, &want, 1e-9, scale)? <= 1.0, "{what}: precision");
            }
            // every distance to every class mean, and the score (the closest one), to 1e-9 relative
            let d = worst(&g.distances(&queries), &matrix(&v["distances"])?, 1e-9, 0.0)?;
            assert!(d <= 1.0, "{what}: distances off by {d:.2} x 1e-9 relative");
            let want = Tensor::from_slice(
                &v["scores"].as_array().ok_or("scores")?.iter().filter_map(Value::as_f64).collect::<Vec<_>>(),
            );
            let d = worst(&g.min_distance(&queries), &want, 1e-9, 0.0)?;
            assert!(d <= 1.0, "{what}: scores off by {d:.2} x 1e-9 relative");
        }
    }
    Ok(())
}

#[test]
fn bad_fit_input_is_an_error() -> TestResult {
    let feats = Tensor::rand([12, 5], (Kind::Double, Device::Cpu));
    let cfg = MahalanobisConfig::default();
    let labels = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    assert!(Gaussians::fit(&feats, &labels, 3, &cfg).is_ok());
    let err = Gaussians::fit(&feats, &labels, 4, &cfg).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("class 3"), "{err}");
    let err =
        Gaussians::fit(&feats, &labels.narrow(0, 0, 10), 3, &cfg).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("10") && err.contains("12"), "{err}");
    assert!(Gaussians::fit(&feats.view([-1]), &labels, 3, &cfg).is_err());
    assert!(Gaussians::fit(&feats, &(labels + 1), 3, &cfg).is_err(), "label 3 of 3 classes");
    Ok(())
}

/// The default LeNet's real MNIST features (2000 clean training images to fit, 300 clean test images). Its 500
/// penultimate units include dead ones (zero on every fit image): the pseudo-inverse must drop exactly those, so the
/// rank of the covariance S is the number of live units, and the in-sample mean distance to the own class mean is
/// tr(P S) = that rank, an integer only when the means, the 1/N covariance and the pseudo-inverse agree. The closest
/// class mean is the label on clean test images (Lee et al.'s generative classifier), and the detector scores these
/// same distances.
///
/// The measured reason FGSM scores below chance here: the origin is closer to the class means than most clean
/// features are, so features scaled toward zero (FGSM at eps 0.3 scales the projection on the predicted class's mean
/// by about 0.3) score lower; pure-noise images, whose features are small, score lower than clean digits too.
#[test]
fn real_lenet_features() -> TestResult {
    let model = load_lenet_mnist();
    let train = data::load(DatasetName::Mnist, None, Split::Train)?;
    let fit = fit_split(&train, 2000);
    let test = data::load(DatasetName::Mnist, None, Split::Test)?.limit(300);
    let _guard = tch::no_grad_guard();
    let feats = model.net.forward_all(&fit.images, None, false).0.to_kind(Kind::Double);
    let g = Gaussians::fit(&feats, &fit.labels, 10, &MahalanobisConfig::default())?;
    let centred = &feats - g.means.index_select(0, &fit.labels);
    let cov = centred.tr().matmul(&centred) / 2000.0;
    let rank = g.precision.matmul(&cov).trace().double_value(&[]);
    let dead = feats.abs().amax([0], false).eq(0.0);
    let n_dead = dead.sum(Kind::Int64).int64_value(&[]);
    println!("rank {rank:.9}, {n_dead} dead units of 500");
    assert!(n_dead > 0 && (rank - (500 - n_dead) as f64).abs() < 1e-6, "rank {rank}, {n_dead} dead units");
    let own = (centred.matmul(&g.precision) * &centred).sum_dim_intlist(-1, false, Kind::Double).mean(Kind::Double);
    assert!((own.double_value(&[]) - rank).abs() < 1e-6 * rank, "mean own-class distance {own} vs rank {rank}");
    let dead_rows = g.precision.index_select(0, &dead.nonzero().squeeze_dim(1)).abs().max().double_value(&[]);
    assert!(dead_rows < 1e-9 * g.precision.abs().max().double_value(&[]), "dead units weigh {dead_rows}");

    let test_feats = model.net.forward_all(&test.images, None, false).0;
    let nearest = g.distances(&test_feats).argmin(-1, false);
    let agree = nearest.eq_tensor(&test.labels).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    println!("closest class mean = label on {agree:.4} of the clean test images");
    assert!(agree > 0.97, "generative classifier accuracy {agree}");

    let cfg = DetectorConfig { fit_size: 2000, ..Default::default() };
    let mut det = by_name("mahalanobis", &cfg)?;
    det.fit(&model, &fit, Default::default())?;
    let clean = score(det.as_ref(), &model, Resources::default(), RouteKind::Full, &test.images)?;
    let direct = floats(&g.min_distance(&test_feats))?;
    // the detector computes its fit features in batches of 500: libtorch's f32 kernels round them slightly
    // differently from one batch of 2000, and the pseudo-inverse amplifies that (as in tests/detectors.rs)
    for (i, (a, b)) in clean.iter().zip(&direct).enumerate() {
        assert!((a - b).abs() <= 1e-6 * b.abs(), "image {i}: detector {a}, Gaussians {b}");
    }

    let median = |t: &Tensor| t.median().double_value(&[]);
    let (full, shrunk) = (median(&g.min_distance(&test_feats)), median(&g.min_distance(&(&test_feats * 0.3))));
    let origin = g.min_distance(&Tensor::zeros([1, 500], (Kind::Double, Device::Cpu))).double_value(&[0]);
    println!("median score: clean {full:.1}, clean features x 0.3 {shrunk:.1}; the origin {origin:.1}");
    assert!(shrunk < full && origin < full, "{shrunk} {origin} vs {full}");
    tch::manual_seed(0);
    let noise = (Tensor::randn([300, 1, 28, 28], (Kind::Float, Device::Cpu)) * 0.3 + 0.5).clamp(0.0, 1.0);
    let noisy = score(det.as_ref(), &model, Resources::default(), RouteKind::Full, &noise)?;
    let labels: Vec<bool> = (0..600).map(|i| i >= 300).collect();
    let auroc = advdet::metrics::auroc(&labels, &clean.iter().chain(&noisy).copied().collect::<Vec<_>>())?;
    println!("noise images vs clean ones: auroc {auroc:.4}");
    assert!(auroc < 0.8, "noise auroc {auroc}: the small-feature weakness is gone; update README and this test");
    Ok(())
}
