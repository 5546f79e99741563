//! Writing a file so that its path holds either the old content or the whole new one: never a
//! partial file, whatever stops the writer (an error, a full disk, `kill -9`).
//!
//! The content goes to a temporary file in the target's directory, is synced, then renamed
//! over the target. On Linux the temporary file is anonymous (`O_TMPFILE`): it has no name
//! until it is complete, so a writer killed mid-write leaves nothing behind; it is given a name
//! beside the target only for the rename. Filesystems without `O_TMPFILE` get a named hidden
//! temporary file instead, removed on every error.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Streams `fill`'s output into a temporary file beside `path`, syncs it, then renames it over
/// `path`; on any error nothing is left and `path` is untouched.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let (dir, tmp) = temp_names(path)?;
    let (file, named) = match anonymous(&dir) {
        Some(file) => (file, false),
        None => (File::create(&tmp)?, true),
    };
    let result = fill_and_sync(file, fill).and_then(|file| {
        if !named {
            give_name(&file, &tmp)?;
        }
        std::fs::rename(&tmp, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The target's directory and the hidden temporary name beside it.
fn temp_names(path: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    Ok((dir.to_path_buf(), tmp))
}

fn fill_and_sync(
    file: File,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<File> {
    let mut w = BufWriter::with_capacity(1 << 20, file);
    fill(&mut w)?;
    w.flush()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(file)
}

/// An unnamed file in `dir`, where the OS and the filesystem offer one.
#[cfg(target_os = "linux")]
fn anonymous(dir: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn anonymous(_dir: &Path) -> Option<File> {
    None
}

/// Links the anonymous `file` at `name` (replacing a stale file of that name).
#[cfg(target_os = "linux")]
fn give_name(file: &File, name: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let _ = std::fs::remove_file(name);
    let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let target = CString::new(name.as_os_str().as_bytes())?;
    // SAFETY: both arguments are NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
fn give_name(_file: &File, _name: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("anonymous files are Linux only"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("atomic-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_the_whole_file_and_nothing_else() {
        let d = dir("ok");
        let out = d.join("out.bin");
        write_with(&out, |w| w.write_all(b"new content")).expect("write");
        assert_eq!(std::fs::read(&out).expect("read"), b"new content");
        assert_eq!(names(&d), ["out.bin"]);
    }

    /// While the content is being written no new name exists in the directory, and a failed
    /// fill leaves the old file as it was and nothing beside it.
    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let d = dir("fail");
        let out = d.join("out.bin");
        std::fs::write(&out, b"old").expect("old");
        let err = write_with(&out, |w| {
            w.write_all(&[7; 3 << 20])?;
            w.flush()?;
            assert_eq!(names(&d), ["out.bin"], "a name appeared mid-write");
            Err(std::io::Error::other("disk on fire"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&out).expect("read"), b"old");
        assert_eq!(names(&d), ["out.bin"]);
    }
}
