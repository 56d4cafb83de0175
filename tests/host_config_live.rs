//! The host_config gate, the checks after create and the check inside, against the real engine:
//! keys in any letter case, security options by value, the engine's socket as a mount, GPU-style
//! devices, the runner's opt-ins (option and environment variable), and NoNewPrivs/capabilities
//! read from inside the container once per container.

mod common;

use std::process::Command;

use common::fleet::{run_on, Fleet};
use herdctl_container::{resolve_docker_config, Error, Runner, RunnerOptions, ALLOW_UNSAFE_ENV};
use serde_json::{json, Value};

/// A runner over the fleet's state directory with the runner-wide opt-in.
fn opted_in(fleet: &Fleet) -> Runner {
    let mut options = RunnerOptions::new(fleet.state.path());
    options.allow_unsafe_host_config = true;
    Runner::new(fleet.runner.engine().clone(), options).unwrap()
}

/// Starts a job that must be refused before any container exists; returns the error.
fn refused(fleet: &Fleet, agent: &str, extra: Value) -> Error {
    let config = fleet.config(extra);
    let e = match fleet.runner.start(fleet.job(agent, &config, ["true"])) {
        Ok(_) => panic!("a job of agent {agent} started"),
        Err(e) => e,
    };
    assert!(
        fleet.containers(agent).is_empty(),
        "no container may be left: {e}"
    );
    e
}

#[test]
fn keys_in_any_letter_case_loosen_nothing_without_the_opt_in() {
    let fleet = Fleet::new();
    for (hc, field) in [
        (json!({"privileged": true}), "Privileged"),
        (json!({"PRIVILEGED": true}), "Privileged"),
        (json!({"pidMode": "host"}), "PidMode"),
        (json!({"capAdd": ["SYS_PTRACE"]}), "CapAdd"),
    ] {
        let agent = fleet.agent("case");
        let e = refused(&fleet, &agent, json!({ "host_config": hc }));
        assert_eq!(e.code(), "INVALID_CONFIG");
        let e = e.to_string();
        assert!(
            e.starts_with(&format!("invalid docker.host_config.{field}: ")),
            "{hc}: {e}"
        );
        assert!(
            e.contains("HERDCTL_CONTAINER_ALLOW_UNSAFE_HOST_CONFIG=1"),
            "{e}"
        );
    }
    // Binds and colliding keys never get that far.
    for hc in [
        json!({"binds": ["/:/host:ro"]}),
        json!({"Privileged": false, "privileged": true}),
    ] {
        let e = resolve_docker_config(&json!({ "host_config": hc }))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid docker.host_config."), "{e}");
    }

    // With the runner's opt-in, the lower-case key is the engine's field: it took effect.
    let agent = fleet.agent("case-allowed");
    let config = fleet.config(json!({"host_config": {"pidMode": "host"}}));
    let (_, report) = run_on(&opted_in(&fleet), fleet.job(&agent, &config, ["true"]));
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    let c = fleet
        .runner
        .engine()
        .inspect_container(&report.container_id)
        .unwrap();
    assert_eq!(c.host_config.pid_mode, "host");
}

#[test]
fn security_options_mean_what_the_engine_reads_in_them() {
    let fleet = Fleet::new();
    let agent = fleet.agent("nnp-refused");
    let e = refused(
        &fleet,
        &agent,
        json!({"host_config": {"SecurityOpt": ["no-new-privileges=0"]}}),
    )
    .to_string();
    assert!(
        e.starts_with("invalid docker.host_config.SecurityOpt[0]: \"no-new-privileges=0\" turns no-new-privileges off"),
        "{e}"
    );
    // With the opt-in, the job's own status shows what each spelling means to the engine: the
    // gate reads them the same way.
    let runner = opted_in(&fleet);
    for (opt, nnp) in [
        ("no-new-privileges=0", "0"),
        ("no-new-privileges:false", "0"),
        ("no-new-privileges=f", "0"),
        ("no-new-privileges=True", "1"),
    ] {
        let agent = fleet.agent("nnp");
        let config = fleet.config(json!({"host_config": {"SecurityOpt": [opt]}}));
        let (lines, report) = run_on(
            &runner,
            fleet.job(&agent, &config, ["grep", "NoNewPrivs", "/proc/self/status"]),
        );
        assert!(
            report.outcome.success(),
            "{opt}: {}",
            report.outcome.describe()
        );
        assert_eq!(lines, [format!("NoNewPrivs:\t{nnp}")], "{opt}");
    }
}

#[test]
fn the_engine_socket_is_not_a_volume_without_the_opt_in() {
    let fleet = Fleet::new();
    for (volume, why) in [
        ("/var/run/docker.sock:/s", "is the engine's socket"),
        ("/run/docker.sock:/s:ro", "is the engine's socket"),
        ("/var/run:/hostrun:ro", "holds the engine's socket"),
        ("/:/host:ro", "holds the engine's socket"),
    ] {
        let agent = fleet.agent("sock");
        let e = refused(&fleet, &agent, json!({"volumes": [volume], "user": "0"})).to_string();
        assert!(e.starts_with("invalid docker.volumes[0]: "), "{e}");
        assert!(
            e.contains(why) && e.contains("which is root on the host"),
            "{volume}: {e}"
        );
        assert!(e.contains("allow_unsafe_host_config: true"), "{e}");
    }
    // With the opt-in it is the fleet's call.
    let agent = fleet.agent("sock-allowed");
    let config = fleet.config(json!({"volumes": ["/var/run/docker.sock:/s"], "user": "0"}));
    let (lines, report) = run_on(
        &opted_in(&fleet),
        fleet.job(&agent, &config, ["sh", "-c", "test -S /s && echo socket"]),
    );
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines, ["socket"]);
}

/// Volumes (and a workspace) on the host's kernel file systems, or holding one: with `/proc`
/// the job read the environment of any host process of its uid and reached the host's `/`
/// through `/proc/PID/root`; `/sys` and `/dev` hand it kernel settings and host terminals.
#[test]
fn kernel_file_systems_are_not_volumes_without_the_opt_in() {
    let fleet = Fleet::new();
    let links = tempfile::tempdir().unwrap();
    let proc_link = links.path().join("proc");
    std::os::unix::fs::symlink("/proc", &proc_link).unwrap();
    let proc_link = format!("{}:/p:ro", proc_link.display());
    for (volume, why) in [
        (
            "/proc:/hostproc:ro",
            "is on /proc, the host's proc file system",
        ),
        (
            "/sys:/hostsys:ro",
            "is on /sys, the host's sysfs file system",
        ),
        (
            "/dev/shm:/hostshm",
            "is on /dev, the host's devtmpfs file system",
        ),
        (
            "/dev:/hostdev:ro",
            "is on /dev, the host's devtmpfs file system",
        ),
        (proc_link.as_str(), "(/proc) is on /proc"),
    ] {
        let agent = fleet.agent("kernel-fs");
        let e = refused(&fleet, &agent, json!({ "volumes": [volume] })).to_string();
        assert!(e.starts_with("invalid docker.volumes[0]: "), "{e}");
        assert!(e.contains(why), "{volume}: {e}");
        assert!(e.contains("allow_unsafe_host_config: true"), "{e}");
    }
    let agent = fleet.agent("kernel-fs-ws");
    let config = fleet.config(json!({}));
    let e = fleet
        .runner
        .start(herdctl_container::JobSpec::new(
            &agent,
            config,
            "/sys/fs/cgroup",
            ["true"],
        ))
        .map(|_| ())
        .expect_err("refused");
    assert!(
        e.to_string()
            .starts_with("invalid working_directory: /sys/fs/cgroup is on /sys"),
        "{e}"
    );
    // With the opt-in it is the fleet's call.
    let agent = fleet.agent("kernel-fs-allowed");
    let config = fleet.config(json!({"volumes": ["/proc:/hostproc:ro"]}));
    let (lines, report) = run_on(
        &opted_in(&fleet),
        fleet.job(
            &agent,
            &config,
            ["sh", "-c", "test -e /hostproc/1 && echo proc"],
        ),
    );
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines, ["proc"]);
}

#[test]
fn gpu_style_devices_pass_without_the_opt_in_and_are_applied() {
    let fleet = Fleet::new();
    let agent = fleet.agent("gpu");
    let device = json!({"PathOnHost": "/dev/null", "PathInContainer": "/dev/null-gpu", "CgroupPermissions": "rwm"});
    let config = fleet.config(json!({"host_config": {"devices": [device]}}));
    let (lines, report) = fleet.run(fleet.job(
        &agent,
        &config,
        ["sh", "-c", "test -c /dev/null-gpu && echo device"],
    ));
    assert!(report.outcome.success(), "{}", report.outcome.describe());
    assert_eq!(lines, ["device"]);
    let c = fleet
        .runner
        .engine()
        .inspect_container(&report.container_id)
        .unwrap();
    assert_eq!(c.host_config.devices.len(), 1);
    assert_eq!(c.host_config.devices[0].path_in_container, "/dev/null-gpu");

    // A device that is not a GPU's needs the opt-in.
    let other = ["/dev/kmsg", "/dev/mem", "/dev/ptmx", "/dev/tty"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("a character device that is no GPU");
    let agent = fleet.agent("not-gpu");
    let e = refused(
        &fleet,
        &agent,
        json!({"host_config": {"Devices": [{"PathOnHost": other}]}}),
    )
    .to_string();
    assert!(
        e.starts_with("invalid docker.host_config.Devices[0].PathOnHost: "),
        "{e}"
    );
}

#[test]
fn no_new_privileges_and_capabilities_are_checked_inside_once_per_container() {
    let fleet = Fleet::new();
    let agent = fleet.agent("inside");
    let config = fleet.config(json!({"ephemeral": false}));
    let (_, first) = fleet.run(fleet.job(&agent, &config, ["true"]));
    assert!(first.outcome.success(), "{}", first.outcome.describe());
    let id = first.container_id.clone();

    // Take `cat`, which the check runs, out of the persistent container.
    let root = fleet
        .runner
        .engine()
        .exec_run(
            &id,
            &herdctl_container::engine::ExecSpec::new(["rm", "/bin/cat"]).user("0"),
            b"",
        )
        .unwrap();
    assert_eq!(
        root.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&root.stderr)
    );

    // This runner checked it already: the job runs.
    let (_, second) = fleet.run(fleet.job(&agent, &config, ["true"]));
    assert!(second.outcome.success(), "{}", second.outcome.describe());
    assert_eq!(second.container_id, id);

    // Another runner (another process, after a restart) checks before its first job there.
    let e = match fleet
        .second_runner()
        .start(fleet.job(&agent, &config, ["true"]))
    {
        Ok(_) => panic!("the check ran without cat"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("the engine did not apply the check of no-new-privileges and capabilities inside the container")
            && e.contains("the image needs `cat`"),
        "{e}"
    );

    // A fresh container of an image without `cat` is refused and removed.
    let tag = common::unique("nocat");
    let image = format!("herdctl-test/nocat:{tag}");
    let live = common::Live::new();
    live.track_image(&image);
    common::docker(&["commit", &id, &image]);
    let agent = fleet.agent("inside-fresh");
    let e = refused(&fleet, &agent, json!({ "image": image }));
    assert_eq!(e.code(), "NOT_APPLIED", "{e}");
}

#[test]
fn the_environment_variable_opts_the_cli_in() {
    let fleet = Fleet::new();
    let agent = fleet.agent("env");
    let config = fleet.state.path().join("docker.json");
    std::fs::write(
        &config,
        json!({"host_config": {"pidMode": "host"}}).to_string(),
    )
    .unwrap();
    let run = |env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herdctl-container"));
        cmd.args([
            "run",
            "--agent",
            &agent,
            "--image",
            common::IMAGE,
            "--network",
            "none",
            "--memory",
            "128m",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            fleet.state.path().to_str().unwrap(),
            "--workspace",
            fleet.workspace.path().to_str().unwrap(),
            "--",
            "true",
        ])
        .env_remove(ALLOW_UNSAFE_ENV);
        if let Some(v) = env {
            cmd.env(ALLOW_UNSAFE_ENV, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(None);
    assert!(
        !ok && stderr.contains("invalid docker.host_config.PidMode"),
        "{stderr}"
    );
    let (ok, stderr) = run(Some("yes"));
    assert!(!ok && stderr.contains("is not a switch"), "{stderr}");
    let (ok, stderr) = run(Some("1"));
    assert!(ok, "{stderr}");
}
