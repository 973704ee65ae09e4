//! File descriptors (PROTOCOL section 11): the gateway raises its soft open-file limit to the
//! hard limit at start, and checks that the sockets its configuration allows fit in it.
//!
//! Contract:
//! - [`raise_limit`] sets the soft `RLIMIT_NOFILE` to the hard one and returns the limit the
//!   process then runs with (the old soft limit when raising fails, with why).
//! - [`shortfall`] says, for a configuration and a limit, whether `max_connections +
//!   max_pending_handshakes + RESERVED` descriptors do not fit, and by how much as a message.
//!   [`RESERVED`] covers what the process holds besides client sockets: standard streams, the
//!   listener, the poll, its waker and the signal pipe, with room to spare.

use gateway::Config;

/// Descriptors kept for everything but client sockets: stdin, stdout and stderr (3), the
/// listener, the epoll instance, the waker's eventfd and the signal pipe's two ends (5), and
/// room for what a host library or a log file may open.
pub const RESERVED: u64 = 32;

/// The open-file limits of the process: (soft, hard); `None` where there is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The limit in force.
    pub soft: Option<u64>,
    /// The most the soft limit may be raised to.
    pub hard: Option<u64>,
}

/// The process's open-file limits now (none known where there is no `getrlimit`).
#[cfg(not(unix))]
pub fn current() -> std::io::Result<Limits> {
    Ok(Limits {
        soft: None,
        hard: None,
    })
}

/// Nothing to raise where there is no `setrlimit`.
#[cfg(not(unix))]
pub fn raise_limit() -> std::io::Result<(Limits, Limits)> {
    Ok((current()?, current()?))
}

/// The process's open-file limits now.
#[cfg(unix)]
pub fn current() -> std::io::Result<Limits> {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every unix
    let finite = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v as u64);
    Ok(Limits {
        soft: finite(rlim.rlim_cur),
        hard: finite(rlim.rlim_max),
    })
}

/// Raise the soft open-file limit to the hard one. Returns the limits before and after.
#[cfg(unix)]
pub fn raise_limit() -> std::io::Result<(Limits, Limits)> {
    let before = current()?;
    if before.soft != before.hard {
        let mut rlim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `current`.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        rlim.rlim_cur = rlim.rlim_max;
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the hard one
        // needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, current()?))
}

/// When the sockets `config` allows, plus [`RESERVED`], do not fit in `limit` descriptors:
/// a warning that says by how much. `None` when they fit or there is no limit.
pub fn shortfall(config: &Config, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    let connections = config.max_connections as u64;
    let handshakes = config.max_pending_handshakes as u64;
    let needed = connections
        .saturating_add(handshakes)
        .saturating_add(RESERVED);
    (needed > limit).then(|| {
        format!(
            "max_connections ({connections}) + max_pending_handshakes ({handshakes}) + {RESERVED} \
             reserved descriptors = {needed} do not fit in the open-file limit of {limit}"
        )
    })
}

/// A limit for a log line: the number, or `unlimited`.
pub fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfall_counts_connections_handshakes_and_the_reserve() {
        let config = Config {
            max_connections: 1000,
            max_pending_handshakes: 100,
            ..Config::default()
        };
        assert_eq!(shortfall(&config, Some(1132)), None);
        let warning = shortfall(&config, Some(1131)).expect("one short");
        assert!(warning.contains("= 1132"), "{warning}");
        assert!(warning.contains("limit of 1131"), "{warning}");
        assert_eq!(shortfall(&config, None), None);
    }

    #[test]
    fn the_limit_is_raised_to_the_hard_one() {
        let (_, after) = raise_limit().expect("getrlimit and setrlimit");
        assert_eq!(after.soft, after.hard);
    }
}
