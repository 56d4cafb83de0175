//! A real image registry on loopback for pull tests (never a public one).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's docker-registry serving on a free loopback port from a temp dir; killed on drop.
pub struct Registry {
    child: Child,
    /// The loopback port it serves on.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (scripts/test installs Debian's package)");
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !registry.answers() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    /// Imports `rootfs` (made for `tag`), pushes it here as `herdctl-test/<repo>:<tag>` and
    /// removes both names locally, layer and all, so that a pull has to download it. Returns
    /// the image's name here; `live` removes what is left at the end of the test.
    pub fn push(
        &self,
        live: &super::Live,
        rootfs: impl std::io::Read,
        repo: &str,
        tag: &str,
    ) -> String {
        let source = format!("herdctl-test/pull-src:{tag}");
        let remote = format!("127.0.0.1:{}/herdctl-test/{repo}:{tag}", self.port);
        live.track_image(&source);
        live.track_image(&remote);
        live.engine
            .image_import(rootfs, "herdctl-test/pull-src", tag, &[])
            .unwrap();
        super::docker(&["tag", &source, &remote]);
        super::docker(&["push", &remote]);
        super::docker(&["rmi", &remote, &source]);
        remote
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
