//! What the throughput benches share: how many runs, and how paired runs
//! become one ratio.

/// Runs per case (`BENCH_RUNS` overrides): this many because on a small
/// shared machine a run now and then is far off in either direction, and
/// the pairs' ratios scatter by 10% or more; with 9 the median itself still
/// moved by about 3% from one invocation to the next.
pub fn runs() -> usize {
    env_number("BENCH_RUNS", 15)
}

/// A whole number from the environment variable `name`, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// The seconds of each side's runs, run `i` of one side next to run `i`
/// of the other.
pub struct Paired {
    pub raw: Vec<f64>,
    pub ps: Vec<f64>,
}

impl Paired {
    /// The postsocket/raw throughput ratio: the median of the pairs' ratios
    /// (a pair's ratio cancels slow drifts of the machine), with the lowest
    /// and highest pair (how much the pairs disagreed).
    pub fn ratio(&self) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self.raw.iter().zip(&self.ps).map(|(r, p)| r / p).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        (median(ratios), lo, hi)
    }

    /// Each side's median run, in seconds.
    pub fn medians(&self) -> (f64, f64) {
        (median(self.raw.clone()), median(self.ps.clone()))
    }

    /// With `BENCH_VERBOSE` set, print every run's MB/s (`bytes` per run).
    pub fn print_runs(&self, bytes: usize) {
        if std::env::var_os("BENCH_VERBOSE").is_none() {
            return;
        }
        let mbps = |v: &[f64]| {
            v.iter()
                .map(|t| format!("{:.0}", bytes as f64 / t / 1e6))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "  runs MB/s: raw {}; postsocket {}",
            mbps(&self.raw),
            mbps(&self.ps)
        );
    }
}
