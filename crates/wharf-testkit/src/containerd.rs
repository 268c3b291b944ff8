//! A private containerd for tests: its own socket, root, state and plugin directory under a temporary
//! directory, so it touches nothing of the machine's (no `/var/lib/containerd`, no `/run/containerd`
//! socket). The CRI plugin and the snapshotters that need special file systems are off, and content is not
//! shared between namespaces (`content_sharing_policy = "isolated"`), so a pull into a fresh namespace really
//! downloads every blob. Dropping it kills what it runs and removes the directory.
//!
//! containerd needs root. [`containerd_available`] says whether the tools are here and we are root, under
//! the project's rule for missing tools ([`crate::require_tool`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long [`Containerd::start`] waits for the daemon to answer.
const START_WAIT: Duration = Duration::from_secs(20);
/// The upper bound for one clean-up command.
const CLEANUP_WAIT: Duration = Duration::from_secs(10);

/// Whether `containerd` and `ctr` run and we are root (containerd mounts snapshots). When not, this says
/// `SKIP` on stderr, or panics when `WHARF_REQUIRE_TOOLS=1`.
///
/// # Panics
/// When something is missing and `WHARF_REQUIRE_TOOLS=1`.
pub fn containerd_available() -> bool {
    if !(crate::require_tool("containerd", &["--version"])
        && crate::require_tool("ctr", &["--version"]))
    {
        return false;
    }
    if !is_root() {
        if std::env::var("WHARF_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("containerd tests need root (WHARF_REQUIRE_TOOLS=1)");
        }
        eprintln!("SKIP: containerd needs root");
        return false;
    }
    true
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A running containerd of the test's own.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Containerd {
    /// Starts containerd under a new temporary directory and waits (at most 20 s) until `ctr version`
    /// answers on its socket.
    ///
    /// # Errors
    /// When containerd does not start or does not answer in time; the message has its log.
    pub fn start() -> Result<Containerd, String> {
        let dir = tempfile::Builder::new()
            .prefix("wharf-containerd-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let base = dir.path();
        let socket = base.join("containerd.sock");
        let config = base.join("config.toml");
        std::fs::write(&config, config_toml(base, &socket))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = std::fs::File::create(base.join("containerd.log"))
            .map_err(|e| format!("containerd.log: {e}"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning containerd: {e}"))?;
        let mut containerd = Containerd { child, dir, socket };
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(Some(status)) = containerd.child.try_wait() {
                return Err(format!(
                    "containerd exited with {status}:\n{}",
                    containerd.log()
                ));
            }
            if containerd.socket.exists()
                && bounded(containerd.ctr("default").arg("version"), CLEANUP_WAIT)
                    .is_some_and(|o| o.status.success())
            {
                return Ok(containerd);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "containerd did not answer within {START_WAIT:?}:\n{}",
                    containerd.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gRPC socket (`ctr --address`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temporary directory holding root, state, socket, config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ctr --address <socket> --namespace <namespace>`, to which the caller adds a command.
    pub fn ctr(&self, namespace: &str) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace)
            .stdin(Stdio::null());
        cmd
    }

    /// What containerd wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// Kills every task in every namespace and deletes the containers (best effort, each step bounded).
    fn remove_containers(&self) {
        let list = |cmd: &mut Command| -> Vec<String> {
            bounded(cmd, CLEANUP_WAIT)
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        for namespace in list(self.ctr("default").args(["namespaces", "ls", "-q"])) {
            for task in list(self.ctr(&namespace).args(["tasks", "ls", "-q"])) {
                bounded(
                    self.ctr(&namespace)
                        .args(["tasks", "kill", "--signal", "SIGKILL", &task]),
                    CLEANUP_WAIT,
                );
                bounded(
                    self.ctr(&namespace)
                        .args(["tasks", "delete", "--force", &task]),
                    CLEANUP_WAIT,
                );
            }
            for container in list(self.ctr(&namespace).args(["containers", "ls", "-q"])) {
                bounded(
                    self.ctr(&namespace)
                        .args(["containers", "delete", &container]),
                    CLEANUP_WAIT,
                );
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_containers();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Anything still mounted below the directory (a container's rootfs after a failed clean-up) would
        // keep the directory from being removed.
        let base = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&base))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            bounded(Command::new("umount").args(["-l", point]), CLEANUP_WAIT);
        }
    }
}

/// containerd's configuration: everything under `base`.
fn config_toml(base: &Path, socket: &Path) -> String {
    let path = |p: &Path| {
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
"#,
        root = path(&base.join("root")),
        state = path(&base.join("state")),
        socket = path(socket),
        opt = path(&base.join("opt")),
    )
}

/// Runs `cmd` with its output captured, killing it after `limit`; `None` when it could not run or was
/// killed.
pub fn bounded(cmd: &mut Command, limit: Duration) -> Option<Output> {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_everything_under_the_directory() {
        let base = Path::new("/tmp/wharf-containerd-x");
        let toml = config_toml(base, &base.join("containerd.sock"));
        for line in toml.lines().filter(|l| l.contains('/')) {
            assert!(line.contains("/tmp/wharf-containerd-x/"), "{line}");
        }
        assert!(toml.contains("address = \"/tmp/wharf-containerd-x/containerd.sock\""));
        assert!(toml.contains("\"io.containerd.grpc.v1.cri\""));
        assert!(toml.contains("content_sharing_policy = \"isolated\""));
    }

    #[test]
    fn bounded_kills_what_overruns() {
        let started = Instant::now();
        assert!(bounded(Command::new("sleep").arg("5"), Duration::from_millis(200)).is_none());
        assert!(started.elapsed() < Duration::from_secs(4));
        let out = bounded(Command::new("echo").arg("hi"), Duration::from_secs(5)).expect("ran");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    }
}
