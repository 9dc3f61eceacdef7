//! Build cache records: what a cached build step produced (the stage's config after it, and
//! the layers and blobs it stands on), keyed by the step's cache key. They are GC roots until
//! `hull builder prune` deletes them.

use hull_oci::{ChainId, Digest};
use rusqlite::{OptionalExtension as _, params};

use crate::store::{Metadata, Result, now, parse, to_i64};

/// One cached build step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// The step's cache key.
    pub key: Digest,
    /// The config blob of the stage after the step.
    pub config: Digest,
    /// The stage's layer stack after the step, bottom first.
    pub layers: Vec<ChainId>,
    /// Blobs to keep: the stage's layer blobs (the config is kept through `config`).
    pub blobs: Vec<Digest>,
    /// Bytes the step's own layer adds (0 for steps that change only the config).
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    pub last_used: i64,
}

impl Metadata {
    /// Stores (or replaces) a cache record.
    pub fn put_cache(&self, rec: &CacheRecord) -> Result<()> {
        self.write(|tx| {
            let key = rec.key.to_string();
            tx.execute(
                "INSERT INTO build_cache (key, config, size, created_at, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(key) DO UPDATE SET config = excluded.config, size = excluded.size,
                   last_used = excluded.last_used",
                params![
                    key,
                    rec.config.to_string(),
                    to_i64(rec.size),
                    rec.created_at,
                    rec.last_used
                ],
            )?;
            tx.execute("DELETE FROM build_cache_layers WHERE key = ?1", [&key])?;
            tx.execute("DELETE FROM build_cache_blobs WHERE key = ?1", [&key])?;
            for (i, l) in rec.layers.iter().enumerate() {
                tx.execute(
                    "INSERT INTO build_cache_layers (key, position, chain_id) VALUES (?1, ?2, ?3)",
                    params![key, i as i64, l.to_string()],
                )?;
            }
            for b in &rec.blobs {
                tx.execute(
                    "INSERT OR IGNORE INTO build_cache_blobs (key, digest) VALUES (?1, ?2)",
                    params![key, b.to_string()],
                )?;
            }
            Ok(())
        })
    }

    /// The record of `key`, marking it used now.
    pub fn use_cache(&self, key: &Digest) -> Result<Option<CacheRecord>> {
        let k = key.to_string();
        let found = self.write(|tx| {
            Ok(tx.execute(
                "UPDATE build_cache SET last_used = ?2 WHERE key = ?1",
                params![k, now()],
            )? > 0)
        })?;
        if !found {
            return Ok(None);
        }
        self.cache(key)
    }

    /// The record of `key`.
    pub fn cache(&self, key: &Digest) -> Result<Option<CacheRecord>> {
        let conn = self.conn();
        let k = key.to_string();
        let row = conn
            .query_row(
                "SELECT config, size, created_at, last_used FROM build_cache WHERE key = ?1",
                [&k],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((config, size, created_at, last_used)) = row else {
            return Ok(None);
        };
        let layers = conn
            .prepare_cached(
                "SELECT chain_id FROM build_cache_layers WHERE key = ?1 ORDER BY position",
            )?
            .query_map([&k], |r| r.get::<_, String>(0))?
            .map(|v| parse("build_cache_layers.chain_id", v?))
            .collect::<Result<Vec<ChainId>>>()?;
        let blobs = conn
            .prepare_cached("SELECT digest FROM build_cache_blobs WHERE key = ?1 ORDER BY digest")?
            .query_map([&k], |r| r.get::<_, String>(0))?
            .map(|v| parse("build_cache_blobs.digest", v?))
            .collect::<Result<Vec<Digest>>>()?;
        Ok(Some(CacheRecord {
            key: key.clone(),
            config: parse("build_cache.config", config)?,
            layers,
            blobs,
            size: u64::try_from(size).unwrap_or(0),
            created_at,
            last_used,
        }))
    }

    /// Every cache key with its size and last use, least recently used first.
    pub fn cache_entries(&self) -> Result<Vec<(Digest, u64, i64)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT key, size, last_used FROM build_cache ORDER BY last_used, key")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (k, size, used) = row?;
            Ok((
                parse("build_cache.key", k)?,
                u64::try_from(size).unwrap_or(0),
                used,
            ))
        })
        .collect()
    }

    /// Deletes cache records; returns how many existed.
    pub fn delete_cache(&self, keys: &[Digest]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for k in keys {
                n += tx.execute("DELETE FROM build_cache WHERE key = ?1", [k.to_string()])?;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_records_round_trip_and_are_gc_roots() {
        let dir = tempfile::tempdir().unwrap();
        let md = Metadata::open(&dir.path().join("m.db")).unwrap();
        let d = |s: &str| Digest::sha256_of(s.as_bytes());
        let rec = CacheRecord {
            key: d("key"),
            config: d("config"),
            layers: vec![ChainId(d("l1")), ChainId(d("l2"))],
            blobs: vec![d("b1")],
            size: 42,
            created_at: 100,
            last_used: 100,
        };
        md.put_cache(&rec).unwrap();
        assert_eq!(md.cache(&rec.key).unwrap(), Some(rec.clone()));
        let used = md.use_cache(&rec.key).unwrap().unwrap();
        assert!(used.last_used > 100);
        assert_eq!(md.use_cache(&d("nope")).unwrap(), None);
        let roots = md.gc_roots().unwrap();
        assert!(roots.blobs.contains(&d("config")) && roots.blobs.contains(&d("b1")));
        assert!(roots.layers.contains(&ChainId(d("l2"))));
        assert_eq!(
            md.cache_entries().unwrap(),
            vec![(rec.key.clone(), 42, used.last_used)]
        );
        assert_eq!(md.delete_cache(&[rec.key.clone(), d("nope")]).unwrap(), 1);
        assert_eq!(md.cache(&rec.key).unwrap(), None);
        let roots = md.gc_roots().unwrap();
        assert!(!roots.blobs.contains(&d("b1")));
        assert!(!roots.layers.contains(&ChainId(d("l1"))));
    }
}
