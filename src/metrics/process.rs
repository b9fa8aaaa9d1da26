//! Process metrics in the Prometheus client libraries' names (`process_*`), read from
//! `/proc/self` at each scrape, and `ferry_build_info`: what a dashboard expects of any
//! exporter. Nothing here is kept between scrapes.

use super::registry::{Family, Kind};

/// The process's families: a figure `/proc` does not give (another OS, a restricted
/// `/proc`) has no sample rather than a 0.
pub(super) const FAMILIES: &[Family<()>] = &[
    Family {
        name: "ferry_build_info",
        help: "The running ferry: its version and the platform it was built for.",
        kind: Kind::Gauge,
        samples: |_, s| {
            let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
            s.labeled(
                &[("version", env!("CARGO_PKG_VERSION")), ("target", &target)],
                1,
            );
        },
    },
    Family {
        name: "process_cpu_seconds_total",
        help: "Total user and system CPU time spent in seconds.",
        kind: Kind::Counter,
        samples: |_, s| {
            let st = Stat::read();
            if let (Some(utime), Some(stime), Some(ticks)) = (st.field(14), st.field(15), ticks()) {
                s.value((utime + stime) as f64 / ticks as f64);
            }
        },
    },
    Family {
        name: "process_start_time_seconds",
        help: "Start time of the process since unix epoch in seconds.",
        kind: Kind::Gauge,
        samples: |_, s| {
            let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
            if let (Some(boot), Some(start), Some(ticks)) = (boot, Stat::read().field(22), ticks())
            {
                s.value(boot as f64 + start as f64 / ticks as f64);
            }
        },
    },
    Family {
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        kind: Kind::Gauge,
        samples: |_, s| {
            // SAFETY: sysconf only reads a system constant.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let pages = std::fs::read_to_string("/proc/self/statm")
                .ok()
                .and_then(|t| {
                    t.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                });
            if let (Some(pages), true) = (pages, page > 0) {
                s.value(pages * page as u64);
            }
        },
    },
    Family {
        name: "ferry_store_disk_writes_bytes_total",
        help: "Bytes this process caused to be written to storage (write_bytes of /proc/self/io, counted when a page is dirtied): the store's wear on the card, its log and its fsyncs included.",
        kind: Kind::Counter,
        samples: |_, s| {
            let written = std::fs::read_to_string("/proc/self/io").ok().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("write_bytes: "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
            if let Some(bytes) = written {
                s.value(bytes);
            }
        },
    },
    Family {
        name: "process_open_fds",
        help: "Number of open file descriptors.",
        kind: Kind::Gauge,
        samples: |_, s| {
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                // The directory handle read here is one of them: not counted.
                s.value(dir.count().saturating_sub(1));
            }
        },
    },
];

/// Clock ticks per second, for `/proc` times.
fn ticks() -> Option<u64> {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0)
}

/// `/proc/self/stat`, split after the command name (which may hold spaces).
struct Stat(Vec<u64>);

impl Stat {
    fn read() -> Stat {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields = text.rsplit_once(')').map_or(Vec::new(), |(_, rest)| {
            rest.split_whitespace()
                .map(|v| v.parse::<u64>().unwrap_or(0))
                .collect()
        });
        Stat(fields)
    }

    /// Field `n` as proc(5) numbers them (the state, field 3, is the first after the name).
    fn field(&self, n: usize) -> Option<u64> {
        self.0.get(n.checked_sub(3)?).copied()
    }
}

#[cfg(test)]
mod tests {
    /// Bytes written to a real file (not tmpfs: beside the sources) are counted.
    #[test]
    fn disk_writes_count_what_this_process_wrote() {
        let written = || {
            let mut s = String::new();
            super::super::registry::render(super::FAMILIES, &(), &mut s);
            s.lines()
                .find_map(|l| {
                    l.strip_prefix("ferry_store_disk_writes_bytes_total ")?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or_else(|| panic!("no ferry_store_disk_writes_bytes_total in {s}"))
        };
        let before = written();
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let f = std::fs::File::create(dir.path().join("w")).unwrap();
        std::io::Write::write_all(&mut &f, &[7u8; 8192]).unwrap();
        f.sync_all().unwrap();
        assert!(written() >= before + 8192.0);
    }

    #[test]
    fn every_figure_is_there_and_sane() {
        let mut s = String::new();
        super::super::registry::render(super::FAMILIES, &(), &mut s);
        let value = |name: &str| -> f64 {
            s.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {s}"))
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
        assert!(s.contains(&format!(
            "ferry_build_info{{version=\"{}\",target=\"",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
