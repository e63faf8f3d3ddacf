//! Files written atomically: to a temporary sibling, then renamed over the target, so a crash never
//! leaves a half-written file under the real name.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The temporary sibling of `path`, keeping its extension (tch picks the format from it).
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Removes the temporaries in `dir` whose writer is gone (a process killed between writing and renaming
/// leaves `.tmp-PID-NAME` behind). Called when a run opens its folder: this process has no write in
/// flight then, so a temporary under its own PID (reused from the killed writer) is stale too.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let writer = name.strip_prefix(".tmp-").and_then(|rest| rest.split('-').next());
        let Some(pid) = writer.and_then(|pid| pid.parse::<libc::pid_t>().ok()).filter(|pid| *pid > 0) else {
            continue;
        };
        // SAFETY: kill(2) with signal 0 sends nothing; it only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone || pid as u32 == std::process::id() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))
    })
}

/// Makes `path` atomically with `write`, which is handed the temporary sibling to fill (a file, or a
/// folder it creates), renamed over `path` once `write` succeeds. A write or rename that fails (a full
/// disk, an I/O error) removes the temporary before it returns the error: it would hold the space the
/// next attempt needs.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let tmp = temporary_sibling(path);
    let written = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp).or_else(|_| std::fs::remove_dir_all(&tmp));
    }
    written
}
