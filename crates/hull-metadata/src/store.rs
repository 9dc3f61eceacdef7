//! The SQLite-backed record store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hull_oci::{ChainId, DiffId, Digest, ImageId, Reference};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::gc::GcRoots;
use crate::owner;

const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    created TEXT,
    size INTEGER NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    chain_id TEXT NOT NULL,
    PRIMARY KEY (image_id, position)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS image_blobs (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE INDEX IF NOT EXISTS image_blobs_digest ON image_blobs(digest);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, repository, digest)
);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    content_size INTEGER
);
CREATE TABLE IF NOT EXISTS blob_diffs (
    blob TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    media_type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS blob_diffs_diff ON blob_diffs(diff_id);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    owner TEXT
);
CREATE TABLE IF NOT EXISTS lease_resources (
    lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (lease_id, kind, key)
);
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS build_cache_layers (
    key TEXT NOT NULL REFERENCES build_cache(key) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    chain_id TEXT NOT NULL,
    PRIMARY KEY (key, position)
);
CREATE INDEX IF NOT EXISTS build_cache_layers_chain ON build_cache_layers(chain_id);
CREATE TABLE IF NOT EXISTS build_cache_blobs (
    key TEXT NOT NULL REFERENCES build_cache(key) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (key, digest)
);
"#;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("opening metadata database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "metadata database {path} has schema version {found}, newer than this hull ({SCHEMA_VERSION})"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("metadata query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("metadata record holds an invalid value {value:?} in {column}")]
    Corrupt { column: &'static str, value: String },
}

pub(crate) type Result<T> = std::result::Result<T, MetadataError>;

/// An image: one platform manifest and its config (the image ID is the config's digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: ImageId,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    /// `created` from the config, as written there (RFC 3339).
    pub created: Option<String>,
    /// Sum of the layers' sizes (what `docker images` shows as SIZE).
    pub size: u64,
    /// When this record was stored (unix seconds).
    pub added_at: i64,
    /// Chain IDs of the stack, bottom layer first.
    pub layers: Vec<ChainId>,
    /// Every blob the image needs kept: manifest, config, layer blobs, and the index it came
    /// from (returned sorted by digest).
    pub blobs: Vec<Digest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Unpacked completely and synced; usable as a lower dir.
    Committed,
}

/// An unpacked layer, identified by its chain ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    pub chain_id: ChainId,
    pub diff_id: DiffId,
    pub parent: Option<ChainId>,
    /// Uncompressed size of the layer's tar stream.
    pub size: u64,
    /// The layer's size as Docker reports it (`docker history`, `docker images`): the bytes of
    /// its regular files and symlink targets. `None` in records written before it was kept.
    pub content_size: Option<u64>,
    pub state: LayerState,
}

impl LayerRecord {
    /// The size to show users: Docker's measure where the record has it, else the tar's.
    pub fn docker_size(&self) -> u64 {
        self.content_size.unwrap_or(self.size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub reference: Reference,
    pub image: ImageId,
    pub updated_at: i64,
}

/// A resource a lease keeps from GC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseResource {
    Blob(Digest),
    Layer(ChainId),
}

/// The record store. Cheap to share: wrap in `Arc` (leases need one).
pub struct Metadata {
    path: PathBuf,
    conn: Mutex<Connection>,
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn parse<T: FromStr>(column: &'static str, value: String) -> Result<T> {
    value
        .parse()
        .map_err(|_| MetadataError::Corrupt { column, value })
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metadata {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Arc<Metadata>> {
        let open_err = |source| MetadataError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // FULL: a committed transaction survives power loss, not only a process crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(MetadataError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
            });
        }
        if version < SCHEMA_VERSION {
            // Version 1 lacked the lease owner; the column is added before the schema's
            // `IF NOT EXISTS` statements run (they leave an existing table as it is).
            let migrate = if version == 1 {
                "ALTER TABLE leases ADD COLUMN owner TEXT;"
            } else {
                ""
            };
            // Version 3 and older lacked `layers.content_size`: added after the schema's
            // statements, when the existing table does not have it.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate);
            let tx = tx.map_err(open_err)?;
            tx.execute_batch(&format!("{migrate} {SCHEMA}"))
                .map_err(open_err)?;
            let has_content_size: bool = tx
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('layers') WHERE name = 'content_size'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n > 0)
                .map_err(open_err)?;
            if !has_content_size {
                tx.execute_batch("ALTER TABLE layers ADD COLUMN content_size INTEGER;")
                    .map_err(open_err)?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(Arc::new(Metadata {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back on drop), so a poisoned mutex is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    // ------------------------------------------------------------------ images

    /// Inserts or replaces an image record with its layer and blob edges.
    pub fn put_image(&self, rec: &ImageRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO images (id, manifest_digest, manifest_media_type, created, size, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                   manifest_media_type = excluded.manifest_media_type, created = excluded.created,
                   size = excluded.size",
                params![
                    rec.id.to_string(),
                    rec.manifest_digest.to_string(),
                    rec.manifest_media_type,
                    rec.created,
                    to_i64(rec.size),
                    rec.added_at
                ],
            )?;
            let id = rec.id.to_string();
            tx.execute("DELETE FROM image_layers WHERE image_id = ?1", [&id])?;
            tx.execute("DELETE FROM image_blobs WHERE image_id = ?1", [&id])?;
            for (i, l) in rec.layers.iter().enumerate() {
                tx.execute(
                    "INSERT INTO image_layers (image_id, position, chain_id) VALUES (?1, ?2, ?3)",
                    params![id, i as i64, l.to_string()],
                )?;
            }
            for b in &rec.blobs {
                tx.execute(
                    "INSERT OR IGNORE INTO image_blobs (image_id, digest) VALUES (?1, ?2)",
                    params![id, b.to_string()],
                )?;
            }
            Ok(())
        })
    }

    fn load_image(conn: &Connection, id: &str) -> Result<Option<ImageRecord>> {
        let row = conn
            .query_row(
                "SELECT id, manifest_digest, manifest_media_type, created, size, added_at
                 FROM images WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, manifest, mt, created, size, added_at)) = row else {
            return Ok(None);
        };
        let mut stmt = conn.prepare_cached(
            "SELECT chain_id FROM image_layers WHERE image_id = ?1 ORDER BY position",
        )?;
        let layers = stmt
            .query_map([&id], |r| r.get::<_, String>(0))?
            .map(|v| parse("image_layers.chain_id", v?))
            .collect::<Result<Vec<ChainId>>>()?;
        let mut stmt = conn
            .prepare_cached("SELECT digest FROM image_blobs WHERE image_id = ?1 ORDER BY digest")?;
        let blobs = stmt
            .query_map([&id], |r| r.get::<_, String>(0))?
            .map(|v| parse("image_blobs.digest", v?))
            .collect::<Result<Vec<Digest>>>()?;
        Ok(Some(ImageRecord {
            id: parse("images.id", id)?,
            manifest_digest: parse("images.manifest_digest", manifest)?,
            manifest_media_type: mt,
            created,
            size: u64::try_from(size).unwrap_or(0),
            added_at,
            layers,
            blobs,
        }))
    }

    pub fn image(&self, id: &ImageId) -> Result<Option<ImageRecord>> {
        Self::load_image(&self.conn(), &id.to_string())
    }

    /// All images, newest first (by config `created`, then by when they were stored).
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let conn = self.conn();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM images ORDER BY created DESC, added_at DESC")?
            .query_map([], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        ids.iter()
            .filter_map(|id| Self::load_image(&conn, id).transpose())
            .collect()
    }

    /// Image IDs whose hex starts with `prefix` (Docker accepts short IDs).
    pub fn images_by_prefix(&self, prefix: &str) -> Result<Vec<ImageId>> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let pattern = format!("sha256:{}%", prefix.to_ascii_lowercase());
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM images WHERE id LIKE ?1")?;
        let ids = stmt
            .query_map([pattern], |r| r.get::<_, String>(0))?
            .map(|v| parse("images.id", v?))
            .collect::<Result<Vec<_>>>()?;
        Ok(ids)
    }

    /// Deletes an image record with its tags and repository digests. Blobs and layers are left
    /// to GC.
    pub fn delete_image(&self, id: &ImageId) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM images WHERE id = ?1", [id.to_string()])? > 0))
    }

    // ------------------------------------------------------------------ tags

    /// Points `reference` (which must carry a tag) at an image; returns the image it pointed at.
    pub fn set_tag(&self, reference: &Reference, id: &ImageId) -> Result<Option<ImageId>> {
        let name = reference.without_digest_string();
        self.write(|tx| {
            let old: Option<String> = tx
                .query_row("SELECT image_id FROM tags WHERE name = ?1", [&name], |r| r.get(0))
                .optional()?;
            tx.execute(
                "INSERT INTO tags (name, image_id, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, updated_at = excluded.updated_at",
                params![name, id.to_string(), now()],
            )?;
            old.map(|o| parse("tags.image_id", o)).transpose()
        })
    }

    pub fn remove_tag(&self, reference: &Reference) -> Result<Option<ImageId>> {
        let name = reference.without_digest_string();
        self.write(|tx| {
            let old: Option<String> = tx
                .query_row("SELECT image_id FROM tags WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .optional()?;
            tx.execute("DELETE FROM tags WHERE name = ?1", [&name])?;
            old.map(|o| parse("tags.image_id", o)).transpose()
        })
    }

    pub fn tag(&self, reference: &Reference) -> Result<Option<ImageId>> {
        let name = reference.without_digest_string();
        let conn = self.conn();
        let v: Option<String> = conn
            .query_row("SELECT image_id FROM tags WHERE name = ?1", [&name], |r| {
                r.get(0)
            })
            .optional()?;
        v.map(|o| parse("tags.image_id", o)).transpose()
    }

    pub fn tags(&self) -> Result<Vec<TagRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, image_id, updated_at FROM tags ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(n, i, u)| {
                Ok(TagRecord {
                    reference: parse("tags.name", n)?,
                    image: parse("tags.image_id", i)?,
                    updated_at: u,
                })
            })
            .collect()
    }

    pub fn tags_of(&self, id: &ImageId) -> Result<Vec<Reference>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")?;
        let rows = stmt
            .query_map([id.to_string()], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.into_iter().map(|n| parse("tags.name", n)).collect()
    }

    // ------------------------------------------------------------------ repo digests

    /// Records that `digest` (a manifest or index digest) names this image in `repository`
    /// (`registry/path`, no tag).
    pub fn add_repo_digest(&self, id: &ImageId, repository: &str, digest: &Digest) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO repo_digests (image_id, repository, digest) VALUES (?1, ?2, ?3)",
                params![id.to_string(), repository, digest.to_string()],
            )?;
            Ok(())
        })
    }

    pub fn repo_digests(&self, id: &ImageId) -> Result<Vec<(String, Digest)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT repository, digest FROM repo_digests WHERE image_id = ?1 ORDER BY repository, digest",
        )?;
        let rows = stmt
            .query_map([id.to_string()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(r, d)| Ok((r, parse("repo_digests.digest", d)?)))
            .collect()
    }

    /// The image a `repository@digest` reference names, if stored.
    pub fn image_by_repo_digest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<ImageId>> {
        let conn = self.conn();
        let v: Option<String> = conn
            .query_row(
                "SELECT image_id FROM repo_digests WHERE repository = ?1 AND digest = ?2",
                params![repository, digest.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        v.map(|o| parse("repo_digests.image_id", o)).transpose()
    }

    /// Images whose manifest has this digest (any repository).
    pub fn images_by_manifest(&self, digest: &Digest) -> Result<Vec<ImageId>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM images WHERE manifest_digest = ?1
             UNION SELECT image_id FROM repo_digests WHERE digest = ?1",
        )?;
        let rows = stmt
            .query_map([digest.to_string()], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.into_iter().map(|n| parse("images.id", n)).collect()
    }

    // ------------------------------------------------------------------ layers

    pub fn put_layer(&self, rec: &LayerRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO layers (chain_id, diff_id, parent, size, state, created_at, content_size)
                 VALUES (?1, ?2, ?3, ?4, 'committed', ?5, ?6)
                 ON CONFLICT(chain_id) DO UPDATE SET size = excluded.size, state = excluded.state,
                   content_size = excluded.content_size",
                params![
                    rec.chain_id.to_string(),
                    rec.diff_id.to_string(),
                    rec.parent.as_ref().map(|p| p.to_string()),
                    to_i64(rec.size),
                    now(),
                    rec.content_size.map(to_i64)
                ],
            )?;
            Ok(())
        })
    }

    fn layer_from_row(
        (c, d, p, s, cs): (String, String, Option<String>, i64, Option<i64>),
    ) -> Result<LayerRecord> {
        Ok(LayerRecord {
            chain_id: parse("layers.chain_id", c)?,
            diff_id: parse("layers.diff_id", d)?,
            parent: p.map(|p| parse("layers.parent", p)).transpose()?,
            size: u64::try_from(s).unwrap_or(0),
            content_size: cs.and_then(|v| u64::try_from(v).ok()),
            state: LayerState::Committed,
        })
    }

    pub fn layer(&self, chain_id: &ChainId) -> Result<Option<LayerRecord>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT chain_id, diff_id, parent, size, content_size FROM layers WHERE chain_id = ?1",
                [chain_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        row.map(Self::layer_from_row).transpose()
    }

    pub fn layers(&self) -> Result<Vec<LayerRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT chain_id, diff_id, parent, size, content_size FROM layers ORDER BY chain_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.into_iter().map(Self::layer_from_row).collect()
    }

    pub fn delete_layer(&self, chain_id: &ChainId) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM layers WHERE chain_id = ?1",
                [chain_id.to_string()],
            )? > 0)
        })
    }

    /// Remembers that compressed blob `blob` decompresses to the layer `diff_id`.
    pub fn record_blob_diff(
        &self,
        blob: &Digest,
        diff_id: &DiffId,
        media_type: &str,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO blob_diffs (blob, diff_id, media_type) VALUES (?1, ?2, ?3)",
                params![blob.to_string(), diff_id.to_string(), media_type],
            )?;
            Ok(())
        })
    }

    pub fn diff_for_blob(&self, blob: &Digest) -> Result<Option<DiffId>> {
        let conn = self.conn();
        let v: Option<String> = conn
            .query_row(
                "SELECT diff_id FROM blob_diffs WHERE blob = ?1",
                [blob.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        v.map(|d| parse("blob_diffs.diff_id", d)).transpose()
    }

    /// Known blobs (with media types) whose content is the layer `diff_id`.
    pub fn blobs_for_diff(&self, diff_id: &DiffId) -> Result<Vec<(Digest, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT blob, media_type FROM blob_diffs WHERE diff_id = ?1 ORDER BY blob")?;
        let rows = stmt
            .query_map([diff_id.to_string()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(b, m)| Ok((parse("blob_diffs.blob", b)?, m)))
            .collect()
    }

    // ------------------------------------------------------------------ leases

    /// Creates a lease that protects resources from GC until dropped, until `ttl` passes, or
    /// until the process that took it is gone (a pull killed with SIGKILL must not pin its
    /// partial work for the whole TTL, nor may its lease be taken for a live one's).
    pub fn lease(self: &Arc<Self>, ttl: Duration) -> Result<Lease> {
        let id = format!("lease-{:016x}", rand::random::<u64>());
        let created = now();
        let expires = created.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let owner = owner::current();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO leases (id, created_at, expires_at, owner) VALUES (?1, ?2, ?3, ?4)",
                params![id, created, expires, owner],
            )?;
            Ok(())
        })?;
        Ok(Lease {
            id,
            metadata: Arc::clone(self),
        })
    }

    /// Deletes expired leases and those whose owning process has exited; returns how many.
    pub fn expire_leases(&self) -> Result<usize> {
        let dead = self.dead_leases()?;
        self.write(|tx| {
            let mut n = tx.execute("DELETE FROM leases WHERE expires_at < ?1", [now()])?;
            for id in &dead {
                n += tx.execute("DELETE FROM leases WHERE id = ?1", [id])?;
            }
            Ok(n)
        })
    }

    /// IDs of leases whose owner process no longer runs.
    fn dead_leases(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, owner FROM leases WHERE owner IS NOT NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut dead = Vec::new();
        for row in rows {
            let (id, owner) = row?;
            if !owner::is_alive(&owner) {
                dead.push(id);
            }
        }
        Ok(dead)
    }

    // ------------------------------------------------------------------ GC

    /// Everything that must survive a GC: image edges and unexpired leases.
    pub fn gc_roots(&self) -> Result<GcRoots> {
        let dead: BTreeSet<String> = self.dead_leases()?.into_iter().collect();
        let conn = self.conn();
        let mut roots = GcRoots::default();
        let mut stmt = conn.prepare(
            "SELECT digest FROM image_blobs
             UNION SELECT manifest_digest FROM images
             UNION SELECT id FROM images
             UNION SELECT digest FROM build_cache_blobs
             UNION SELECT config FROM build_cache",
        )?;
        for d in stmt.query_map([], |r| r.get::<_, String>(0))? {
            roots.blobs.insert(parse("image_blobs.digest", d?)?);
        }
        let mut stmt = conn.prepare(
            "SELECT l.id, r.kind, r.key FROM lease_resources r JOIN leases l ON l.id = r.lease_id
             WHERE l.expires_at >= ?1",
        )?;
        let rows = stmt.query_map([now()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (lease, kind, key) = row?;
            if dead.contains(&lease) {
                continue;
            }
            match kind.as_str() {
                "blob" => {
                    roots.blobs.insert(parse("lease_resources.key", key)?);
                }
                "layer" => {
                    roots.layers.insert(parse("lease_resources.key", key)?);
                }
                _ => {}
            }
        }
        let mut stmt = conn.prepare(
            "SELECT chain_id FROM image_layers UNION SELECT chain_id FROM build_cache_layers",
        )?;
        for c in stmt.query_map([], |r| r.get::<_, String>(0))? {
            roots.layers.insert(parse("image_layers.chain_id", c?)?);
        }
        let mut stmt =
            conn.prepare("SELECT chain_id, parent FROM layers WHERE parent IS NOT NULL")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (c, p) = row?;
            roots
                .layer_parents
                .insert(parse("layers.chain_id", c)?, parse("layers.parent", p)?);
        }
        Ok(roots)
    }
}

/// Tag names are stored as `registry/repository:tag`.
trait NameExt {
    fn without_digest_string(&self) -> String;
}

impl NameExt for Reference {
    fn without_digest_string(&self) -> String {
        match self.tag() {
            Some(t) => format!("{}:{t}", self.name()),
            None => format!("{}:{}", self.name(), hull_oci::DEFAULT_TAG),
        }
    }
}

/// Keeps resources from GC while alive. Dropping it releases them; a crash leaves the lease to
/// expire.
pub struct Lease {
    id: String,
    metadata: Arc<Metadata>,
}

impl Lease {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn add(&self, resource: &LeaseResource) -> Result<()> {
        let (kind, key) = match resource {
            LeaseResource::Blob(d) => ("blob", d.to_string()),
            LeaseResource::Layer(c) => ("layer", c.to_string()),
        };
        self.metadata.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO lease_resources (lease_id, kind, key) VALUES (?1, ?2, ?3)",
                params![self.id, kind, key],
            )?;
            Ok(())
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Best effort: if this fails the lease expires on its own.
        let _ = self
            .metadata
            .write(|tx| Ok(tx.execute("DELETE FROM leases WHERE id = ?1", [&self.id])?));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gc::mark_and_sweep;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn image(name: &str, layers: &[ChainId]) -> ImageRecord {
        ImageRecord {
            id: ImageId(d(name)),
            manifest_digest: d(&format!("{name}-manifest")),
            manifest_media_type: hull_oci::media_type::OCI_MANIFEST.to_string(),
            created: Some("2024-01-01T00:00:00Z".to_string()),
            size: 42,
            added_at: 1,
            layers: layers.to_vec(),
            blobs: vec![d(&format!("{name}-manifest")), d(&format!("{name}-layer"))],
        }
    }

    fn open() -> (tempfile::TempDir, Arc<Metadata>) {
        let dir = tempfile::tempdir().unwrap();
        let m = Metadata::open(&dir.path().join("metadata.db")).unwrap();
        (dir, m)
    }

    #[test]
    fn images_tags_and_digests_round_trip() {
        let (_dir, m) = open();
        let chain = ChainId::chain(&[DiffId(d("l1")), DiffId(d("l2"))]);
        let mut img = image("a", &chain);
        m.put_image(&img).unwrap();
        img.blobs.sort();
        assert_eq!(m.image(&img.id).unwrap().unwrap(), img);
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(m.set_tag(&r, &img.id).unwrap(), None);
        assert_eq!(m.tag(&r).unwrap(), Some(img.id.clone()));
        assert_eq!(m.tags_of(&img.id).unwrap(), vec![r.clone()]);
        m.add_repo_digest(&img.id, &r.name(), &img.manifest_digest)
            .unwrap();
        assert_eq!(
            m.image_by_repo_digest(&r.name(), &img.manifest_digest)
                .unwrap(),
            Some(img.id.clone())
        );
        assert_eq!(
            m.images_by_prefix(&img.id.digest().hex()[..6]).unwrap(),
            vec![img.id.clone()]
        );
        assert!(m.images_by_prefix("zz").unwrap().is_empty());
        assert!(m.delete_image(&img.id).unwrap());
        assert_eq!(m.tag(&r).unwrap(), None, "tags go with the image");
        assert!(m.repo_digests(&img.id).unwrap().is_empty());
    }

    #[test]
    fn retag_returns_previous() {
        let (_dir, m) = open();
        let a = image("a", &[]);
        let b = image("b", &[]);
        m.put_image(&a).unwrap();
        m.put_image(&b).unwrap();
        let r = Reference::parse("x:1").unwrap();
        m.set_tag(&r, &a.id).unwrap();
        assert_eq!(m.set_tag(&r, &b.id).unwrap(), Some(a.id.clone()));
        assert_eq!(m.remove_tag(&r).unwrap(), Some(b.id));
        assert_eq!(m.remove_tag(&r).unwrap(), None);
    }

    #[test]
    fn gc_keeps_image_edges_and_leases() {
        let (_dir, m) = open();
        let chain = ChainId::chain(&[DiffId(d("l1")), DiffId(d("l2"))]);
        for (i, c) in chain.iter().enumerate() {
            m.put_layer(&LayerRecord {
                chain_id: c.clone(),
                diff_id: DiffId(d(&format!("l{}", i + 1))),
                parent: i.checked_sub(1).map(|p| chain[p].clone()),
                size: 1,
                content_size: Some(1),
                state: LayerState::Committed,
            })
            .unwrap();
        }
        let img = image("a", &chain[1..]);
        m.put_image(&img).unwrap();
        let leased = d("in-flight");
        let lease = m.lease(Duration::from_secs(3600)).unwrap();
        lease.add(&LeaseResource::Blob(leased.clone())).unwrap();
        let stray_layer = ChainId(d("stray"));
        let present_blobs = vec![d("a-manifest"), d("a-layer"), leased.clone(), d("garbage")];
        let present_layers = vec![chain[0].clone(), chain[1].clone(), stray_layer.clone()];
        let plan = mark_and_sweep(
            &m.gc_roots().unwrap(),
            present_blobs.clone(),
            present_layers.clone(),
        );
        assert_eq!(plan.blobs, vec![d("garbage")]);
        assert_eq!(plan.layers, vec![stray_layer]);
        drop(lease);
        let plan = mark_and_sweep(&m.gc_roots().unwrap(), present_blobs, present_layers);
        assert_eq!(plan.blobs, vec![leased, d("garbage")]);
    }

    #[test]
    fn expired_leases_do_not_protect() {
        let (_dir, m) = open();
        let lease = m.lease(Duration::from_secs(0)).unwrap();
        lease.add(&LeaseResource::Blob(d("x"))).unwrap();
        // expires_at == now: still valid this second; force expiry
        m.write(|tx| Ok(tx.execute("UPDATE leases SET expires_at = 0", [])?))
            .unwrap();
        assert!(m.gc_roots().unwrap().blobs.is_empty());
        assert_eq!(m.expire_leases().unwrap(), 1);
        std::mem::forget(lease);
    }

    #[test]
    fn leases_of_exited_processes_do_not_protect() {
        let (_dir, m) = open();
        let lease = m.lease(Duration::from_secs(3600)).unwrap();
        lease.add(&LeaseResource::Blob(d("x"))).unwrap();
        assert_eq!(
            m.gc_roots().unwrap().blobs.len(),
            1,
            "a live owner protects"
        );
        // The owner as a process killed with SIGKILL leaves it: a PID that no longer runs.
        m.write(|tx| Ok(tx.execute("UPDATE leases SET owner = 'other-boot:1:1'", [])?))
            .unwrap();
        assert!(m.gc_roots().unwrap().blobs.is_empty());
        assert_eq!(m.expire_leases().unwrap(), 1);
        std::mem::forget(lease);
    }

    #[test]
    fn version_1_databases_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE leases (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL); PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let m = Metadata::open(&path).unwrap();
        let lease = m.lease(Duration::from_secs(60)).unwrap();
        lease.add(&LeaseResource::Blob(d("y"))).unwrap();
        assert_eq!(m.gc_roots().unwrap().blobs.len(), 1);
    }

    #[test]
    fn version_3_layers_gain_the_content_size_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let chain = ChainId::chain(&[DiffId(d("old"))]);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE layers (chain_id TEXT PRIMARY KEY, diff_id TEXT NOT NULL,
                 parent TEXT, size INTEGER NOT NULL, state TEXT NOT NULL,
                 created_at INTEGER NOT NULL); PRAGMA user_version = 3;",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO layers VALUES (?1, ?2, NULL, 2048, 'committed', 0)",
                [chain[0].to_string(), d("old").to_string()],
            )
            .unwrap();
        }
        let m = Metadata::open(&path).unwrap();
        let old = m.layer(&chain[0]).unwrap().unwrap();
        assert_eq!(
            (old.size, old.content_size, old.docker_size()),
            (2048, None, 2048)
        );
        m.put_layer(&LayerRecord {
            content_size: Some(1500),
            ..old
        })
        .unwrap();
        let new = m.layer(&chain[0]).unwrap().unwrap();
        assert_eq!((new.size, new.docker_size()), (2048, 1500));
        drop(m);
        // opening again leaves the migrated database as it is
        let m = Metadata::open(&path).unwrap();
        assert_eq!(m.layers().unwrap().len(), 1);
    }

    #[test]
    fn two_handles_share_one_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let a = Metadata::open(&path).unwrap();
        let b = Metadata::open(&path).unwrap();
        let img = image("a", &[]);
        a.put_image(&img).unwrap();
        assert!(b.image(&img.id).unwrap().is_some());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let p = path.clone();
                std::thread::spawn(move || {
                    let m = Metadata::open(&p).unwrap();
                    for j in 0..20 {
                        m.put_image(&image(&format!("t{i}-{j}"), &[])).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(a.images().unwrap().len(), 81);
    }

    #[test]
    fn blob_diff_mapping() {
        let (_dir, m) = open();
        let diff = DiffId(d("tar"));
        m.record_blob_diff(&d("gz"), &diff, hull_oci::media_type::OCI_LAYER_GZIP)
            .unwrap();
        assert_eq!(m.diff_for_blob(&d("gz")).unwrap(), Some(diff.clone()));
        assert_eq!(m.blobs_for_diff(&diff).unwrap().len(), 1);
    }
}
