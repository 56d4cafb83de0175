//! What a runtime's name says it isolates with, by name alone: the config's layering needs it
//! (an agent's own config may choose a sandbox over the fleet's default, which only tightens), and
//! so does the runner's check of what the engine lists (`run/isolation.rs`).

/// What a runtime puts between a job and the host's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// runc and its kin (crun, youki, NVIDIA's runc wrapper): namespaces, cgroups, seccomp and
    /// capabilities over the host's kernel.
    Container,
    /// gVisor: the job's system calls are served by gVisor's own kernel (the Sentry).
    Gvisor,
    /// Kata Containers: a virtual machine with its own kernel.
    Vm,
}

impl Boundary {
    /// Whether the job runs on a kernel other than the host's, which the proof checks.
    pub(crate) fn is_sandbox(self) -> bool {
        self != Boundary::Container
    }
}

/// Programs and names of runtimes that apply the engine's security settings over the host's
/// kernel.
const CONTAINER_RUNTIMES: [&str; 9] = [
    "runc",
    "crun",
    "youki",
    "nvidia",
    "nvidia-container-runtime",
    "io.containerd.runc.v1",
    "io.containerd.runc.v2",
    "io.containerd.runtime.v1.linux",
    "containerd-shim-runc-v2",
];

/// What a name or program says about a runtime, if anything: `runsc`, `runsc-kvm`, `gvisor` and
/// `io.containerd.runsc.v1` are gVisor; `kata`, `kata-runtime`, `kata-qemu`, `kata-fc`,
/// `io.containerd.kata.v2` and `containerd-shim-kata-v2` are Kata.
pub(crate) fn boundary_of_name(name: &str) -> Option<Boundary> {
    let base = name.rsplit('/').next().unwrap_or(name);
    if CONTAINER_RUNTIMES.contains(&base) {
        return Some(Boundary::Container);
    }
    let gvisor = base == "gvisor"
        || base
            .strip_prefix("runsc")
            .is_some_and(|r| r.is_empty() || r.starts_with('-'))
        || base == "io.containerd.runsc.v1";
    if gvisor {
        return Some(Boundary::Gvisor);
    }
    let kata = base == "kata"
        || base.starts_with("kata-")
        || base.starts_with("io.containerd.kata")
        || base.starts_with("containerd-shim-kata");
    kata.then_some(Boundary::Vm)
}

/// Whether `name` is, by its name alone, a runtime that gives the job a kernel of its own
/// (gVisor, Kata). The config layering uses it: an agent's own config may choose such a runtime
/// over the fleet's default, which only tightens.
pub(crate) fn is_sandbox_name(name: &str) -> bool {
    boundary_of_name(name).is_some_and(Boundary::is_sandbox)
}
