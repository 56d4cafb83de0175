//! `SecurityOpt` entries read by value, the way the engine reads them.
//!
//! Docker (`daemon.parseSecurityOpt`) takes `no-new-privileges` and `disable` as they are, and
//! splits anything else at its first `=` (else its first `:`) into a key and a value; the value
//! of `no-new-privileges` goes through Go's `strconv.ParseBool`, so `no-new-privileges=0`,
//! `=f`, `=False` and `:false` all turn the protection off. Entries apply in order, the last
//! one deciding. Only one value is known to be safe: no-new-privileges turned on. Every other
//! option (a seccomp or AppArmor profile, an SELinux label, Podman's `mask`/`unmask`,
//! `systempaths`, `proc-opts`, Docker's `writable-cgroups`) can undo a protection, so it needs
//! the opt-in.

/// What one entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecOpt {
    /// `no-new-privileges`, with its value.
    NoNewPrivileges(bool),
    /// Any other option, with why it may loosen the container.
    Other(&'static str),
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Reads one entry as the engine does.
pub(crate) fn parse(opt: &str) -> SecOpt {
    if opt == "no-new-privileges" {
        return SecOpt::NoNewPrivileges(true);
    }
    let split = opt.split_once('=').or_else(|| opt.split_once(':'));
    let Some((key, value)) = split else {
        return SecOpt::Other(if opt == "disable" {
            "turns SELinux labelling off"
        } else {
            "is not an option this runner knows; the engine may read it in a way that loosens the container"
        });
    };
    match key {
        "no-new-privileges" => match parse_bool(value) {
            Some(on) => SecOpt::NoNewPrivileges(on),
            None => SecOpt::Other("has a value the engine does not read as true or false"),
        },
        "seccomp" if value == "unconfined" => SecOpt::Other("turns the seccomp filter off"),
        "seccomp" => SecOpt::Other("replaces the engine's seccomp filter with a profile that may allow any system call"),
        "apparmor" => SecOpt::Other("replaces the AppArmor profile, maybe with none"),
        "label" => SecOpt::Other("changes or turns off the SELinux label"),
        "systempaths" | "mask" | "unmask" | "proc-opts" => {
            SecOpt::Other("changes which /proc and /sys paths the container can see")
        }
        "writable-cgroups" => SecOpt::Other("makes the cgroup file system writable"),
        _ => SecOpt::Other("is not an option this runner knows; the engine may read it in a way that loosens the container"),
    }
}

/// Whether the entries, applied in order, leave no-new-privileges on (none at all: off).
pub(crate) fn no_new_privileges<'a>(opts: impl IntoIterator<Item = &'a str>) -> bool {
    opts.into_iter().fold(false, |on, o| match parse(o) {
        SecOpt::NoNewPrivileges(v) => v,
        SecOpt::Other(_) => on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_false_is_false() {
        for off in [
            "no-new-privileges=false",
            "no-new-privileges:false",
            "no-new-privileges=0",
            "no-new-privileges=f",
            "no-new-privileges=F",
            "no-new-privileges=FALSE",
            "no-new-privileges=False",
            "no-new-privileges:0",
        ] {
            assert_eq!(parse(off), SecOpt::NoNewPrivileges(false), "{off}");
            assert!(!no_new_privileges(["no-new-privileges", off]), "{off}");
        }
        for on in [
            "no-new-privileges",
            "no-new-privileges=true",
            "no-new-privileges:1",
            "no-new-privileges=T",
            "no-new-privileges=TRUE",
        ] {
            assert_eq!(parse(on), SecOpt::NoNewPrivileges(true), "{on}");
        }
        // The last entry decides; none at all is off.
        assert!(no_new_privileges([
            "no-new-privileges=0",
            "no-new-privileges"
        ]));
        assert!(!no_new_privileges([]));
        // Not a boolean Go reads: the engine refuses it, the gate does not take it for true.
        for odd in [
            "no-new-privileges=yes",
            "no-new-privileges= true",
            "NO-NEW-PRIVILEGES",
        ] {
            assert!(matches!(parse(odd), SecOpt::Other(_)), "{odd}");
        }
    }

    #[test]
    fn other_options_say_what_they_undo() {
        for (opt, why) in [
            ("seccomp=unconfined", "turns the seccomp filter off"),
            ("seccomp:unconfined", "turns the seccomp filter off"),
            (
                "apparmor=unconfined",
                "replaces the AppArmor profile, maybe with none",
            ),
            ("label=disable", "changes or turns off the SELinux label"),
            ("label:type:spc_t", "changes or turns off the SELinux label"),
            ("disable", "turns SELinux labelling off"),
            (
                "systempaths=unconfined",
                "changes which /proc and /sys paths the container can see",
            ),
            (
                "unmask=ALL",
                "changes which /proc and /sys paths the container can see",
            ),
        ] {
            assert_eq!(parse(opt), SecOpt::Other(why), "{opt}");
        }
    }
}
