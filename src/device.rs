//! Device selection: `auto` takes the GPU when libtorch sees one, `cuda` insists on it.
use crate::error::{Error, Result};
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            _ => Err(Error::config("device", s, "expected auto, cpu or cuda")),
        }
    }
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(Error::Device(
                "--device cuda: libtorch sees no CUDA device (no GPU here, or this binary was built in CPU mode; \
                 build with `make build-cuda` for GPU hosts)"
                    .into(),
            )),
        }
    }
}

/// A short description of a device for reports.
pub fn describe(device: Device, cpu: &crate::cpu::CpuNumerics) -> String {
    match device {
        Device::Cpu => {
            format!("cpu ({} threads, {} mode, {} {})", tch::get_num_threads(), cpu.mode, cpu.host_vendor, cpu.host_isa)
        }
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}
