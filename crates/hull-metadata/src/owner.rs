//! Who holds a lease: a process identified by boot, PID and start time, so that a lease of a
//! process killed with SIGKILL stops protecting anything as soon as the process is gone, and a
//! recycled PID is never taken for the original owner.
//!
//! Identity is `boot_id:pid:starttime` (starttime is field 22 of `/proc/PID/stat`, in clock
//! ticks since boot). Where `/proc` is unreadable the owner is unknown and the lease simply
//! lives until its TTL, the behaviour before owners existed.

/// The calling process's owner string, if it can be determined.
pub(crate) fn current() -> Option<String> {
    let pid = std::process::id();
    let start = start_time(pid)?;
    Some(format!("{}:{pid}:{start}", boot_id()?))
}

/// Whether the process named by `owner` still runs. Owners from another boot are dead; owners
/// that cannot be parsed or checked are presumed alive (the TTL still bounds them).
pub(crate) fn is_alive(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(boot)) = (parts.next(), parts.next(), parts.next()) else {
        return true;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return true;
    };
    match boot_id() {
        Some(current) if current != boot => return false,
        Some(_) => {}
        None => return true,
    }
    start_time(pid) == Some(start)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Field 22 of `/proc/PID/stat`; the command name (field 2) may hold spaces and parentheses,
/// so fields are counted after its last `)`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts at field 3 (state); starttime is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive() {
        let me = current().unwrap();
        assert!(is_alive(&me));
    }

    #[test]
    fn an_exited_process_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let owner = format!(
            "{}:{pid}:{}",
            boot_id().unwrap(),
            start_time(pid).unwrap_or(1)
        );
        child.wait().unwrap();
        assert!(!is_alive(&owner));
    }

    #[test]
    fn a_recycled_pid_or_another_boot_is_not_the_owner() {
        let pid = std::process::id();
        let start = start_time(pid).unwrap();
        let boot = boot_id().unwrap();
        assert!(!is_alive(&format!("{boot}:{pid}:{}", start + 1)));
        assert!(!is_alive(&format!("not-this-boot:{pid}:{start}")));
        assert!(is_alive("garbage"));
    }
}
