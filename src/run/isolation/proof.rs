//! The proof that a job runs under its sandbox runtime: the kernel a process in the container
//! reports is not the host's.
//!
//! Why the kernel: it is what a sandbox changes and a plain container cannot. Under runc,
//! `/proc/version` inside reads the host kernel's (the same kernel serves every container);
//! under gVisor it reads gVisor's own (`Linux version 4.4.0 ...` in every build so far), under
//! Kata the guest VM's. The host's release comes from the engine (`GET /info`), so a remote
//! engine's host is compared with its own containers. The proof is a process of the job's own
//! kind (an exec, as the job's user, without a TTY), so it proves the job's own conditions: the
//! `cat` of the in-container security check (`run/inside.rs`) reads this file too, so the proof
//! costs no exec of its own (one per container; a reused persistent container is checked once
//! per runner).

use super::Checked;

/// The file the proof reads. `/proc/version` and not `uname -r`: one `cat` can read it together
/// with `/proc/self/status`, so the in-container security check and this proof can share an exec.
pub(crate) const KERNEL_FILE: &str = "/proc/version";

/// Why `text` (output that holds `/proc/version`'s line) does not prove a sandbox runtime, or
/// `None` when it does: the kernel release it reports must be known and differ from the host's.
pub(crate) fn kernel_problem(text: &str, checked: &Checked) -> Option<String> {
    let runtime = &checked.name;
    let Some(release) = text
        .lines()
        .find_map(|l| l.strip_prefix("Linux version "))
        .and_then(|rest| rest.split_whitespace().next())
    else {
        return Some(format!(
            "runtime {runtime}: the container reported no kernel ({KERNEL_FILE} did not read \"Linux version ...\")"
        ));
    };
    if checked.host_kernel.is_empty() {
        return Some(format!(
            "runtime {runtime}: the engine does not report its host's kernel, so the container's kernel ({release}) cannot be told from it"
        ));
    }
    if release == checked.host_kernel {
        return Some(format!(
            "runtime {runtime}: the container runs on the host's kernel ({release}), not on a sandbox's"
        ));
    }
    None
}
