//! CPU time and resident memory of a process, read from Linux's `/proc` (no other platform).

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux ABI
/// Rust targets.
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after `state`.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident set size of `pid`, KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let rss = rss_kib(me).expect("VmRSS");
        assert!(rss > 100, "{rss} KiB");
        // Burn CPU until the kernel has charged at least one 10 ms tick to us.
        let mut x = 0u64;
        let mut charged = false;
        for round in 0..4_000u64 {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i ^ round);
            }
            if cpu_seconds(me).expect("stat") > 0.0 {
                charged = true;
                break;
            }
        }
        assert!(x != 1);
        assert!(charged, "no CPU time ever charged");
    }
}
