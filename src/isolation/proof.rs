//! The proof that a job runs under its sandbox runtime: the kernel a process in the container
//! reports is not the host's.
//!
//! Why the kernel: it is what a sandbox changes and a plain container cannot. Under runc,
//! `/proc/version` inside reads the host kernel's (the same kernel serves every container);
//! under gVisor it reads gVisor's own (`Linux version 4.4.0 ...` in every build so far), under
//! Kata the guest VM's. The host's release comes from the engine (`GET /info`), so a remote
//! engine's host is compared with its own containers. The proof is a process of the job's own
//! kind (an exec, as the job's user, without a TTY), so it proves the job's own conditions; it
//! reads one file with `cat`, which herdctl's images have, and costs one exec per container
//! (a reused persistent container is proven once per runner).

use std::time::{Duration, Instant};

use super::Checked;
use crate::engine::{Engine, ExecSpec};
use crate::{Error, Result};

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

/// Runs `cat /proc/version` in `container` as `user` and checks it with [`kernel_problem`].
/// Returns how long it took; fails with [`Error::NotApplied`] naming `name` when the kernel is
/// the host's or cannot be read.
pub(crate) fn prove(
    engine: &Engine,
    container: &str,
    name: &str,
    user: &str,
    checked: &Checked,
) -> Result<Duration> {
    let t = Instant::now();
    let mut spec = ExecSpec::new(["cat", KERNEL_FILE]);
    spec.user = Some(user.to_string());
    let id = engine.exec_create(container, &spec)?;
    let (_stdin, mut output) = engine.exec_start(&id)?.split()?;
    let (stdout, stderr) = output.read_to_end()?;
    let text = String::from_utf8_lossy(&stdout);
    if let Some(problem) = kernel_problem(&text, checked) {
        let said: String = String::from_utf8_lossy(&stderr)
            .trim()
            .chars()
            .take(200)
            .collect();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(" (cat said: {said}; the image needs `cat`)")
        };
        return Err(Error::NotApplied {
            container: name.to_string(),
            what: format!("{problem}{said}"),
        });
    }
    Ok(t.elapsed())
}
