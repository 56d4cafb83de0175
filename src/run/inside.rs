//! Inside the running container: the kernel's own word that no-new-privileges and the capability
//! drop hold for a process the engine starts there.
//!
//! The inspect says what the engine recorded; this reads what the kernel applied, from
//! `/proc/self/status` of an exec made exactly as a job's exec is made (same user, no TTY, no
//! privileged flag). An exec is what a job is, so this proves the job's own conditions. It is its
//! own exec, run once per container (a reused persistent container is checked once per process),
//! so the job's argv stays the job's.

use std::time::{Duration, Instant};

use crate::config::no_new_privileges;
use crate::engine::create_models::ContainerCreate;
use crate::engine::{Engine, ExecSpec};
use crate::run::isolation;
use crate::{Error, Result};

/// The capability sets of `/proc/<pid>/status`; with CapDrop ALL and no-new-privileges every one
/// is empty, so no later exec, setuid binary or file capability can fill them.
const CAP_SETS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

/// What must hold inside, from the create body the gate passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inside {
    /// `NoNewPrivs: 1`.
    pub no_new_privs: bool,
    /// Every capability set empty.
    pub no_capabilities: bool,
}

impl Inside {
    /// The conditions of a container created from `body`: no-new-privileges unless the body turns
    /// it off, no capability unless it adds some or runs privileged (both only with the opt-in).
    pub(crate) fn of(body: &ContainerCreate) -> Inside {
        let host = &body.host_config;
        let opts = host.security_opt.iter().flatten().map(String::as_str);
        let added = [&host.cap_add, &host.capabilities]
            .iter()
            .any(|list| list.as_ref().is_some_and(|a| !a.is_empty()));
        Inside {
            no_new_privs: no_new_privileges(opts),
            no_capabilities: !added && host.privileged != Some(true),
        }
    }

    /// Whether there is anything to check.
    pub(crate) fn is_needed(&self) -> bool {
        self.no_new_privs || self.no_capabilities
    }
}

/// Problems with `status` (the text of `/proc/self/status`) against `want`.
fn problems(status: &str, want: Inside) -> Vec<String> {
    let field = |name: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    };
    // Lines a kernel does not write cannot be read: NoNewPrivs came with Linux 4.10, CapAmb with
    // 4.3, and gVisor writes neither. A line that is there must hold; CapEff, which every kernel
    // and gVisor write, must be there.
    let mut out = Vec::new();
    if want.no_new_privs {
        if let Some(v) = field("NoNewPrivs").filter(|v| *v != "1") {
            out.push(format!(
                "no-new-privileges inside the container (NoNewPrivs: {v})"
            ));
        }
    }
    if want.no_capabilities {
        for set in CAP_SETS {
            let value = field(set);
            let empty = match value {
                None => set != "CapEff",
                Some(hex) => u64::from_str_radix(hex, 16).is_ok_and(|bits| bits == 0),
            };
            if !empty {
                out.push(format!(
                    "no capabilities inside the container ({set}: {})",
                    value.unwrap_or("missing")
                ));
            }
        }
    }
    out
}

/// Runs `cat /proc/self/status` in `container` as `user` and checks it against `want`; with a
/// sandbox `runtime`, the same `cat` also reads the kernel's version, which proves the runtime
/// (see [`isolation::kernel_problem`]). Returns how long it took; fails with
/// [`Error::NotApplied`] naming `name` when a condition does not hold or the check cannot run
/// (the image needs `cat`, as herdctl's image has).
pub(crate) fn check_inside(
    engine: &Engine,
    container: &str,
    name: &str,
    user: &str,
    want: Inside,
    runtime: Option<&isolation::Checked>,
) -> Result<Duration> {
    let t = Instant::now();
    let mut argv = vec!["cat", "/proc/self/status"];
    if runtime.is_some() {
        argv.push(isolation::KERNEL_FILE);
    }
    let mut spec = ExecSpec::new(argv.iter().copied());
    spec.user = Some(user.to_string());
    let id = engine.exec_create(container, &spec)?;
    let (_stdin, mut output) = engine.exec_start(&id)?.split()?;
    let (stdout, stderr) = output.read_to_end()?;
    let not_applied = |what: String| Error::NotApplied {
        container: name.to_string(),
        what,
    };
    let status = String::from_utf8_lossy(&stdout);
    // When the status (and the kernel's version, asked last) is there, `cat` did its work, and
    // the exit code (one more call) is only needed to explain a failure.
    let kernel_read = runtime.is_none() || status.lines().any(|l| l.starts_with("Linux version "));
    if !status.contains("\nCapEff:") || !kernel_read {
        let code = engine.exec_exit_code(&id, Duration::from_secs(5))?;
        // A container whose init failed kills the exec with it, and its state may lag a moment
        // behind: give it that moment, so the caller reports the container's death instead.
        for _ in 0..10 {
            if !engine.inspect_container(container)?.state.running {
                break;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        let said = String::from_utf8_lossy(&stderr);
        let said: String = said.trim().chars().take(200).collect();
        return Err(not_applied(format!(
            "the check of no-new-privileges and capabilities inside the container (`{}` exited {code}: {said}; the image needs `cat`)",
            argv.join(" ")
        )));
    }
    let mut found = problems(&status, want);
    found.extend(runtime.and_then(|r| isolation::kernel_problem(&status, r)));
    if !found.is_empty() {
        return Err(not_applied(found.join(", ")));
    }
    Ok(t.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOCKED: &str = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
    const ALL: Inside = Inside {
        no_new_privs: true,
        no_capabilities: true,
    };

    #[test]
    fn status_lines_are_read_exactly() {
        assert!(problems(LOCKED, ALL).is_empty());
        let loose = LOCKED
            .replace("NoNewPrivs:\t1", "NoNewPrivs:\t0")
            .replace("CapEff:\t0000000000000000", "CapEff:\t00000000a80425fb");
        assert_eq!(
            problems(&loose, ALL),
            [
                "no-new-privileges inside the container (NoNewPrivs: 0)",
                "no capabilities inside the container (CapEff: 00000000a80425fb)"
            ]
        );
        assert_eq!(
            problems("Name:\tcat\n", ALL),
            ["no capabilities inside the container (CapEff: missing)"]
        );
        // gVisor (and kernels before 4.10) write no NoNewPrivs line, gVisor no CapAmb.
        let gvisor = "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nSeccomp:\t0\n";
        assert!(problems(gvisor, ALL).is_empty());
        // Turned off with the opt-in: not checked.
        let none = Inside {
            no_new_privs: false,
            no_capabilities: false,
        };
        assert!(problems(&loose, none).is_empty() && !none.is_needed());
    }

    #[test]
    fn conditions_follow_the_body() {
        let body = |host| ContainerCreate {
            host_config: serde_json::from_value(host).unwrap(),
            ..ContainerCreate::default()
        };
        let plain = body(json!({"SecurityOpt": ["no-new-privileges"], "CapDrop": ["ALL"]}));
        assert_eq!(Inside::of(&plain), ALL);
        let loose = body(
            json!({"SecurityOpt": ["no-new-privileges", "no-new-privileges=0"], "CapAdd": ["NET_ADMIN"]}),
        );
        assert_eq!(
            Inside::of(&loose),
            Inside {
                no_new_privs: false,
                no_capabilities: false
            }
        );
    }
}
