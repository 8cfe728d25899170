//! The worker as a separate OS process (the `promo-worker` binary), so tests can kill it with
//! SIGKILL at any point and benchmarks can measure its CPU time apart from everything else.
//!
//! The binary is the one cargo built for the running test or bench profile
//! (`target/<profile>/promo-worker`), or `$PROMO_WORKER_BIN`. `make test` builds it before the
//! tests; by hand, `cargo build -p promo-worker` (or `--release` for benches).

use anyhow::{Context as _, anyhow};
use promo_workflows::policy::Policy;
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

/// Path of the `promo-worker` binary next to the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/promo-worker`), or `$PROMO_WORKER_BIN`.
///
/// # Errors
/// When it does not exist, with the command that builds it.
pub fn worker_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PROMO_WORKER_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let bin = profile_dir()?.join("promo-worker");
    anyhow::ensure!(
        bin.is_file(),
        "promo-worker not found at {} (build it first: `cargo build -p promo-worker`, with --release for \
         benches; `make test` does), or set PROMO_WORKER_BIN",
        bin.display()
    );
    Ok(bin)
}

/// The cargo profile directory the running test binary was built into (`target/<profile>`),
/// where the workspace's binaries are too.
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running test binary")?;
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| anyhow!("unexpected test binary location {}", exe.display()))
}

/// The `promo` CLI built beside the running test binary.
pub fn promo_bin() -> anyhow::Result<PathBuf> {
    let bin = profile_dir()?.join("promo");
    anyhow::ensure!(bin.is_file(), "promo not found at {} (`cargo build -p promo-starter`)", bin.display());
    Ok(bin)
}

/// Runs `c` to its end off the caller's task (a test's in-process worker is polled on that
/// task, so blocking it would keep the worker from answering the command): whether it
/// succeeded, and its stdout then stderr.
pub async fn run_to_end(mut c: Command) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || c.output()).await.expect("join").expect("run the command");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// How to run a worker process.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Temporal frontend, `host:port`.
    pub temporal_address: String,
    /// Reference systems URL (`http://127.0.0.1:port`).
    pub systems_url: String,
    /// Policy, written to a TOML file the worker reads.
    pub policy: Policy,
    /// Most promotions cached (`--max-cached-workflows`); the worker's default when `None`.
    pub max_cached_workflows: Option<usize>,
    /// Where the policy file and the worker's log go.
    pub dir: PathBuf,
    /// More flags (metrics are off unless these include `--metrics`).
    pub extra_args: Vec<String>,
    /// The binary to run; [`worker_bin`] when `None`.
    pub bin: Option<PathBuf>,
}

/// A running `promo-worker`. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    config: WorkerConfig,
    starts: u32,
}

impl WorkerProcess {
    /// Starts a worker with `config`; its output goes to `<dir>/worker-<n>.log`.
    pub fn spawn(config: WorkerConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.dir)?;
        let policy = config.dir.join("policy.toml");
        std::fs::write(&policy, toml::to_string(&config.policy).context("writing the policy as TOML")?)?;
        let child = spawn(&config, &policy, 1)?;
        Ok(Self { child, config, starts: 1 })
    }

    /// The process id of the current worker process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the worker with SIGKILL (no drain, no goodbye) and waits until it is gone.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill().context("killing the worker")?;
        self.child.wait().context("waiting for the killed worker")?;
        Ok(())
    }

    /// Starts a fresh worker process with the same configuration (after [`Self::kill9`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        self.child = spawn(&self.config, &self.config.dir.join("policy.toml"), self.starts)?;
        Ok(())
    }

    /// User + system CPU time of the current worker process so far, in milliseconds.
    pub fn cpu_ms(&self) -> anyhow::Result<f64> {
        cpu_ms(self.pid())
    }

    /// Everything the current worker process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.dir.join(format!("worker-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Fails if the worker exited by itself, with the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = self.config.dir.join(format!("worker-{}.log", self.starts));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            anyhow::bail!(
                "worker exited by itself ({status}); last lines of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &WorkerConfig, policy: &std::path::Path, n: u32) -> anyhow::Result<Child> {
    let log = std::fs::File::create(config.dir.join(format!("worker-{n}.log")))?;
    let bin = match &config.bin {
        Some(b) => b.clone(),
        None => worker_bin()?,
    };
    let mut cmd = Command::new(bin);
    cmd.env("TEMPORAL_ADDRESS", &config.temporal_address)
        .env("TEMPORAL_NAMESPACE", crate::temporal::NAMESPACE)
        .env("RUST_LOG", "warn")
        // An error the worker exits with is printed as its chain of causes, without a backtrace.
        .env("RUST_LIB_BACKTRACE", "0")
        .arg("--systems")
        .arg(&config.systems_url)
        .arg("--policy")
        .arg(policy)
        .args(&config.extra_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if !config.extra_args.iter().any(|a| a == "--metrics") {
        cmd.args(["--metrics", "off"]);
    }
    if let Some(n) = config.max_cached_workflows {
        cmd.arg("--max-cached-workflows").arg(n.to_string());
    }
    cmd.spawn().context("starting promo-worker")
}

/// User + system CPU time of process `pid` so far, in milliseconds (from `/proc/<pid>/stat`;
/// children it waited for are not included).
pub fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields.get(i).ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?.parse::<f64>().map_err(Into::into)
    };
    // `rest` starts at field 3 (state), so field k is at index k - 3.
    let total = ticks(14 - 3)? + ticks(15 - 3)?;
    Ok(total * 1000.0 / clock_ticks_per_second())
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux this runs on (the value is fixed in the kernel's
/// ABI for `/proc` times).
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_policy_survives_the_toml_round_trip_the_worker_reads() {
        let policy = crate::env::test_policy();
        let text = toml::to_string(&policy).expect("policy serialises");
        assert_eq!(promo_workflows::policy::Policy::from_toml(&text).expect("worker parses it"), policy);
    }

    #[test]
    fn cpu_time_of_this_process_is_readable() {
        assert!(super::cpu_ms(std::process::id()).expect("readable") >= 0.0);
    }
}
