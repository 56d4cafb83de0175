use super::*;

fn err(r: Result<impl std::fmt::Debug>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn memory_valid_inputs() {
    let cases: &[(&str, u64)] = &[
        ("1024", 1024),
        ("0", 0),
        ("1b", 1),
        ("1k", 1024),
        ("1kb", 1024),
        ("1KB", 1024),
        ("1Kb", 1024),
        ("512M", 512 << 20),
        ("512m", 512 << 20),
        ("2g", 2 << 30),
        ("2gb", 2 << 30),
        ("2GB", 2 << 30),
        ("1t", 1 << 40),
        ("1.5g", 1610612736),
        ("1 g", 1 << 30),
        ("1  gb", 1 << 30),
        ("1\tg", 1 << 30),
        ("0.5k", 512),
        ("1.0001k", 1024), // 1024.1024 floored
        ("0.3", 0),        // fractions of a byte floor to nothing
        ("1.999999999999999999999b", 1),
        ("16777215.999999t", 18446744073708452104), // 2^64 - 2^40 + floor(0.999999 * 2^40)
    ];
    for (s, want) in cases {
        assert_eq!(parse_memory_to_bytes(s).unwrap(), *want, "{s}");
    }
}

#[test]
fn memory_invalid_inputs() {
    for s in [
        "1x", "-1g", "g", "", " 2g", "2g ", "1.g", ".5g", "1..5g", "2gg", "2bb", "2 b b", "1e3",
        "0x10", "2g,", "+2g", "1_000", "２g",
    ] {
        let e = err(parse_memory_to_bytes(s));
        assert!(e.starts_with("invalid docker.memory: "), "{s}: {e}");
    }
    assert_eq!(
        err(parse_memory_to_bytes("1x")),
        "invalid docker.memory: Invalid memory format: \"1x\" is not a size; expected a number with an optional unit k, m, g or t (binary), like \"2g\", \"512m\", \"1.5g\" or \"2048\" (bytes)"
    );
    assert_eq!(
        err(parse_memory_to_bytes("16777216t")),
        "invalid docker.memory: \"16777216t\" is too large; expected at most 16 EiB"
    );
    assert!(err(parse_memory_to_bytes(
        "99999999999999999999999999999999999999999"
    ))
    .contains("too large"));
}

/// Property: format then parse is the identity, and N<unit> parses to N * 2^shift, over a
/// deterministic spread of values.
#[test]
fn memory_format_parse_round_trip() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..20_000u64 {
        // xorshift64: deterministic, covers small and large magnitudes.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = match i % 4 {
            0 => x,
            1 => x >> (x % 64),
            2 => (x % 100_000) << (10 * (1 + x % 4)),
            _ => i,
        };
        let s = format_memory(bytes);
        assert_eq!(parse_memory_to_bytes(&s).unwrap(), bytes, "{s}");
        let n = x % 5000;
        for (shift, unit) in [(0, ""), (10, "k"), (20, "M"), (30, "g"), (40, "T")] {
            assert_eq!(
                parse_memory_to_bytes(&format!("{n}{unit}")).unwrap(),
                n << shift
            );
            assert_eq!(
                parse_memory_to_bytes(&format!("{n} {unit}b")).unwrap(),
                n << shift
            );
        }
    }
    assert_eq!(format_memory(2 << 30), "2g");
    assert_eq!(format_memory(1000), "1000");
    assert_eq!(format_memory(0), "0");
}

#[test]
fn ports() {
    assert_eq!(
        parse_port_binding("8080:80").unwrap(),
        PortBinding {
            host_port: 8080,
            container_port: 80
        }
    );
    assert_eq!(
        parse_port_binding("3000").unwrap(),
        PortBinding {
            host_port: 3000,
            container_port: 3000
        }
    );
    assert_eq!(parse_port_binding("65535:1").unwrap().host_port, 65535);
    for s in [
        "80:80:80",
        "0",
        "65536",
        "8080:0",
        "0:80",
        "",
        ":",
        "80:",
        ":80",
        "abc",
        "-1",
        "+80",
        "80 ",
        "1.5",
        "99999999999",
    ] {
        let e = err(parse_port_binding(s));
        assert!(e.starts_with("invalid docker.ports: "), "{s}: {e}");
    }
    assert_eq!(
        err(parse_port_binding("80:80:80")),
        "invalid docker.ports: Invalid port format: \"80:80:80\" is not a port binding; expected \"HOST:CONTAINER\" or \"PORT\" with ports 1-65535, like \"8080:80\" or \"3000\""
    );
}

#[test]
fn tmpfs() {
    assert_eq!(
        parse_tmpfs_mount("/tmp").unwrap(),
        TmpfsMount {
            path: "/tmp".into(),
            options: None
        }
    );
    assert_eq!(
        parse_tmpfs_mount("/tmp:size=100m,mode=1777").unwrap(),
        TmpfsMount {
            path: "/tmp".into(),
            options: Some("size=100m,mode=1777".into())
        }
    );
    assert_eq!(parse_tmpfs_mount("/run/x/:").unwrap().path, "/run/x");
    assert_eq!(parse_tmpfs_mount("/run/x/:").unwrap().options, None);
    assert_eq!(
        err(parse_tmpfs_mount("tmp")),
        "invalid docker.tmpfs: \"tmp\": container path \"tmp\" is not absolute; expected \"/PATH\" or \"/PATH:OPTIONS\", like \"/tmp\" or \"/tmp:size=100m,mode=1777\""
    );
    for s in [
        "",
        ":size=1m",
        "/workspace",
        "/workspace/x",
        "/",
        "/home/claude",
        "/tmp/../workspace",
    ] {
        assert!(
            err(parse_tmpfs_mount(s)).starts_with("invalid docker.tmpfs: "),
            "{s}"
        );
    }
}

#[test]
fn volumes() {
    assert_eq!(
        parse_volume_mount("/h:/c").unwrap(),
        VolumeMount {
            host_path: "/h".into(),
            container_path: "/c".into(),
            mode: AccessMode::Rw
        }
    );
    assert_eq!(parse_volume_mount("/h:/c:ro").unwrap().mode, AccessMode::Ro);
    assert_eq!(parse_volume_mount("/h:/c:rw").unwrap().mode, AccessMode::Rw);
    let v = parse_volume_mount("/h//x/./y/../:/c/d/").unwrap();
    assert_eq!(
        (v.host_path.as_str(), v.container_path.as_str()),
        ("/h/x", "/c/d")
    );
    assert_eq!(
        err(parse_volume_mount("/only/one")),
        "invalid docker.volumes: Invalid volume format: \"/only/one\" is not a volume; expected \"/HOST:/CONTAINER\" or \"/HOST:/CONTAINER:ro|rw\" with absolute paths"
    );
    assert_eq!(
        err(parse_volume_mount("/a:/b:rw2")),
        "invalid docker.volumes: Invalid volume mode: \"rw2\" in \"/a:/b:rw2\" is neither \"ro\" nor \"rw\"; expected \"/HOST:/CONTAINER\" or \"/HOST:/CONTAINER:ro|rw\" with absolute paths"
    );
    assert_eq!(
        err(parse_volume_mount("data:/data")),
        "invalid docker.volumes: \"data:/data\": host path \"data\" is not absolute; expected \"/HOST:/CONTAINER\" or \"/HOST:/CONTAINER:ro|rw\" with absolute paths"
    );
    assert_eq!(
        err(parse_volume_mount("/data:/workspace")),
        "invalid docker.volumes: \"/data:/workspace\": container path /workspace overlaps /workspace, where the runner mounts the workspace; use a path outside /workspace and /home/claude/.claude"
    );
    for s in [
        "/a:b",
        "/a:",
        ":/b",
        "~/a:/b",
        "/a:/b:ro:x",
        "/a:/workspace/sub",
        "/a:/home/claude/.claude/projects/-workspace",
        "/a:/home/claude/.claude",
        "/a:/",
        "/a:/home",
        "/a:/home/claude/.claude/.credentials.json",
        "/a:/x/../workspace",
    ] {
        assert!(
            err(parse_volume_mount(s)).starts_with("invalid docker.volumes: "),
            "{s}"
        );
    }
    // Siblings by name are not inside: /workspace2 is not under /workspace.
    assert_eq!(
        parse_volume_mount("/a:/workspace2").unwrap().container_path,
        "/workspace2"
    );
    assert_eq!(
        parse_volume_mount("/a:/home/claude/data")
            .unwrap()
            .container_path,
        "/home/claude/data"
    );
}

#[test]
fn users() {
    assert_eq!(
        parse_user("1000").unwrap(),
        UserSpec {
            uid: 1000,
            gid: None
        }
    );
    assert_eq!(
        parse_user("1000:50").unwrap(),
        UserSpec {
            uid: 1000,
            gid: Some(50)
        }
    );
    assert!(parse_user("0").unwrap().is_root());
    assert_eq!(parse_user("1000:50").unwrap().to_string(), "1000:50");
    for s in [
        "",
        "abc",
        "root",
        "1000:",
        ":1000",
        "-1",
        "1000:1000:1",
        "4294967296",
        " 1",
        "1.0",
    ] {
        let e = err(parse_user(s));
        assert!(e.starts_with("invalid docker.user: "), "{s}: {e}");
    }
    assert_eq!(
        err(parse_user("root")),
        "invalid docker.user: \"root\" is not a numeric user; expected \"UID\" or \"UID:GID\", like \"1000\" or \"1000:1000\""
    );
}

#[test]
fn quote_cuts_long_values() {
    let long = "x".repeat(100);
    assert_eq!(quote(&long), format!("\"{}\"...", "x".repeat(80)));
    assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
}
