//! The credentials file's copy for the container: written by the host, mounted read-only.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::UserSpec;
use crate::credentials::Credentials;
use crate::host::user::process_user;
use crate::{Error, Result};

/// The sanitised copy is padded with spaces (valid trailing JSON whitespace) to a multiple of
/// this, so rewrites of a token of similar length keep the same size; see `write_in_place`.
const COPY_BLOCK: usize = 4096;

impl Credentials {
    /// For the file source, writes the sanitised copy (no refresh token; only the fields the
    /// container needs) for `agent` under `state_dir` and returns its path, to be mounted
    /// read-only at [`CONTAINER_CREDENTIALS_FILE`](crate::CONTAINER_CREDENTIALS_FILE). `None` for
    /// the env source (nothing to mount). `owner` is the container user, who must be able to read
    /// the file.
    ///
    /// Why the copy is rewritten in place rather than renamed over: the engine bind-mounts a single
    /// file by its inode, so a container keeps seeing the old inode after a rename and would never
    /// get a refreshed token. Mounting the directory instead would need a directory of its own in
    /// the container, but Claude Code reads the file inside `~/.claude`, which must stay writable.
    /// So the same inode is rewritten, and only when the content changed. To keep a concurrent
    /// reader from seeing a half file, the content is padded with JSON whitespace to a multiple of
    /// 4 KiB: a new token of similar length overwrites the old bytes in one write of the same size,
    /// and the file never passes through an empty or shorter state.
    ///
    /// Permissions: the directories are created mode 0700 (owned by this process), which keeps
    /// other host users out. The file is mode 0600 and, when this process is root, owned by
    /// `owner`. When this process is not root and `owner` is another uid, the file is made 0644
    /// (the container user could not read it otherwise; the 0700 directories still keep host
    /// users out).
    pub fn write_container_copy(
        &self,
        state_dir: &Path,
        agent: &str,
        owner: UserSpec,
    ) -> Result<Option<PathBuf>> {
        let Some(sanitised) = self.sanitised() else {
            return Ok(None);
        };
        let path = Credentials::container_copy_path(state_dir, agent);
        let dir = path.parent().unwrap_or(state_dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let mut content = sanitised.to_string().into_bytes();
        content.push(b'\n');
        let padded = content.len().div_ceil(COPY_BLOCK) * COPY_BLOCK;
        content.resize(padded, b' ');
        write_in_place(&path, &content)?;

        let me = process_user();
        let i_am_root = me.is_some_and(|u| u.is_root());
        let mode = if i_am_root || me.is_some_and(|u| u.uid == owner.uid) {
            0o600
        } else {
            0o644
        };
        if i_am_root {
            std::os::unix::fs::chown(&path, Some(owner.uid), owner.gid)
                .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        Ok(Some(path))
    }
}

/// Rewrites `path` to hold exactly `content`, keeping its inode (see
/// [`Credentials::write_container_copy`]). Creates it (mode 0600) when missing.
fn write_in_place(path: &Path, content: &[u8]) -> Result<()> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    match fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(mut f) => {
            let mut old = Vec::new();
            f.read_to_end(&mut old)
                .map_err(|e| Error::io(ctx("read"), e))?;
            if old == content {
                return Ok(());
            }
            f.write_all_at(content, 0)
                .map_err(|e| Error::io(ctx("write"), e))?;
            if old.len() > content.len() {
                f.set_len(content.len() as u64)
                    .map_err(|e| Error::io(ctx("truncate"), e))?;
            }
            f.sync_data().map_err(|e| Error::io(ctx("sync"), e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io(ctx("create"), e))?;
            f.write_all(content)
                .map_err(|e| Error::io(ctx("write"), e))?;
            f.sync_data().map_err(|e| Error::io(ctx("sync"), e))
        }
        Err(e) => Err(Error::io(ctx("open"), e)),
    }
}
