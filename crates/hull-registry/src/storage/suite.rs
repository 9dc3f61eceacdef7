//! The test suite every [`RegistryStorage`] backend must pass. It touches only keys below a fresh
//! random prefix, so it can run against a shared bucket.
//!
//! `open` must return a new handle on the same underlying data each time it is called: the suite
//! drops a handle and opens another to check that upload sessions survive a restart.

// Slices here are of the suite's own constant data, never of anything read from outside.
#![allow(clippy::indexing_slicing)]

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use hull_oci::Digest;

use super::{
    ByteRange, ByteStream, Expected, Key, ObjectMeta, Prefix, RegistryStorage, StorageError,
    UploadId, once,
};

/// A failed check: what was expected, and what happened.
#[derive(Debug, thiserror::Error)]
#[error("storage suite: {0}")]
pub struct SuiteFailure(String);

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(SuiteFailure(format!($($msg)+)));
        }
    };
}

fn fail(what: &str) -> impl FnOnce(StorageError) -> SuiteFailure + '_ {
    move |e| SuiteFailure(format!("{what}: {e}"))
}

async fn read_all(
    s: &dyn RegistryStorage,
    key: &Key,
    range: Option<ByteRange>,
) -> Result<Vec<u8>, SuiteFailure> {
    let mut stream = s.get(key, range).await.map_err(fail("get"))?;
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.map_err(|e| SuiteFailure(format!("reading {key}: {e}")))?);
    }
    Ok(out)
}

fn chunks(parts: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(futures_util::stream::iter(
        parts.into_iter().map(|p| Ok(Bytes::from_static(p))),
    ))
}

fn failing_stream() -> ByteStream {
    Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::other("client went away")),
    ]))
}

/// Runs every check against the backend `open` returns.
pub async fn run<F, Fut>(open: F) -> Result<(), SuiteFailure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn RegistryStorage>, StorageError>>,
{
    let s = open().await.map_err(fail("opening the backend"))?;
    let base = Key::new(format!("suite-{}", UploadId::random())).map_err(fail("base key"))?;
    let k = |rest: &str| base.join(rest).map_err(fail("key"));

    // put / stat / get / replace
    let a = k("a")?;
    check!(
        s.stat(&a).await.map_err(fail("stat"))?.is_none(),
        "{a} exists before it is written"
    );
    check!(
        matches!(s.get(&a, None).await, Err(StorageError::NotFound(_))),
        "get of a missing object is not NotFound"
    );
    s.put(&a, Bytes::from_static(b"hello world"))
        .await
        .map_err(fail("put"))?;
    let meta: Option<ObjectMeta> = s.stat(&a).await.map_err(fail("stat"))?;
    check!(meta.as_ref().map(|m| m.size) == Some(11), "stat after put");
    // a clock a little ahead of ours (an object store's) is fine, an old time is not
    check!(
        meta.is_some_and(|m| m
            .modified
            .elapsed()
            .map_or(true, |age| age < std::time::Duration::from_secs(3600))),
        "a fresh object's modified time is not recent"
    );
    check!(
        read_all(&*s, &a, None).await? == b"hello world",
        "get after put"
    );
    check!(
        s.get_bytes(&a, 100)
            .await
            .map_err(fail("get_bytes"))?
            .as_deref()
            == Some(&b"hello world"[..]),
        "get_bytes"
    );
    check!(
        matches!(s.get_bytes(&a, 5).await, Err(StorageError::TooLarge { .. })),
        "get_bytes over its limit is not TooLarge"
    );
    s.put(&a, Bytes::from_static(b"bye"))
        .await
        .map_err(fail("put again"))?;
    check!(
        read_all(&*s, &a, None).await? == b"bye",
        "put does not replace"
    );

    // ranges
    let r = k("ranged")?;
    s.put(&r, Bytes::from_static(b"0123456789"))
        .await
        .map_err(fail("put"))?;
    check!(
        read_all(&*s, &r, Some(ByteRange { start: 2, end: 5 })).await? == b"234",
        "range 2..5"
    );
    check!(
        read_all(&*s, &r, Some(ByteRange { start: 9, end: 10 })).await? == b"9",
        "last byte"
    );
    check!(
        read_all(&*s, &r, Some(ByteRange { start: 10, end: 10 }))
            .await?
            .is_empty(),
        "empty range at the end"
    );
    check!(
        matches!(
            s.get(&r, Some(ByteRange { start: 5, end: 11 })).await,
            Err(StorageError::RangeNotSatisfiable { .. })
        ),
        "a range past the end is not refused"
    );
    // Large objects (which a backend may read in windows or parts): whole, across a window
    // boundary at an odd offset, and the tail, each the exact bytes.
    let big_data: Vec<u8> = (0..5 * 1024 * 1024 + 3)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let big = k("big")?;
    s.put(&big, Bytes::from(big_data.clone()))
        .await
        .map_err(fail("put big"))?;
    check!(
        read_all(&*s, &big, None).await? == big_data,
        "a large object reads back whole"
    );
    for (start, end) in [
        (1_000_001, 4_500_000),
        (5 * 1024 * 1024 - 7, big_data.len()),
    ] {
        let want = big_data.get(start..end).unwrap_or_default();
        check!(
            read_all(
                &*s,
                &big,
                Some(ByteRange {
                    start: start as u64,
                    end: end as u64
                })
            )
            .await?
                == want,
            "a range of a large object"
        );
    }

    // verified streaming writes
    let data: &'static [u8] = b"streamed content in three chunks";
    let good = Expected {
        digest: Digest::sha256_of(data),
        size: Some(data.len() as u64),
    };
    let b = k("blobs/b")?;
    let n = s
        .put_stream(
            &b,
            chunks(vec![&data[..8], &data[8..20], &data[20..]]),
            &good,
        )
        .await
        .map_err(fail("put_stream"))?;
    check!(n == data.len() as u64, "put_stream returned {n}");
    check!(read_all(&*s, &b, None).await? == data, "put_stream content");
    let bad = k("blobs/bad")?;
    let wrong = Expected {
        digest: Digest::sha256_of(b"something else"),
        size: None,
    };
    check!(
        matches!(
            s.put_stream(&bad, once(Bytes::from_static(data)), &wrong)
                .await,
            Err(StorageError::DigestMismatch { .. })
        ),
        "a digest mismatch is not refused"
    );
    check!(
        s.stat(&bad).await.map_err(fail("stat"))?.is_none(),
        "an unverified write is visible"
    );
    let wrong_size = Expected {
        digest: good.digest.clone(),
        size: Some(3),
    };
    check!(
        matches!(
            s.put_stream(&bad, once(Bytes::from_static(data)), &wrong_size)
                .await,
            Err(StorageError::SizeMismatch { .. })
        ),
        "a size mismatch is not refused"
    );
    check!(
        s.put_stream(&bad, failing_stream(), &good).await.is_err(),
        "a failing body is not an error"
    );
    check!(
        s.stat(&bad).await.map_err(fail("stat"))?.is_none(),
        "a failed write is visible"
    );

    // delete
    check!(
        s.delete(&a).await.map_err(fail("delete"))?,
        "delete of an object says there was none"
    );
    check!(
        !s.delete(&a).await.map_err(fail("delete"))?,
        "second delete says there was one"
    );
    check!(
        s.stat(&a).await.map_err(fail("stat"))?.is_none(),
        "deleted object still there"
    );

    // listing: byte order, start_after, limit, prefixes that are keys of their own
    let l = k("list")?;
    let names = ["b", "a/x", "a-b", "a/y/z", "c", "a/y0", "B"];
    for n in names {
        s.put(&l.join(n).map_err(fail("key"))?, Bytes::from_static(b"1"))
            .await
            .map_err(fail("put"))?;
    }
    let mut want: Vec<String> = names.iter().map(|n| format!("{l}/{n}")).collect();
    want.sort();
    let got = |v: Vec<Key>| v.into_iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let prefix = Prefix::dir(&l);
    check!(
        got(s
            .list_after(&prefix, None, 100)
            .await
            .map_err(fail("list"))?)
            == want,
        "list of {prefix:?}"
    );
    let page1 = got(s.list_after(&prefix, None, 3).await.map_err(fail("list"))?);
    check!(page1 == want[..3], "first page {page1:?}");
    let last = page1.last().cloned().unwrap_or_default();
    let page2 = got(s
        .list_after(&prefix, Some(&last), 3)
        .await
        .map_err(fail("list"))?);
    check!(page2 == want[3..6], "second page {page2:?}");
    let sub = Prefix::dir(&l.join("a").map_err(fail("key"))?);
    let want_a: Vec<String> = want
        .iter()
        .filter(|w| w.starts_with(sub.as_str()))
        .cloned()
        .collect();
    check!(
        got(s.list_after(&sub, None, 100).await.map_err(fail("list"))?) == want_a,
        "list of a sub-prefix"
    );
    let none = Prefix::dir(&l.join("nothing").map_err(fail("key"))?);
    check!(
        s.list_after(&none, None, 100)
            .await
            .map_err(fail("list"))?
            .is_empty(),
        "list of an empty prefix"
    );

    // uploads: append in order, refuse wrong offsets, commit verified, abort
    let id = UploadId::random();
    check!(
        s.upload_size(&id)
            .await
            .map_err(fail("upload_size"))?
            .is_none(),
        "unknown upload has a size"
    );
    s.upload_create(&id).await.map_err(fail("upload_create"))?;
    check!(
        s.upload_size(&id).await.map_err(fail("upload_size"))? == Some(0),
        "new upload not empty"
    );
    let n = s
        .upload_append(&id, 0, chunks(vec![&data[..5], &data[5..10]]))
        .await
        .map_err(fail("append"))?;
    check!(n == 10, "append returned {n}");
    check!(
        matches!(
            s.upload_append(&id, 4, once(Bytes::from_static(b"x")))
                .await,
            Err(StorageError::UploadOffset {
                size: 10,
                offset: 4,
                ..
            })
        ),
        "an out-of-order chunk is not refused"
    );
    check!(
        s.upload_append(&id, 10, failing_stream()).await.is_err(),
        "a failing chunk is not an error"
    );
    check!(
        s.upload_size(&id).await.map_err(fail("upload_size"))? == Some(10),
        "a failed chunk left bytes behind"
    );
    drop(s);

    // a new handle on the same data continues the session
    let s = open().await.map_err(fail("reopening the backend"))?;
    check!(
        s.upload_size(&id).await.map_err(fail("upload_size"))? == Some(10),
        "upload lost across a reopen"
    );
    let n = s
        .upload_append(&id, 10, once(Bytes::from_static(&data[10..])))
        .await
        .map_err(fail("append"))?;
    check!(n == data.len() as u64, "append after reopen returned {n}");
    let dest = k("blobs/committed")?;
    check!(
        matches!(
            s.upload_commit(&id, &dest, &wrong).await,
            Err(StorageError::DigestMismatch { .. })
        ),
        "a commit with the wrong digest is not refused"
    );
    check!(
        s.stat(&dest).await.map_err(fail("stat"))?.is_none(),
        "an unverified commit is visible"
    );
    check!(
        s.upload_size(&id).await.map_err(fail("upload_size"))? == Some(data.len() as u64),
        "a refused commit changed the session"
    );
    let n = s
        .upload_commit(&id, &dest, &good)
        .await
        .map_err(fail("commit"))?;
    check!(n == data.len() as u64, "commit returned {n}");
    check!(
        read_all(&*s, &dest, None).await? == data,
        "committed content"
    );
    check!(
        s.upload_size(&id)
            .await
            .map_err(fail("upload_size"))?
            .is_none(),
        "committed upload still open"
    );
    check!(
        matches!(
            s.upload_append(&id, 0, once(Bytes::new())).await,
            Err(StorageError::UploadNotFound(_))
        ),
        "append to an ended upload is not UploadNotFound"
    );

    // in-flight hashing across chunks gives the same answer as hashing at the end
    let id2 = UploadId::random();
    s.upload_create(&id2).await.map_err(fail("upload_create"))?;
    let mut off = 0;
    for part in [&data[..1], &data[1..17], &data[17..]] {
        off = s
            .upload_append(&id2, off, once(Bytes::from_static(part)))
            .await
            .map_err(fail("append"))?;
    }
    let dest2 = k("blobs/chunked")?;
    s.upload_commit(&id2, &dest2, &good)
        .await
        .map_err(fail("chunked commit"))?;
    check!(
        read_all(&*s, &dest2, None).await? == data,
        "chunked content"
    );

    // empty uploads are blobs too
    let id3 = UploadId::random();
    s.upload_create(&id3).await.map_err(fail("upload_create"))?;
    let empty = Expected {
        digest: Digest::sha256_of(b""),
        size: Some(0),
    };
    let dest3 = k("blobs/empty")?;
    s.upload_commit(&id3, &dest3, &empty)
        .await
        .map_err(fail("empty commit"))?;
    check!(
        s.stat(&dest3).await.map_err(fail("stat"))?.map(|m| m.size) == Some(0),
        "empty blob"
    );

    // abort
    let id4 = UploadId::random();
    s.upload_create(&id4).await.map_err(fail("upload_create"))?;
    s.upload_append(&id4, 0, once(Bytes::from_static(b"abc")))
        .await
        .map_err(fail("append"))?;
    check!(
        s.upload_abort(&id4).await.map_err(fail("abort"))?,
        "abort says there was no upload"
    );
    check!(
        s.upload_size(&id4)
            .await
            .map_err(fail("upload_size"))?
            .is_none(),
        "aborted upload still there"
    );
    check!(
        !s.upload_abort(&id4).await.map_err(fail("abort"))?,
        "second abort says there was an upload"
    );

    // clean up what the suite wrote
    for key in s
        .list_after(&Prefix::dir(&base), None, usize::MAX)
        .await
        .map_err(fail("list"))?
    {
        s.delete(&key).await.map_err(fail("cleanup"))?;
    }
    Ok(())
}
