//! `--server-pid PID`: what the server process spent during a run, read from Linux's
//! /proc (proc(5)): CPU time from `/proc/PID/stat`, memory from `/proc/PID/status`.
//! Sampled, not asked of the server, so any build (the old one included) can be measured.

use std::time::Duration;

use tokio::sync::watch;

/// /proc reports CPU time in clock ticks of USER_HZ, which the kernel fixes at 100 for user
/// space on the architectures estgate runs on (x86-64, arm64), whatever its internal HZ.
pub const USER_HZ: u64 = 100;

/// How often memory is sampled: a peak shorter than this may be missed, which VmHWM covers.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// One look at the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// utime + stime of all its threads, in USER_HZ ticks.
    pub cpu_ticks: u64,
    pub rss_kb: u64,
    /// The peak resident set since the process started (the kernel's own high-water mark).
    pub hwm_kb: u64,
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// is in parentheses and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After the name: field 3 (state) is the first, so utime is the 12th and stime the 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Key:   1234 kB` line of `/proc/PID/status`, in kB.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = value.split_ascii_whitespace();
        let n = parts.next()?.parse().ok()?;
        (parts.next() == Some("kB")).then_some(n)
    })
}

pub fn sample(pid: u32) -> std::io::Result<Sample> {
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/{pid}/{what}: unexpected format"),
        )
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(Sample {
        cpu_ticks: parse_stat(&stat).ok_or_else(|| bad("stat"))?,
        rss_kb: parse_status_kb(&status, "VmRSS").ok_or_else(|| bad("status VmRSS"))?,
        hwm_kb: parse_status_kb(&status, "VmHWM").ok_or_else(|| bad("status VmHWM"))?,
    })
}

/// What the server used between the first and the last sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_secs: f64,
    /// The largest VmRSS sampled.
    pub peak_rss_kb: u64,
    /// VmHWM at the end: the peak since the server started, which may predate the run.
    pub hwm_kb: u64,
    pub samples: usize,
    /// The process was gone before the run ended (the figures stop at its last sample).
    pub vanished: bool,
}

impl Usage {
    pub fn between(first: &Sample, last: &Sample, peak_rss_kb: u64, samples: usize) -> Usage {
        Usage {
            cpu_secs: last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64 / USER_HZ as f64,
            peak_rss_kb: peak_rss_kb.max(last.rss_kb),
            hwm_kb: last.hwm_kb,
            samples,
            vanished: false,
        }
    }

    /// Server CPU milliseconds per answered request; None without answers.
    pub fn cpu_ms_per_request(&self, answered: usize) -> Option<f64> {
        (answered > 0).then(|| self.cpu_secs * 1000.0 / answered as f64)
    }

    /// The lines printed under a run's figures.
    pub fn report(&self, pid: u32, answered: usize) -> Vec<String> {
        let per = self
            .cpu_ms_per_request(answered)
            .map(|ms| format!("{ms:.3}"))
            .unwrap_or_else(|| "n/a".into());
        let mut lines = vec![
            format!(
                "server cpu    {:.2} s (pid {pid}), {per} ms per request",
                self.cpu_secs
            ),
            format!(
                "server rss    peak {:.1} MB sampled ({} samples), VmHWM {:.1} MB",
                mb(self.peak_rss_kb),
                self.samples,
                mb(self.hwm_kb)
            ),
        ];
        if self.vanished {
            lines.push("server gone   the process ended during the run".into());
        }
        lines
    }
}

pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Samples a process every [`SAMPLE_EVERY`] from `start` until `stop`.
pub struct Sampler {
    first: Sample,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(Sample, u64, usize, bool)>,
}

impl Sampler {
    /// Fails at once when the process cannot be read: a wrong PID should stop the run before
    /// it starts, not yield zeros.
    pub fn start(pid: u32) -> std::io::Result<Sampler> {
        let first = sample(pid)?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let (mut last, mut peak, mut n, mut vanished) = (first, first.rss_kb, 1, false);
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
                match sample(pid) {
                    Ok(s) => {
                        peak = peak.max(s.rss_kb);
                        last = s;
                        n += 1;
                    }
                    Err(_) => {
                        vanished = true;
                        break;
                    }
                }
            }
            if !vanished {
                if let Ok(s) = sample(pid) {
                    peak = peak.max(s.rss_kb);
                    last = s;
                    n += 1;
                }
            }
            (last, peak, n, vanished)
        });
        Ok(Sampler { first, stop, task })
    }

    pub async fn finish(self) -> Usage {
        let _ = self.stop.send(true);
        let (last, peak, n, vanished) =
            self.task
                .await
                .unwrap_or((self.first, self.first.rss_kb, 1, true));
        Usage {
            vanished,
            ..Usage::between(&self.first, &last, peak, n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_counted_after_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as prctl allows.
        let stat = "4242 (est gate) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    731 219 0 0 20 0 9 0 123456 98765432 4321 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(731 + 219));
        assert_eq!(parse_stat("4242 (estgate) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn status_values_are_read_in_kb() {
        let status = "Name:\testgate\nVmPeak:\t  200000 kB\nVmHWM:\t   81234 kB\n\
                      VmRSS:\t   40960 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(40960));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(81234));
        assert_eq!(parse_status_kb(status, "Threads"), None);
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(parse_status_kb("VmRSSX:\t1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn usage_is_the_difference_and_the_peak() {
        let first = Sample {
            cpu_ticks: 1000,
            rss_kb: 30_000,
            hwm_kb: 31_000,
        };
        let last = Sample {
            cpu_ticks: 1250,
            rss_kb: 35_000,
            hwm_kb: 52_000,
        };
        let u = Usage::between(&first, &last, 51_200, 40);
        assert_eq!((u.cpu_secs, u.peak_rss_kb, u.hwm_kb), (2.5, 51_200, 52_000));
        assert_eq!(u.cpu_ms_per_request(1000), Some(2.5));
        assert_eq!(u.cpu_ms_per_request(0), None);
        let lines = u.report(7, 1000);
        assert_eq!(
            lines[0],
            "server cpu    2.50 s (pid 7), 2.500 ms per request"
        );
        assert_eq!(
            lines[1],
            "server rss    peak 50.0 MB sampled (40 samples), VmHWM 50.8 MB"
        );
        assert_eq!(lines.len(), 2);
    }

    #[tokio::test]
    async fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
        let sampler = Sampler::start(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let u = sampler.finish().await;
        assert!(!u.vanished && u.samples >= 2 && u.peak_rss_kb > 0);
        assert!(Sampler::start(u32::MAX).is_err());
    }
}
