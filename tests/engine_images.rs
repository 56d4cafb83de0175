//! Images against the real engine: inspect, import from a streamed tarball, and pull with
//! progress from a real registry that the test runs on loopback (never a public one).

mod common;

use std::io::{self, Read};

use common::{tar, unique, Live, IMAGE};
use herdctl_container::engine::Stream;
use herdctl_container::Error;

#[test]
fn inspect_reports_a_present_image_and_none_for_an_absent_one() {
    let live = Live::new();
    let info = live
        .engine
        .image_inspect(IMAGE)
        .unwrap()
        .expect("scripts/build-test-images made it");
    assert!(info.id.starts_with("sha256:"));
    assert!(
        info.repo_tags.iter().any(|t| t == IMAGE),
        "{:?}",
        info.repo_tags
    );
    assert_eq!(info.os, "linux");
    assert!(
        info.config.env.iter().any(|e| e == "HOME=/home/claude"),
        "{:?}",
        info.config.env
    );
    assert_eq!(info.config.working_dir, "/workspace");
    assert!(live
        .engine
        .image_inspect(&format!("herdctl-test/{}:x", unique("absent")))
        .unwrap()
        .is_none());
}

#[test]
fn an_imported_rootfs_runs_with_the_changes_applied() {
    let live = Live::new();
    let repo = format!("herdctl-test/{}", unique("import"));
    let name = format!("{repo}:v1");
    live.track_image(&name);
    let changes = [
        "ENV HERDCTL_IMPORTED=yes".to_string(),
        "WORKDIR /tmp".to_string(),
    ];
    live.engine
        .image_import(tar::busybox_rootfs(&repo), &repo, "v1", &changes)
        .unwrap();

    let info = live.engine.image_inspect(&name).unwrap().expect("imported");
    assert!(
        info.config
            .env
            .contains(&"HERDCTL_IMPORTED=yes".to_string()),
        "{:?}",
        info.config
    );
    assert_eq!(info.config.working_dir, "/tmp");

    let id = live
        .container()
        .image(&name)
        .cmd([
            "/bin/busybox",
            "sh",
            "-c",
            "echo imported $HERDCTL_IMPORTED; /bin/busybox pwd; /bin/busybox cat /marker",
        ])
        .create();
    assert_eq!(live.start_and_wait(&id), 0);
    let logs = live.engine.container_logs(&id, true, true, None).unwrap();
    let expected = format!("imported yes\n/tmp\n{repo}");
    assert_eq!(logs, vec![(Stream::Stdout, expected.into_bytes())]);
}

#[test]
fn an_import_that_is_not_a_tarball_fails_naming_the_image() {
    let live = Live::new();
    let repo = format!("herdctl-test/{}", unique("garbage"));
    live.track_image(&format!("{repo}:latest"));
    let err = live
        .engine
        .image_import(
            &b"this is not a tar archive, not even close"[..],
            &repo,
            "",
            &[],
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("import image {repo}:latest: ")),
        "{err}"
    );
}

#[test]
fn a_failing_tarball_reader_is_an_io_error_and_the_engine_stays_usable() {
    struct FailsAfter(usize);
    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk went away"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(0);
            self.0 -= n;
            Ok(n)
        }
    }
    let live = Live::new();
    let repo = format!("herdctl-test/{}", unique("broken"));
    live.track_image(&format!("{repo}:latest"));
    let err = live
        .engine
        .image_import(FailsAfter(100_000), &repo, "latest", &[])
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("read the request body: disk went away"),
        "{err}"
    );
    live.engine.ping().unwrap();
}

#[test]
fn a_pull_from_a_loopback_registry_reports_progress() {
    let live = Live::new();
    let registry = common::registry::Registry::start();
    let tag = unique("t");
    let remote = registry.push(&live, tar::busybox_rootfs(&tag), "busybox", &tag);
    assert!(live.engine.image_inspect(&remote).unwrap().is_none());

    let mut events = Vec::new();
    live.engine
        .image_pull(&remote, &mut |p| events.push(p.clone()))
        .unwrap();

    let statuses: Vec<&str> = events.iter().map(|p| p.status.as_str()).collect();
    assert!(statuses.contains(&"Pull complete"), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("Status: Downloaded newer image")),
        "{statuses:?}"
    );
    assert!(
        events.iter().any(|p| p.total.is_some_and(|t| t > 0)),
        "byte counts: {events:?}"
    );
    let info = live.engine.image_inspect(&remote).unwrap().expect("pulled");
    assert!(info.repo_tags.contains(&remote));
}

#[test]
fn a_pull_from_where_nothing_listens_fails_naming_the_image() {
    let live = Live::new();
    let err = live
        .engine
        .image_pull("127.0.0.1:9/nothing:latest", &mut |_| {})
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("pull image 127.0.0.1:9/nothing:latest: "),
        "{text}"
    );
    assert!(text.contains("connection refused"), "{text}");
}
