//! Reading a file named in the configuration (the configuration file itself, the JWT public
//! key) without letting it stall or flood the caller, which at a reload is the poll loop.
//!
//! Contract: [`read_regular`] opens without blocking, accepts only a regular file (a FIFO
//! with no writer would block, a device would never end) or the null device (read as
//! empty), and returns at most `limit`
//! bytes or an error; the error is the message only, without the path.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The largest configuration file read, in bytes (a file of 10 000 tokens is about 300 KiB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// The bytes of the regular file at `path`, if it has at most `limit` of them.
pub(crate) fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read the file: {e}");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        // `/dev/null` (by any name) is the empty file: `--config /dev/null` runs on the defaults.
        if is_null_device(&meta) {
            return Ok(Vec::new());
        }
        return Err("not a regular file".to_string());
    }
    let too_large = || format!("the file is larger than {limit} bytes");
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the check: read one byte past the bound at most.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Whether `meta` is the null device's.
fn is_null_device(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device()
        && std::fs::metadata("/dev/null")
            .is_ok_and(|null| null.file_type().is_char_device() && null.rdev() == meta.rdev())
}
