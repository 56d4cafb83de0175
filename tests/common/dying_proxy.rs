//! A pass-through proxy to the real engine that stops answering on cue: for a fault the real
//! engine cannot be made to produce on demand (an engine that goes away while a job runs). Every
//! byte is forwarded unchanged until the client sends a request whose head holds the cue (say
//! `/stop?t=`); from then on every connection is closed at once, as a dead engine's would be.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

pub struct Proxy {
    pub path: PathBuf,
    pub dead: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

/// The real engine's socket: `DOCKER_HOST` when it is a unix address, else the default.
fn upstream() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

impl Proxy {
    /// Starts forwarding; dies at the first request carrying `cue`.
    pub fn start(cue: &'static str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let dead = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
        let flag = dead.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(engine) = UnixStream::connect(upstream()) else {
                    continue;
                };
                {
                    let mut open = open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(engine.try_clone().unwrap());
                }
                let (c2, e2) = (client.try_clone().unwrap(), engine.try_clone().unwrap());
                let (flag2, open2) = (flag.clone(), open.clone());
                thread::spawn(move || pipe(client, engine, Some((cue, flag2, open2))));
                thread::spawn(move || pipe(e2, c2, None));
            }
        });
        Proxy {
            path,
            dead,
            _dir: dir,
        }
    }
}

type Cue = (&'static str, Arc<AtomicBool>, Arc<Mutex<Vec<UnixStream>>>);

fn pipe(mut from: UnixStream, mut to: UnixStream, cue: Option<Cue>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((cue, dead, open)) = &cue {
            if buf[..n].windows(cue.len()).any(|w| w == cue.as_bytes()) {
                dead.store(true, Ordering::SeqCst);
                for s in open.lock().unwrap().drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
