//! Process metrics in the Prometheus client libraries' names (`process_*`), read from
//! `/proc/self` at each scrape, and `ferry_build_info`: what a dashboard expects of any
//! exporter. Nothing here is kept between scrapes.

use std::fmt::Write;

/// Appends the process metrics and the build info to `s`. A figure `/proc` does not give
/// (another OS, a restricted `/proc`) is left out rather than reported as 0.
pub fn render(s: &mut String) {
    let _ = writeln!(
        s,
        "# HELP ferry_build_info The running ferry: its version and the platform it was built for.\n\
         # TYPE ferry_build_info gauge\n\
         ferry_build_info{{version=\"{}\",target=\"{}-{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    if let (Some(utime), Some(stime), true) = (field(14), field(15), ticks > 0) {
        let cpu = (utime + stime) as f64 / ticks as f64;
        let _ = writeln!(
            s,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
        );
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    if let (Some(boot), Some(start), true) = (boot, field(22), ticks > 0) {
        let started = boot as f64 + start as f64 / ticks as f64;
        let _ = writeln!(
            s,
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {started}"
        );
    }
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| {
            t.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        });
    if let (Some(pages), true) = (rss, page > 0) {
        let _ = writeln!(
            s,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            pages * page as u64
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle read here is one of them: not counted.
        let open = dir.count().saturating_sub(1);
        let _ = writeln!(
            s,
            "# HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\nprocess_open_fds {open}"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_figure_is_there_and_sane() {
        let mut s = String::new();
        super::render(&mut s);
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
