//! Shared helpers of the live tests: a connection to the real engine, uniquely named and labelled
//! containers removed on drop, and small builders so each test reads as its intent.
#![allow(dead_code)] // each test file uses a different part

pub mod dying_proxy;
pub mod fake;
pub mod fleet;
pub mod proxy;
pub mod registry;
pub mod remote;
pub mod tar;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use herdctl_container::engine::{Engine, ExecResult, ExecSpec, WaitCondition};
use serde_json::{json, Value};

/// The image every live test runs (busybox, node, user claude 1000), built by
/// scripts/build-test-images.
pub const IMAGE: &str = "herdctl-test/runtime:latest";
/// Every container a test makes carries this label, so a stray one is recognisable.
pub const TEST_LABEL: &str = "dev.herdctl.test";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (in this process or another) uses: `herdctl-test-<what>-<pid>-<n>-<nanos>`.
/// A gc removes every stopped container of an agent it is not told is live, and other tests of
/// the binary make containers all the time: one made between a gc test's listing of the live
/// agents and its gc would go. In a binary with a gc test, every test holds [`gc_shared`] and the
/// gc tests hold [`gc_exclusive`], so a gc never runs beside another test.
static GC_GUARD: RwLock<()> = RwLock::new(());

/// For a test that makes containers in a binary with a gc test (see [`GC_GUARD`]).
pub fn gc_shared() -> RwLockReadGuard<'static, ()> {
    GC_GUARD.read().unwrap_or_else(|p| p.into_inner())
}

/// For a test that runs a gc (see [`GC_GUARD`]).
pub fn gc_exclusive() -> RwLockWriteGuard<'static, ()> {
    GC_GUARD.write().unwrap_or_else(|p| p.into_inner())
}

pub fn unique(what: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("herdctl-test-{what}-{}-{n}-{nanos}", std::process::id())
}

/// A connection to the real engine that removes what the test made when it is dropped.
pub struct Live {
    pub engine: Engine,
    containers: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
}

impl Live {
    /// Connects to the engine; fails the test loudly when none answers (never skips).
    pub fn new() -> Live {
        let engine = Engine::connect().unwrap_or_else(|e| {
            panic!("live tests need a Docker engine (run scripts/ensure-engine): {e}")
        });
        Live {
            engine,
            containers: Mutex::new(Vec::new()),
            images: Mutex::new(Vec::new()),
        }
    }

    /// A container to build: by default `sleep 600` under an init (so it stops at once), network
    /// none, labelled as a test container.
    pub fn container(&self) -> Builder<'_> {
        Builder {
            live: self,
            name: unique("c"),
            cmd: vec!["sleep".into(), "600".into()],
            labels: BTreeMap::from([(TEST_LABEL.to_string(), "1".to_string())]),
            image: IMAGE.to_string(),
            tty: false,
            host_config: json!({ "NetworkMode": "none", "Init": true }),
        }
    }

    /// Removes this container on drop too (for containers made outside [`Builder`]).
    pub fn track(&self, id: &str) {
        self.containers.lock().unwrap().push(id.to_string());
    }

    /// Removes this image (with `docker rmi`) on drop.
    pub fn track_image(&self, name: &str) {
        self.images.lock().unwrap().push(name.to_string());
    }

    /// Runs `cmd` in `container` with `stdin`, to its end.
    pub fn exec(&self, container: &str, cmd: &[&str], stdin: &[u8]) -> ExecResult {
        self.engine
            .exec_run(container, &ExecSpec::new(cmd.iter().copied()), stdin)
            .unwrap_or_else(|e| panic!("exec {cmd:?}: {e}"))
    }

    /// Runs `sh -c script` as a container to its end and returns (exit code, id).
    pub fn run_to_exit(&self, script: &str) -> (i64, String) {
        let id = self.container().cmd(["sh", "-c", script]).create();
        (self.start_and_wait(&id), id)
    }

    /// Starts a created container and waits for its exit code (the wait is registered first, so
    /// a quick exit is not missed).
    pub fn start_and_wait(&self, id: &str) -> i64 {
        let waiter = self
            .engine
            .wait_container_begin(id, WaitCondition::NextExit, None)
            .unwrap();
        self.engine.start_container(id).unwrap();
        waiter.finish().unwrap().status_code
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        for id in self.containers.lock().unwrap().drain(..) {
            if let Err(e) = self.engine.remove_container(&id, true) {
                eprintln!("cleanup: remove container {id}: {e}");
            }
        }
        for image in self.images.lock().unwrap().drain(..) {
            let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
        }
    }
}

/// A test container being described.
pub struct Builder<'a> {
    live: &'a Live,
    pub name: String,
    cmd: Vec<String>,
    labels: BTreeMap<String, String>,
    image: String,
    tty: bool,
    host_config: Value,
}

impl Builder<'_> {
    pub fn cmd<S: Into<String>>(mut self, cmd: impl IntoIterator<Item = S>) -> Self {
        self.cmd = cmd.into_iter().map(Into::into).collect();
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.image = image.into();
        self
    }

    pub fn tty(mut self) -> Self {
        self.tty = true;
        self
    }

    /// Sets one `HostConfig` field.
    pub fn host(mut self, key: &str, value: Value) -> Self {
        self.host_config[key] = value;
        self
    }

    /// The engine's create body.
    pub fn body(&self) -> Value {
        json!({
            "Image": self.image,
            "Cmd": self.cmd,
            "Labels": self.labels,
            "Tty": self.tty,
            "HostConfig": self.host_config,
        })
    }

    /// Creates it (tracked for removal) and returns its id.
    pub fn create(self) -> String {
        let id = self
            .live
            .engine
            .create_container(&self.name, &self.body())
            .unwrap_or_else(|e| panic!("create {}: {e}", self.name));
        self.live.track(&id);
        id
    }

    /// Creates and starts it; returns its id.
    pub fn start(self) -> String {
        let live = self.live;
        let id = self.create();
        live.engine
            .start_container(&id)
            .unwrap_or_else(|e| panic!("start {id}: {e}"));
        id
    }
}

/// Runs the docker CLI and returns its stdout; panics with its output when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI is on PATH");
    assert!(
        out.status.success(),
        "docker {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
