use serde_json::json;

use super::*;
use crate::resolve_docker_config;

/// What Docker 20.10 says with gVisor registered as `scripts/ensure-engine` does.
fn engine(runsc_args: &[&str]) -> EngineRuntimes {
    let info: EngineInfo = serde_json::from_value(json!({
        "KernelVersion": "6.18.44-fc-v1045",
        "DefaultRuntime": "runc",
        "Runtimes": {
            "runc": {"path": "runc"},
            "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": runsc_args},
            "kata": {"runtimeType": "io.containerd.kata.v2"},
            "custom": {"path": "/opt/bin/my-runtime"},
            "runsc-looking": {"path": "/opt/bin/not-gvisor"},
        },
    }))
    .unwrap();
    EngineRuntimes::from(info)
}

fn config(v: serde_json::Value) -> DockerConfig {
    resolve_docker_config(&v).unwrap()
}

fn checked(v: serde_json::Value, engine: &EngineRuntimes) -> Result<Option<Checked>> {
    check(&config(v), engine, false)
}

#[test]
fn runtimes_are_known_by_program_then_shim_then_name() {
    for (name, want) in [
        ("runc", Some(Boundary::Container)),
        ("/usr/bin/crun", Some(Boundary::Container)),
        ("io.containerd.runc.v2", Some(Boundary::Container)),
        ("runsc", Some(Boundary::Gvisor)),
        ("/usr/local/bin/runsc", Some(Boundary::Gvisor)),
        ("runsc-kvm", Some(Boundary::Gvisor)),
        ("io.containerd.runsc.v1", Some(Boundary::Gvisor)),
        ("kata-qemu", Some(Boundary::Vm)),
        ("io.containerd.kata.v2", Some(Boundary::Vm)),
        ("runscx", None),
        ("my-runtime", None),
    ] {
        assert_eq!(boundary_of_name(name), want, "{name}");
    }
    let e = engine(&[]);
    // The program decides over the name: a runtime named like gVisor that runs another program
    // is unknown.
    let of = |n: &str| boundary_of(n, &e.runtimes[n]);
    assert_eq!(of("runsc-looking"), None);
    assert_eq!(of("runsc"), Some(Boundary::Gvisor));
    assert_eq!(of("kata"), Some(Boundary::Vm));
    assert_eq!(of("runc"), Some(Boundary::Container));
    assert!(is_sandbox_name("runsc") && is_sandbox_name("kata") && !is_sandbox_name("runc"));
}

#[test]
fn flags_are_read_as_go_reads_them() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(flag(&args(&["--host-uds=open"]), "host-uds"), Some("open"));
    assert_eq!(flag(&args(&["-host-uds", "all"]), "host-uds"), Some("all"));
    // The last one counts.
    assert_eq!(
        flag(&args(&["--network=none", "--network=sandbox"]), "network"),
        Some("sandbox")
    );
    // A longer flag with the same start is another flag.
    assert_eq!(flag(&args(&["--host-uds-x=open"]), "host-uds"), None);
    assert_eq!(flag(&args(&["--platform=ptrace"]), "network"), None);
    assert_eq!(
        bool_flag(&args(&["--fsgofer-host-uds"]), "fsgofer-host-uds"),
        Some(true)
    );
    assert_eq!(
        bool_flag(&args(&["-fsgofer-host-uds=false"]), "fsgofer-host-uds"),
        Some(false)
    );
    assert_eq!(
        bool_flag(&args(&["--host-uds=all"]), "fsgofer-host-uds"),
        None
    );
}

#[test]
fn no_runtime_asked_is_no_check() {
    assert_eq!(checked(json!({}), &engine(&[])).unwrap(), None);
}

#[test]
fn a_listed_runtime_passes_with_what_the_proof_needs() {
    let c = checked(json!({"runtime": "runsc", "network": "none"}), &engine(&[]))
        .unwrap()
        .unwrap();
    assert_eq!(
        c,
        Checked {
            name: "runsc".into(),
            boundary: Some(Boundary::Gvisor),
            host_kernel: "6.18.44-fc-v1045".into(),
        }
    );
    assert!(c.needs_proof());
    let runc = checked(json!({"runtime": "runc"}), &engine(&[]))
        .unwrap()
        .unwrap();
    assert!(!runc.needs_proof());
    // host_config.Runtime, in any letter case, is the same field.
    let c = checked(
        json!({"host_config": {"runtime": "runsc"}, "network": "none"}),
        &engine(&[]),
    );
    assert_eq!(c.unwrap().unwrap().name, "runsc");
}

#[test]
fn an_unlisted_runtime_is_refused_with_the_engines_list() {
    let e = checked(json!({"runtime": "runsc"}), &EngineRuntimes::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid docker.runtime: \"runsc\" is not a runtime of this engine, which lists none; to add gVisor: apt-get install runsc"),
        "{e}"
    );
    let e = checked(json!({"runtime": "crun"}), &engine(&[]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid docker.runtime: \"crun\" is not a runtime of this engine, which lists custom, kata, runc, runsc, runsc-looking; to add it, register \"crun\" under \"runtimes\" in /etc/docker/daemon.json and send dockerd SIGHUP"
    );
}

#[test]
fn runtime_names_are_matched_exactly_as_the_engine_does() {
    // The engine's runtime names are case-sensitive: `RUNC` is not `runc`, in either spelling.
    for c in [
        json!({"runtime": "RUNC"}),
        json!({"host_config": {"Runtime": "RUNC"}}),
        json!({"host_config": {"runtime": "Runsc"}}),
    ] {
        let e = checked(c.clone(), &engine(&[])).unwrap_err().to_string();
        assert!(
            e.contains("is not a runtime of this engine, which lists"),
            "{c}: {e}"
        );
    }
}

#[test]
fn an_unknown_runtime_needs_the_opt_in() {
    for name in ["custom", "runsc-looking"] {
        let e = checked(json!({ "runtime": name }), &engine(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is a runtime this runner does not know to apply the container's security settings; to allow it, set allow_unsafe_host_config: true"),
            "{e}"
        );
        let c = check(&config(json!({ "runtime": name })), &engine(&[]), true)
            .unwrap()
            .unwrap();
        assert_eq!(c.boundary, None);
        assert!(!c.needs_proof());
    }
}

#[test]
fn gvisor_without_a_network_refuses_a_job_that_wants_one() {
    let none = engine(&["--host-uds=open", "--network=none"]);
    assert!(checked(json!({"runtime": "runsc", "network": "none"}), &none).is_ok());
    let e = checked(json!({"runtime": "runsc"}), &none)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid docker.network: \"bridge\" asks for a network, but the engine runs \"runsc\" with --network=none"),
        "{e}"
    );
    // With gVisor's own network stack, any mode passes.
    assert!(checked(json!({"runtime": "runsc"}), &engine(&["--host-uds=open"])).is_ok());
}

#[test]
fn injected_tools_need_gvisor_to_reach_host_sockets() {
    let open = engine(&["--host-uds=open"]);
    let all = engine(&["-host-uds", "all"]);
    let legacy = engine(&["--fsgofer-host-uds"]);
    let closed = engine(&["--host-uds=create"]);
    let bare = engine(&[]);
    for e in [&open, &all, &legacy] {
        assert!(check_host_sockets(Some("runsc"), e).is_ok());
    }
    // Runtimes that are not gVisor, and the default one, pass.
    for name in [None, Some("runc"), Some("kata"), Some("custom")] {
        assert!(check_host_sockets(name, &bare).is_ok(), "{name:?}");
    }
    let e = check_host_sockets(Some("runsc"), &closed)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid injectedMcpServers: the agent reaches injected MCP servers through a unix socket mounted into its container, and the engine runs \"runsc\" (gVisor) with --host-uds=create, under which gVisor refuses to connect to it: the agent would run without its tools; add --host-uds=open"),
        "{e}"
    );
    assert!(check_host_sockets(Some("runsc"), &bare)
        .unwrap_err()
        .to_string()
        .contains("with no --host-uds,"));
    // gVisor as the engine's default runtime counts too.
    let mut default_gvisor = engine(&[]);
    default_gvisor.default = "runsc".into();
    assert!(check_host_sockets(None, &default_gvisor).is_err());
}

#[test]
fn the_kernel_proves_the_sandbox() {
    let c = Checked {
        name: "runsc".into(),
        boundary: Some(Boundary::Gvisor),
        host_kernel: "6.18.44-fc-v1045".into(),
    };
    // gVisor's, as the container reads it.
    assert_eq!(
        kernel_problem(
            "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016\n",
            &c
        ),
        None
    );
    // Read after /proc/self/status in one `cat`.
    assert_eq!(
        kernel_problem(
            "Name:\tcat\nCapEff:\t0000000000000000\nLinux version 4.4.0 #1 SMP\n",
            &c
        ),
        None
    );
    assert_eq!(
        kernel_problem("Linux version 6.18.44-fc-v1045 (builder@sandboxing) (gcc (GCC) 15.3.0) #1 SMP\n", &c).unwrap(),
        "runtime runsc: the container runs on the host's kernel (6.18.44-fc-v1045), not on a sandbox's"
    );
    assert!(kernel_problem("", &c)
        .unwrap()
        .contains("the container reported no kernel"));
    let unknown_host = Checked {
        host_kernel: String::new(),
        ..c
    };
    assert!(kernel_problem("Linux version 4.4.0 #1\n", &unknown_host)
        .unwrap()
        .contains("the engine does not report its host's kernel"));
}

#[test]
fn gvisor_needs_room_for_its_own_threads_in_the_pids_limit() {
    let e = checked(
        json!({"runtime": "runsc", "network": "none", "pids_limit": 64}),
        &engine(&[]),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "invalid docker.pids_limit: 64 is too low for gVisor (\"runsc\"), whose sandbox takes about 70 of the container's pids limit itself and a few more for every process of the job; give at least 128"
    );
    assert!(checked(
        json!({"runtime": "runsc", "network": "none", "pids_limit": 128}),
        &engine(&[])
    )
    .is_ok());
    // runc counts the job's processes only.
    assert!(checked(json!({"runtime": "runc", "pids_limit": 8}), &engine(&[])).is_ok());
}

#[test]
fn the_agent_objects_runtime_reaches_a_config_that_lost_it() {
    let from_agent = |agent: &serde_json::Value, c: &mut DockerConfig| {
        runtime_from_agent(agent.get("docker").and_then(|d| d.get("runtime")), c)
    };
    // What herdctl's resolver makes of `overrides.docker: {runtime: runsc}`: a config without it.
    let agent = json!({"name": "a", "docker": {"enabled": true, "runtime": "runsc"}});
    let mut c = config(json!({}));
    from_agent(&agent, &mut c).unwrap();
    assert_eq!(c.runtime.as_deref(), Some("runsc"));
    // The same, or nothing asked: left as it is.
    from_agent(&agent, &mut c).unwrap();
    let mut plain = config(json!({"runtime": "runc"}));
    from_agent(&json!({"name": "a", "docker": {}}), &mut plain).unwrap();
    from_agent(&json!({"name": "a"}), &mut plain).unwrap();
    assert_eq!(plain.runtime.as_deref(), Some("runc"));
    // A sandbox over runc tightens; out of a sandbox, or to another, is refused.
    from_agent(&agent, &mut plain).unwrap();
    assert_eq!(plain.runtime.as_deref(), Some("runsc"));
    for (asked, have) in [
        ("runc", Some("runsc")),
        ("kata", Some("runsc")),
        ("crun", None),
    ] {
        let mut c = config(json!({ "runtime": have }));
        let e = from_agent(&json!({"docker": {"runtime": asked}}), &mut c)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("invalid agent.docker.runtime: \"{asked}\" differs from the runtime of the docker config this runner was given")),
            "{e}"
        );
        assert_eq!(c.runtime.as_deref(), have);
    }
    assert!(from_agent(
        &json!({"docker": {"runtime": "a b"}}),
        &mut config(json!({}))
    )
    .is_err());
}
