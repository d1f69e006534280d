//! What the benches that measure a process share (Linux: they read /proc):
//! their knobs from the environment, a process's resident memory and CPU
//! time, the machine's available memory, a sampler of resident memory, and
//! the open-file limit. Used by `memory`, `hostile` and `scale`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A whole number from the environment variable `name`, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `kB` figure of a /proc file (`VmRSS:`, `MemAvailable:`), in bytes.
fn proc_kb(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The resident memory (VmRSS) of process `pid`, or of this one, in bytes.
pub fn rss(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    proc_kb(&path, "VmRSS:").unwrap_or(0)
}

/// This process's virtual size (VmSize: its address space), in bytes.
pub fn virtual_size() -> u64 {
    proc_kb("/proc/self/status", "VmSize:").unwrap_or(0)
}

/// The machine's available memory now (MemAvailable), in bytes.
pub fn mem_available() -> u64 {
    proc_kb("/proc/meminfo", "MemAvailable:").unwrap_or(u64::MAX)
}

/// A process's CPU time so far (user and system, every thread), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses, and it may hold spaces): state
    // is the 1st field, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// Samples the resident memory of `pid` (or this process) every `every`
/// until dropped; `peak()` is the largest seen. With a floor, `low()` is set
/// once the machine's available memory falls under it.
pub struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    low: Arc<AtomicBool>,
}

impl Sampler {
    pub fn start(pid: Option<u32>, every: Duration) -> Sampler {
        Sampler::with_floor(pid, every, 0)
    }

    pub fn with_floor(pid: Option<u32>, every: Duration, min_available: u64) -> Sampler {
        let peak = Arc::new(AtomicU64::new(rss(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let low = Arc::new(AtomicBool::new(false));
        let (p, s, l) = (peak.clone(), stop.clone(), low.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(pid), Ordering::Relaxed);
                if min_available > 0 && mem_available() < min_available {
                    l.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
        });
        Sampler { peak, stop, low }
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Set once the available memory fell under the floor.
    pub fn low(&self) -> Arc<AtomicBool> {
        self.low.clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Raise the open-file limit to its hard limit (first the hard limit to
/// `want`, when given, higher, and allowed: root); the limit now.
pub fn raise_fd_limit(want: Option<u64>) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on local structs.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if let Some(want) = want.filter(|&w| w > lim.rlim_max) {
            let up = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &up) == 0 {
                lim = up;
            }
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
