//! Helpers shared by the black-box tests: start the real binary on port 0
//! with a fresh data directory, and speak plain HTTP/1.1 to it.
#![allow(dead_code)]

pub mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// The bootstrap admin token every test server is started with.
pub const ADMIN_TOKEN: &str = "openptl-test-admin-token-0001";

/// A fresh, empty data directory for one test. Servers restart on the same
/// directory within a test, so it cannot go when a handle drops; instead the
/// first call of each test process removes the directories of test
/// processes that have ended, and a run leaves at most its last binary's.
pub fn fresh_dir(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_dirs_of_ended_runs);
    let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("openptl-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Removes the `openptl-test-{pid}-…` directories and files of test
/// processes that are gone.
fn remove_dirs_of_ended_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("openptl-test-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let ended = pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
        if ended && Path::new("/proc/self").exists() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_openptl")
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Where the gRPC API listens.
    pub grpc_addr: String,
    /// What the server printed before it listened (the demo login, say).
    pub preamble: Vec<String>,
}

impl Server {
    /// The demo login `serve --demo` printed.
    pub fn demo_login(&self) -> String {
        self.preamble
            .iter()
            .find_map(|l| {
                l.strip_prefix("Demo login")
                    .and_then(|r| r.rsplit_once(": "))
            })
            .map(|(_, secret)| secret.trim().to_string())
            .expect("serve --demo prints a demo login")
    }

    /// The first alliance `/v1/meta` names (the demo's).
    pub fn alliance(&self) -> String {
        let (_, meta) = request(&self.addr, "GET", "/v1/meta", None).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
        meta["alliances"][0]
            .as_str()
            .expect("an alliance in /v1/meta")
            .to_string()
    }

    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_logging(data, extra, "warn", Stdio::inherit())
    }

    /// As [`Server::start`], with a log filter and somewhere for the log.
    pub fn start_logging(data: &Path, extra: &[&str], filter: &str, log: Stdio) -> Server {
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--grpc-listen", "127.0.0.1:0"])
            .args(extra)
            .env("OPENPTL_LOG", filter)
            .env("OPENPTL_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start openptl");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut preamble = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("OpenPTL listening on http://") {
                break rest.trim().to_string();
            }
            preamble.push(line);
        };
        let grpc_addr = preamble
            .iter()
            .find_map(|l| l.strip_prefix("OpenPTL gRPC listening on http://"))
            .expect("the gRPC address is printed before the HTTP one")
            .trim()
            .to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            grpc_addr,
            preamble,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        request(&self.addr, "GET", path, None).expect("GET")
    }

    /// Stops the server as an operator or systemd does (SIGTERM) and checks
    /// that it exits cleanly (a snapshot that cannot be written is logged,
    /// not fatal).
    pub fn stop_gracefully(&mut self) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit status after SIGTERM: {status}");
    }

    /// Sends the server the signal `name` (`TERM`, `HUP`), as `kill` does.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Waits (a generous ceiling) until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.get("/readyz").0 != 200 {
            assert!(std::time::Instant::now() < deadline, "never ready");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request on a new connection as the test admin; Err when the
/// server is gone.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    request_as(addr, Some(ADMIN_TOKEN), method, path, body)
}

/// One HTTP/1.1 request with a given bearer token (or none).
pub fn request_as(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    let body = body.unwrap_or("");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A tmpfs of a few megabytes mounted on a directory, for tests that fill a
/// disk; unmounted when dropped. Mounting needs root (CI runs as root).
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `megabytes` on `dir` (created if need be); `None`,
    /// after saying SKIPPED loudly, where this process may not mount.
    pub fn mount(dir: &Path, megabytes: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(SmallDisk {
                dir: dir.to_path_buf(),
            }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                openptl_testkit::skip(&format!(
                    "cannot mount a tmpfs ({why}); the full-disk test did not run (it needs root, as in CI)"
                ));
                None
            }
        }
    }

    /// Grows (or shrinks) the disk in place, keeping what it holds.
    pub fn resize(&self, megabytes: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={megabytes}m")])
            .arg(&self.dir)
            .status()
            .expect("remount");
        assert!(status.success(), "remount {}", self.dir.display());
    }

    /// Fills what is left of the disk with a file, so that every write fails.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(self.dir.join("filler")).expect("filler");
        let block = vec![0xa5u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let mut small = [0u8; 512];
        small.fill(1);
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
