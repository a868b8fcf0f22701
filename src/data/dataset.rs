//! The in-memory dataset: images `[N, C, H, W]` as f32 in [0, 1], labels as i64, with seeded shuffles, subsets and
//! batching onto a device.
use crate::data::{cifar, idx, DatasetName, Split};
use crate::error::{Error, Result};
use crate::rng::Rng;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct Dataset {
    pub name: DatasetName,
    pub split: Split,
    /// `[N, C, H, W]`, f32 in [0, 1].
    pub images: Tensor,
    /// `[N]`, i64 in `0..num_classes`.
    pub labels: Tensor,
    /// sha256 of the source bytes (pixels then labels), before any subsetting.
    pub source_hash: String,
}

impl Dataset {
    /// Loads one split of `name` from `dir` (see `data::resolve_dir` for where the files are looked for).
    pub fn load(name: DatasetName, dir: &Path, split: Split) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(Error::Missing(format!(
                "{name} data directory {} does not exist; {}",
                dir.display(),
                name.how_to_get()
            )));
        }
        match name {
            DatasetName::Mnist | DatasetName::FashionMnist => load_idx_pair(name, dir, split),
            DatasetName::Cifar10 => load_cifar(dir, split),
        }
    }

    /// Builds a dataset from raw bytes (pixels CHW per image, labels), checking the labels.
    pub fn from_bytes(name: DatasetName, split: Split, pixels: &[u8], labels: &[u8], origin: &Path) -> Result<Dataset> {
        let (c, h, w) = name.image_shape();
        let per = (c * h * w) as usize;
        if pixels.len() != labels.len() * per {
            return Err(Error::format(
                origin,
                format!("{} images but {} labels", pixels.len() / per.max(1), labels.len()),
            ));
        }
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l as i64 >= name.num_classes()) {
            return Err(Error::format(
                origin,
                format!("label {l} at index {i} out of range 0..{}", name.num_classes()),
            ));
        }
        let mut hasher = Sha256::new();
        hasher.update(pixels);
        hasher.update(labels);
        let n = labels.len() as i64;
        let images = Tensor::from_slice(pixels).view([n, c, h, w]).to_kind(Kind::Float) / 255.0;
        let labels = Tensor::from_slice(labels).to_kind(Kind::Int64);
        Ok(Dataset { name, split, images, labels, source_hash: format!("{:x}", hasher.finalize()) })
    }

    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num_classes(&self) -> i64 {
        self.name.num_classes()
    }

    fn select(&self, index: &[i64]) -> Dataset {
        let idx = Tensor::from_slice(index).to_device(self.images.device());
        Dataset {
            name: self.name,
            split: self.split,
            images: self.images.index_select(0, &idx),
            labels: self.labels.index_select(0, &idx),
            source_hash: self.source_hash.clone(),
        }
    }

    /// The same images in a seeded random order (identical on every platform for a seed).
    pub fn shuffled(&self, seed: u64) -> Dataset {
        self.select(&Rng::new(seed).permutation(self.len()))
    }

    /// The first `n` images in file order.
    pub fn limit(&self, n: usize) -> Dataset {
        let n = n.min(self.len()) as i64;
        self.select(&(0..n).collect::<Vec<_>>())
    }

    /// The first `k` images of each class, in file order.
    pub fn per_class(&self, k: usize) -> Dataset {
        let labels = self.label_vec();
        let mut taken = vec![0usize; self.num_classes() as usize];
        let index: Vec<i64> = labels
            .iter()
            .enumerate()
            .filter(|(_, &l)| {
                let t = &mut taken[l as usize];
                *t += 1;
                *t <= k
            })
            .map(|(i, _)| i as i64)
            .collect();
        self.select(&index)
    }

    /// Images `[start, end)` in file order.
    pub fn range(&self, start: usize, end: usize) -> Dataset {
        let end = end.min(self.len());
        self.select(&(start.min(end) as i64..end as i64).collect::<Vec<_>>())
    }

    pub fn label_vec(&self) -> Vec<i64> {
        Vec::<i64>::try_from(self.labels.to_device(Device::Cpu)).unwrap_or_default()
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes() as usize];
        for l in self.label_vec() {
            counts[l as usize] += 1;
        }
        counts
    }

    pub fn to_device(&self, device: Device) -> Dataset {
        Dataset {
            name: self.name,
            split: self.split,
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
            source_hash: self.source_hash.clone(),
        }
    }

    /// Consecutive batches `(images, labels)` of at most `batch_size`, moved to `device`.
    pub fn batches(&self, batch_size: usize, device: Device) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        let n = self.len() as i64;
        let b = batch_size.max(1) as i64;
        (0..n).step_by(b as usize).map(move |start| {
            let len = b.min(n - start);
            (self.images.narrow(0, start, len).to_device(device), self.labels.narrow(0, start, len).to_device(device))
        })
    }
}

fn find_file(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    stems.iter().flat_map(|s| [dir.join(s), dir.join(format!("{s}.gz"))]).find(|p| p.is_file())
}

fn load_idx_pair(name: DatasetName, dir: &Path, split: Split) -> Result<Dataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_stems = [format!("{prefix}-images-idx3-ubyte"), format!("{prefix}-images.idx3-ubyte")];
    let labels_stems = [format!("{prefix}-labels-idx1-ubyte"), format!("{prefix}-labels.idx1-ubyte")];
    let find = |stems: &[String]| {
        let s: Vec<&str> = stems.iter().map(String::as_str).collect();
        find_file(dir, &s).ok_or_else(|| {
            Error::Missing(format!("{name}: no {}[.gz] in {}; {}", stems[0], dir.display(), name.how_to_get()))
        })
    };
    let images_path = find(&images_stems)?;
    let labels_path = find(&labels_stems)?;
    let images = idx::read_idx(&images_path)?;
    let labels = idx::read_idx(&labels_path)?;
    let (_, h, w) = name.image_shape();
    if images.dims.len() != 3 || images.dims[1] != h as usize || images.dims[2] != w as usize {
        return Err(Error::format(&images_path, format!("image dimensions {:?}, expected [N, {h}, {w}]", images.dims)));
    }
    if labels.dims.len() != 1 {
        return Err(Error::format(&labels_path, format!("label dimensions {:?}, expected [N]", labels.dims)));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::format(
            &labels_path,
            format!("{} labels but {} holds {} images", labels.dims[0], images_path.display(), images.dims[0]),
        ));
    }
    Dataset::from_bytes(name, split, &images.data, &labels.data, &labels_path)
}

fn load_cifar(dir: &Path, split: Split) -> Result<Dataset> {
    let dir =
        if dir.join("cifar-10-batches-bin").is_dir() { dir.join("cifar-10-batches-bin") } else { dir.to_path_buf() };
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    };
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    for f in &files {
        let path = dir.join(f);
        if !path.is_file() {
            return Err(Error::Missing(format!(
                "cifar10: {} not found; {}",
                path.display(),
                DatasetName::Cifar10.how_to_get()
            )));
        }
        let (l, p) = cifar::read_batch(&path)?;
        labels.extend(l);
        pixels.extend(p);
    }
    Dataset::from_bytes(DatasetName::Cifar10, split, &pixels, &labels, &dir.join(&files[0]))
}
