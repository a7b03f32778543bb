use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};

use crate::{ContentError, Digest, Labels, Status, Store, io_err};

/// A held ingest. The lock is an exclusive `flock` on the ingest directory: it is per
/// open file description, so it excludes a second writer in this process and in any
/// other process sharing the root, and the kernel drops it when a writer dies.
pub struct Writer<'s> {
    store: &'s Store,
    reference: String,
    dir: PathBuf,
    data: File,
    offset: u64,
    total: u64,
    hasher: Sha256,
    _lock: Flock<File>,
}

impl std::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("reference", &self.reference)
            .field("offset", &self.offset)
            .finish()
    }
}

pub(crate) fn lock_ingest(dir: &Path, reference: &str) -> Result<Flock<File>, ContentError> {
    let f = File::open(dir).map_err(io_err(dir.display().to_string()))?;
    let ino = f
        .metadata()
        .map_err(io_err(dir.display().to_string()))?
        .ino();
    let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            ContentError::Locked(reference.to_string())
        } else {
            io_err(format!("lock {}", dir.display()))(io::Error::from(errno))
        }
    })?;
    // The holder we waited on may have committed or aborted and removed the directory
    // between our open and our lock: then the lock guards nothing.
    match fs::metadata(dir) {
        Ok(md) if md.ino() == ino => Ok(lock),
        _ => Err(ContentError::Locked(reference.to_string())),
    }
}

impl<'s> Writer<'s> {
    pub(crate) fn open(
        store: &'s Store,
        reference: &str,
        total: u64,
    ) -> Result<Self, ContentError> {
        if reference.is_empty() {
            return Err(ContentError::InvalidArgument("empty ingest ref".into()));
        }
        let dir = store.ingest_dir(reference);
        let ctx = || dir.display().to_string();
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(ctx())(e)),
        }
        let lock = lock_ingest(&dir, reference)?;
        let ref_path = dir.join("ref");
        let now = SystemTime::now();
        if ref_path.exists() {
            let stored = fs::read_to_string(&ref_path).map_err(io_err(ctx()))?;
            if stored != reference {
                return Err(ContentError::FailedPrecondition(format!(
                    "ingest {} belongs to ref {stored:?}, not {reference:?}",
                    dir.display()
                )));
            }
        } else {
            write_file(
                &dir.join("startedat"),
                common::rfc3339_nanos(now).as_bytes(),
            )?;
            write_file(
                &dir.join("updatedat"),
                common::rfc3339_nanos(now).as_bytes(),
            )?;
            // Written last: its presence marks a fully initialised ingest.
            write_file(&ref_path, reference.as_bytes())?;
        }
        let mut total = total;
        let total_path = dir.join("total");
        if total > 0 {
            write_file(&total_path, total.to_string().as_bytes())?;
        } else if let Ok(s) = fs::read_to_string(&total_path) {
            total = s.trim().parse().unwrap_or(0);
        }
        let mut data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("data"))
            .map_err(io_err(ctx()))?;
        // Resume: the hash state is not persisted, so re-read what is there.
        let mut hasher = Sha256::new();
        let offset = io::copy(&mut (&mut data), &mut hasher).map_err(io_err(ctx()))?;
        tracing::debug!(reference, offset, "ingest opened");
        Ok(Writer {
            store,
            reference: reference.to_string(),
            dir,
            data,
            offset,
            total,
            hasher,
            _lock: lock,
        })
    }

    pub fn reference(&self) -> &str {
        &self.reference
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }

    pub fn status(&self) -> Result<Status, ContentError> {
        read_status(&self.dir)
    }

    /// Appends at the current offset.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), ContentError> {
        let ctx = || format!("write ingest {}", self.reference);
        self.data
            .seek(SeekFrom::Start(self.offset))
            .map_err(io_err(ctx()))?;
        self.data.write_all(buf).map_err(io_err(ctx()))?;
        self.hasher.update(buf);
        self.offset += buf.len() as u64;
        write_file(
            &self.dir.join("updatedat"),
            common::rfc3339_nanos(SystemTime::now()).as_bytes(),
        )
    }

    /// Writes at `offset`, which may rewind (truncating what follows) but not skip
    /// ahead, as containerd's Write with an offset.
    pub fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), ContentError> {
        if offset > self.offset {
            return Err(ContentError::InvalidArgument(format!(
                "write offset {offset} beyond current offset {} of ref {}",
                self.offset, self.reference
            )));
        }
        if offset < self.offset {
            self.truncate(offset)?;
        }
        self.write(buf)
    }

    pub fn truncate(&mut self, size: u64) -> Result<(), ContentError> {
        if size > self.offset {
            return Err(ContentError::InvalidArgument(format!(
                "cannot truncate ref {} to {size}: only {} bytes written",
                self.reference, self.offset
            )));
        }
        let ctx = || format!("truncate ingest {}", self.reference);
        self.data.set_len(size).map_err(io_err(ctx()))?;
        self.data.seek(SeekFrom::Start(0)).map_err(io_err(ctx()))?;
        let mut hasher = Sha256::new();
        io::copy(&mut (&mut self.data).take(size), &mut hasher).map_err(io_err(ctx()))?;
        self.hasher = hasher;
        self.offset = size;
        Ok(())
    }

    /// Verifies `size` (when non-zero) and `expected` (when given), then moves the data
    /// into `blobs/` atomically and durably. An existing blob with the same digest
    /// answers AlreadyExists, and the ingest is removed either way.
    pub fn commit(
        mut self,
        size: u64,
        expected: Option<&Digest>,
        labels: &Labels,
    ) -> Result<Digest, ContentError> {
        let ctx = format!("commit ingest {}", self.reference);
        if size > 0 && size != self.offset {
            return Err(ContentError::FailedPrecondition(format!(
                "unexpected commit size {}, expected {size}",
                self.offset
            )));
        }
        if self.total > 0 && size == 0 && self.offset != self.total {
            return Err(ContentError::FailedPrecondition(format!(
                "unexpected commit size {}, expected total {}",
                self.offset, self.total
            )));
        }
        let digest = self.digest();
        if let Some(exp) = expected
            && *exp != digest
        {
            return Err(ContentError::FailedPrecondition(format!(
                "unexpected commit digest {digest}, expected {exp}"
            )));
        }
        self.data.flush().map_err(io_err(ctx.clone()))?;
        self.data.sync_all().map_err(io_err(ctx.clone()))?;
        let target = self.store.blob_path(&digest);
        if target.exists() {
            fs::remove_dir_all(&self.dir).map_err(io_err(ctx.clone()))?;
            return Err(ContentError::AlreadyExists(digest.to_string()));
        }
        // Labels first: a crash after them but before the rename leaves a label record
        // for a missing blob (garbage collection drops it), never a blob that lost the
        // gc.ref labels keeping its children alive.
        // Always set, even when empty: the metadata database records per namespace
        // that the blob exists there.
        self.store.label_store().set(&digest, labels)?;
        let data_path = self.dir.join("data");
        fs::set_permissions(&data_path, fs::Permissions::from_mode(0o444))
            .map_err(io_err(ctx.clone()))?;
        fs::rename(&data_path, &target).map_err(io_err(ctx.clone()))?;
        if let Some(parent) = target.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(ctx.clone()))?;
        }
        fs::remove_dir_all(&self.dir).map_err(io_err(ctx))?;
        tracing::debug!(reference = %self.reference, %digest, size = self.offset, "content committed");
        Ok(digest)
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), ContentError> {
    fs::write(path, data).map_err(io_err(path.display().to_string()))
}

pub(crate) fn read_status(dir: &Path) -> Result<Status, ContentError> {
    let read = |name: &str| {
        let p = dir.join(name);
        fs::read_to_string(&p).map_err(io_err(p.display().to_string()))
    };
    let reference = read("ref")?;
    let data = dir.join("data");
    let offset = fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
    let total = read("total")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let started_at = parse_rfc3339(read("startedat")?.trim()).unwrap_or(UNIX_EPOCH);
    let updated_at = parse_rfc3339(read("updatedat")?.trim()).unwrap_or(started_at);
    Ok(Status {
        reference,
        offset,
        total,
        started_at,
        updated_at,
    })
}

/// Parses the UTC form `rfc3339_nanos` writes (`2006-01-02T15:04:05.999999999Z`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").get(..9)?.parse().ok()?
    };
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_123, 456_789_000);
        assert_eq!(parse_rfc3339(&common::rfc3339_nanos(t)), Some(t));
        let t = UNIX_EPOCH + Duration::new(951_782_400, 0); // 2000-02-29
        assert_eq!(parse_rfc3339(&common::rfc3339_nanos(t)), Some(t));
    }
}
