//! `--devices`: where the executor's workers run.
//!
//! `cpu` or `cpu:N`: N CPU workers in this process, each a thread with its own share of the cores
//! (libtorch intra-op threads = cores / N, at least 1), so that N terms really run at the same time.
//! `cuda:0,cuda:1,...`: one worker per GPU; `cuda` alone is `cuda:0`. The same code path serves both:
//! tensors move between devices with `to_device`, which is free between CPU workers.
//! `mpi` (under `mpirun -np N`): N workers, worker i on MPI rank i, on that rank's device: its local
//! GPU where the host has GPUs, else its CPU (runtime/mpi/).

use std::fmt;
use std::str::FromStr;

use tch::Device;

/// Most workers one process starts (each is a thread; far more than any machine has cores or GPUs).
pub const MAX_WORKERS: usize = 1024;

/// The workers an executor runs on, in order: devices of this process, or under `mpi` one per rank
/// of the MPI job, counted when they are asked for (reading `mpi` asks MPI nothing: a config naming it
/// reads outside a job too, to evaluate its run).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Devices {
    /// The devices of this process; empty under `mpi`.
    local: Vec<Device>,
    /// Worker i runs on MPI rank i (`mpi`); otherwise every worker is a thread of this process.
    pub mpi: bool,
}

/// Where one worker runs: a device of an MPI rank (rank 0 when there is no MPI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Place {
    pub rank: usize,
    #[serde(with = "crate::runtime::serial::device")]
    pub device: Device,
}

impl Devices {
    /// N CPU workers.
    pub fn cpu(n: usize) -> Self {
        Devices::of(vec![Device::Cpu; n])
    }

    /// A run's devices: those of `--devices`, else one worker on the CPU.
    pub fn or_one_cpu(devices: Option<&Devices>) -> Self {
        devices.cloned().unwrap_or_else(|| Devices::cpu(1))
    }

    /// One worker per device of `workers`, threads of this process.
    pub fn of(workers: Vec<Device>) -> Self {
        Devices { local: workers, mpi: false }
    }

    /// One worker per rank of the MPI job this process runs in.
    pub fn mpi() -> Self {
        Devices { local: Vec::new(), mpi: true }
    }

    /// Every worker's device, in order. Under `mpi`, rank 0's view: one per rank of the job (none
    /// outside one), each on this rank's device (each other rank puts what it hosts on its own,
    /// runtime/serve.rs).
    pub fn workers(&self) -> Vec<Device> {
        match self.mpi {
            true => vec![super::mpi::local_device(); self.len()],
            false => self.local.clone(),
        }
    }

    /// Where worker `i` runs.
    pub fn place(&self, i: usize) -> Place {
        match self.mpi {
            true => Place { rank: i, device: super::mpi::local_device() },
            false => Place { rank: 0, device: self.local[i] },
        }
    }

    /// Workers: the devices given, or the ranks of the MPI job (0 outside one).
    pub fn len(&self) -> usize {
        match self.mpi {
            true => super::mpi::ranks().unwrap_or(0),
            false => self.local.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// libtorch intra-op threads for one worker: the machine's cores shared among the CPU workers
    /// (a GPU worker's thread only launches kernels: one thread).
    pub fn threads_per_worker(&self) -> usize {
        if self.mpi {
            return super::mpi::threads_per_rank();
        }
        let cpu_workers = self.local.iter().filter(|d| **d == Device::Cpu).count().max(1);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        (cores / cpu_workers).max(1)
    }
}

impl FromStr for Devices {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "mpi" {
            // Outside an MPI job (reading an MPI run's config to evaluate it) there are no workers;
            // an executor asked for them says why (`Plan::new`).
            return Ok(Devices::mpi());
        }
        if text == "cpu" {
            return Ok(Devices::cpu(1));
        }
        if let Some(n) = text.strip_prefix("cpu:") {
            return match n.parse::<usize>() {
                Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(Devices::cpu(n)),
                _ => Err(format!(
                    "'{}': expected cpu:N with 1 <= N <= {MAX_WORKERS} workers",
                    text.escape_default()
                )),
            };
        }
        let workers = text
            .split(',')
            .map(|d| {
                parse_gpu(d.trim()).ok_or_else(|| {
                    format!("'{}': expected cpu, cpu:N, cuda:I[,cuda:J...] or mpi", d.escape_default())
                })
            })
            .collect::<Result<Vec<Device>, String>>()?;
        if workers.len() > MAX_WORKERS {
            return Err(format!("{} devices: at most {MAX_WORKERS}", workers.len()));
        }
        Ok(Devices::of(workers))
    }
}

/// `cuda` (GPU 0) or `cuda:I`; `None` for any other text.
pub fn parse_gpu(text: &str) -> Option<Device> {
    match text {
        "cuda" => Some(Device::Cuda(0)),
        text => text.strip_prefix("cuda:")?.parse().ok().map(Device::Cuda),
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mpi {
            return write!(f, "mpi");
        }
        if self.local.iter().all(|d| *d == Device::Cpu) {
            return write!(f, "cpu:{}", self.local.len());
        }
        let names: Vec<String> = self.local.iter().map(|d| name(*d)).collect();
        write!(f, "{}", names.join(","))
    }
}

/// libtorch's CUDA half. The binary links only libtorch_cpu (the linker drops libraries it sees no
/// symbol of), and libtorch_cuda registers its GPU support with libtorch_cpu when it is loaded: so it is
/// loaded here, by name, from the run path or LD_LIBRARY_PATH, the first time a GPU is asked for. The
/// same binary thus runs on machines with and without CUDA.
const LIBTORCH_CUDA: &std::ffi::CStr = c"libtorch_cuda.so";

/// The command that installs the CUDA libraries libtorch's CUDA half needs.
pub const INSTALL_CUDA: &str = "./scripts/setup.sh --cuda";

/// Loads libtorch's CUDA half once; why not, where it cannot (the loader's message: the library it
/// could not find).
fn load_libtorch_cuda() -> Result<(), &'static str> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        // SAFETY: dlopen with a valid C string; the handle is kept open for the life of the process.
        let handle = unsafe { libc::dlopen(LIBTORCH_CUDA.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !handle.is_null() {
            return Ok(());
        }
        // SAFETY: dlerror returns a C string owned by libc, or null.
        let why = unsafe { libc::dlerror() };
        Err(if why.is_null() {
            "unknown error".to_string()
        } else {
            unsafe { std::ffi::CStr::from_ptr(why) }.to_string_lossy().into_owned()
        })
    });
    loaded.as_ref().map(|_| ()).map_err(String::as_str)
}

/// Loads libtorch's CUDA support (once) and returns how many GPUs it sees; one line naming `flag`, the
/// library that is missing and the command that installs it, if it cannot load.
pub fn cuda_device_count(flag: &str) -> anyhow::Result<usize> {
    match load_libtorch_cuda() {
        Ok(()) => Ok(tch::Cuda::device_count() as usize),
        Err(why) => crate::bail_input!(
            "{flag}: libtorch's CUDA libraries are not installed ({why}); install them with {INSTALL_CUDA}"
        ),
    }
}

/// How many GPUs this process can use: 0 where libtorch's CUDA half does not load (a CPU set-up).
pub fn gpus_present() -> usize {
    cuda_device_count("").unwrap_or(0)
}

/// Checks that GPU `index` exists; one line naming `flag` if the CUDA libraries are missing, if no GPU
/// is present, or if there are fewer.
pub fn check_gpu(flag: &str, index: usize) -> anyhow::Result<()> {
    match cuda_device_count(flag)? {
        0 => crate::bail_input!(
            "{flag}: cuda:{index} asked for, but no GPU is present (libtorch's CUDA libraries are \
             installed; no NVIDIA driver or GPU is visible to this process)"
        ),
        count if index >= count => {
            crate::bail_input!("{flag}: cuda:{index} does not exist ({count} CUDA devices visible)")
        }
        _ => Ok(()),
    }
}

/// Checks that the GPUs named exist; one line naming the first that does not.
pub fn check_available(devices: &Devices) -> anyhow::Result<()> {
    for device in &devices.workers() {
        if let Device::Cuda(i) = device {
            check_gpu("--devices", *i)?;
        }
    }
    Ok(())
}

impl TryFrom<String> for Devices {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Devices> for String {
    fn from(devices: Devices) -> String {
        devices.to_string()
    }
}

/// "cpu", "cuda:0": a device as `--devices` writes it.
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
