//! A second Docker engine for the remote-engine tests, started by the test on loopback: its own
//! data root, exec root, pid file, config file and containerd, no bridge and no iptables,
//! listening on a unix socket of its own and on `127.0.0.1:PORT` with TLS (certificates made here
//! with openssl; client certificates required); and Debian's sshd on another loopback port in
//! front of it (`ssh://root@127.0.0.1:PORT/<its socket>`). Both stop when this is dropped, and a
//! watchdog stops them should the test process die first. The shared main engine is not touched
//! (the test image is copied from it with `docker save`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::IMAGE;

/// The second engine and the sshd in front of it.
pub struct SecondEngine {
    /// Everything of this run: certificates, data root, exec root, logs.
    pub dir: PathBuf,
    /// Its unix socket.
    pub socket: PathBuf,
    /// `127.0.0.1:PORT`, TLS only.
    pub tcp: String,
    /// `ca.pem`, `cert.pem` and `key.pem` of a client the engine accepts.
    pub client_certs: PathBuf,
    /// Only `ca.pem`: a client without a certificate.
    pub no_client_cert: PathBuf,
    /// A CA that did not sign the engine's certificate, with the good client certificate.
    pub wrong_ca: PathBuf,
    /// The sshd's port on 127.0.0.1.
    pub ssh_port: u16,
    /// An ssh client config with the test's key and known_hosts (`-F` it).
    pub ssh_config: PathBuf,
    dockerd: Option<Child>,
    sshd: Option<Child>,
    watchdog: Option<Child>,
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    // Bound and released at once: a tiny window in which another process could take it.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn need(path: &str, how: &str) {
    let found = if path.starts_with('/') {
        Path::new(path).exists()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {path}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        found,
        "the remote-engine tests need {path}; {how} (scripts/test installs it)"
    );
}

/// Answers `GET /_ping` on a unix socket.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.") && answer.windows(5).any(|w| w == b" 200 ")
}

impl SecondEngine {
    /// Starts the engine and the sshd, and copies the test image into the engine.
    pub fn start() -> SecondEngine {
        need("dockerd", "install docker.io");
        need("docker", "install docker.io");
        need("/usr/sbin/sshd", "install openssh-server");
        need("ssh", "install openssh-client");
        need("ssh-keygen", "install openssh-client");
        need("openssl", "install openssl");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Short: containerd's socket lives under the exec root, and socket paths end at 108 bytes.
        let dir = PathBuf::from(format!("/tmp/hc2-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the second engine's directory");
        let mut engine = SecondEngine {
            socket: dir.join("docker.sock"),
            tcp: format!("127.0.0.1:{}", free_port()),
            client_certs: dir.join("client"),
            no_client_cert: dir.join("no-client"),
            wrong_ca: dir.join("wrong-ca"),
            ssh_port: free_port(),
            ssh_config: dir.join("ssh/config"),
            dir,
            dockerd: None,
            sshd: None,
            watchdog: None,
        };
        engine.make_certificates();
        engine.start_dockerd();
        engine.start_watchdog();
        engine.copy_test_image();
        engine.start_sshd();
        engine
    }

    fn make_certificates(&self) {
        let d = self.dir.join("pki");
        std::fs::create_dir_all(&d).unwrap();
        let ssl = |what: &str, args: &[&str]| {
            run(what, Command::new("openssl").args(args).current_dir(&d));
        };
        std::fs::write(
            d.join("ext.cnf"),
            "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
             [server]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n\
             [client]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        for ca in ["ca", "other-ca"] {
            ssl(
                "make a CA",
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-nodes",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-keyout",
                    &format!("{ca}-key.pem"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=herdctl test {ca}"),
                    "-config",
                    "ext.cnf",
                    "-extensions",
                    "ca",
                ],
            );
        }
        // The server's key in PKCS#8; the client's in PKCS#1 ("BEGIN RSA PRIVATE KEY"), as the
        // docker documentation's recipe makes it.
        ssl(
            "server key",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "server-key.pem",
            ],
        );
        ssl(
            "client key",
            &["genrsa", "-traditional", "-out", "key.pem", "2048"],
        );
        for (who, key) in [("server", "server-key.pem"), ("client", "key.pem")] {
            ssl(
                "a request",
                &[
                    "req",
                    "-new",
                    "-key",
                    key,
                    "-out",
                    &format!("{who}.csr"),
                    "-subj",
                    &format!("/CN={who}"),
                ],
            );
            ssl(
                "a certificate",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{who}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca-key.pem",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &format!("{who}-cert.pem"),
                    "-extfile",
                    "ext.cnf",
                    "-extensions",
                    who,
                ],
            );
        }
        let copy = |dir: &Path, files: &[(&str, &str)]| {
            std::fs::create_dir_all(dir).unwrap();
            for (from, to) in files {
                std::fs::copy(d.join(from), dir.join(to)).unwrap();
            }
        };
        copy(
            &self.client_certs,
            &[
                ("ca.pem", "ca.pem"),
                ("client-cert.pem", "cert.pem"),
                ("key.pem", "key.pem"),
            ],
        );
        copy(&self.no_client_cert, &[("ca.pem", "ca.pem")]);
        copy(
            &self.wrong_ca,
            &[
                ("other-ca.pem", "ca.pem"),
                ("client-cert.pem", "cert.pem"),
                ("key.pem", "key.pem"),
            ],
        );
    }

    fn start_dockerd(&mut self) {
        let d = &self.dir;
        let pki = d.join("pki");
        std::fs::write(d.join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg(format!("--data-root={}", d.join("data").display()))
            .arg(format!("--exec-root={}", d.join("exec").display()))
            .arg(format!("--pidfile={}", d.join("dockerd.pid").display()))
            .arg(format!("--config-file={}", d.join("daemon.json").display()))
            .arg(format!("--host=unix://{}", self.socket.display()))
            .arg(format!("--host=tcp://{}", self.tcp))
            .arg("--tlsverify")
            .arg(format!("--tlscacert={}", pki.join("ca.pem").display()))
            .arg(format!(
                "--tlscert={}",
                pki.join("server-cert.pem").display()
            ))
            .arg(format!("--tlskey={}", pki.join("server-key.pem").display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Out of the terminal's process group: a Ctrl-C stops it through the watchdog, in
            // order, not halfway.
            .process_group(0)
            .spawn()
            .expect("start the second dockerd");
        self.dockerd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ping(&self.socket) {
            let exited = self.dockerd.as_mut().unwrap().try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "the second dockerd did not come up ({exited:?}); its log:\n{}",
                    std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the engine and the sshd once this process is gone, should it die before `drop`.
    fn start_watchdog(&mut self) {
        let pid = std::process::id();
        let dockerd = self.dockerd.as_ref().unwrap().id();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             [ -f {dir}/sshd.pid ] && kill $(cat {dir}/sshd.pid) 2>/dev/null; \
             kill -TERM {dockerd} 2>/dev/null; \
             for i in $(seq 60); do kill -0 {dockerd} 2>/dev/null || break; sleep 0.5; done; \
             kill -KILL {dockerd} 2>/dev/null; rm -rf --one-file-system {dir}",
            dir = self.dir.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the watchdog");
        self.watchdog = Some(child);
    }

    /// `docker save` from the main engine into `docker load` on this one.
    fn copy_test_image(&self) {
        let mut save = Command::new("docker")
            .args(["save", IMAGE])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let out = Command::new("docker")
            .arg(format!("--host=unix://{}", self.socket.display()))
            .args(["load", "-q"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .expect("docker load");
        let saved = save.wait().expect("docker save");
        assert!(
            saved.success() && out.status.success(),
            "copy {IMAGE} into the second engine (run scripts/build-test-images): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_sshd(&mut self) {
        let d = self.dir.join("ssh");
        std::fs::create_dir_all(&d).unwrap();
        // sshd wants its privilege separation directory, which only its init script makes.
        std::fs::create_dir_all("/run/sshd").unwrap();
        for key in ["host_key", "client_key"] {
            run(
                "ssh-keygen",
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(d.join(key)),
            );
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{} {host_pub}", self.ssh_port),
        )
        .unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {pid}\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nLogLevel ERROR\n",
                port = self.ssh_port,
                d = d.display(),
                pid = self.dir.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            &self.ssh_config,
            format!(
                "Host *\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  ControlMaster no\n  LogLevel ERROR\n",
                d = d.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start sshd");
        self.sshd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.ssh_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen; its log:\n{}",
                std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ssh://root@127.0.0.1:PORT/<socket>`.
    pub fn ssh_url(&self) -> String {
        format!(
            "ssh://root@127.0.0.1:{}{}",
            self.ssh_port,
            self.socket.display()
        )
    }

    /// `-F<config>`: the ssh option every ssh engine of the tests needs.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![format!("-F{}", self.ssh_config.display())]
    }
}

/// Sends `signal` to `pid` with kill(1) (no libc in the tests).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(mut sshd) = self.sshd.take() {
            signal(sshd.id(), "-TERM");
            let _ = sshd.wait();
        }
        let mut stopped = true;
        if let Some(mut dockerd) = self.dockerd.take() {
            signal(dockerd.id(), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(60);
            stopped = loop {
                match dockerd.try_wait() {
                    Ok(Some(_)) => break true,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    _ => break false,
                }
            };
            if !stopped {
                eprintln!("the second dockerd did not stop within 60 s; killing it");
                let _ = dockerd.kill();
                let _ = dockerd.wait();
            }
        }
        // A clean stop leaves no mount behind; after a kill, leave the directory for a look.
        if stopped {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                eprintln!("remove {}: {e}", self.dir.display());
            }
        }
    }
}
