//! Blob streams: resumable after broken connections (`Range` from the last byte received), and
//! optionally fetched as parallel ranges yielded in order with bounded memory.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt as _};
use hull_oci::{Digest, Reference};
use reqwest::{Response, StatusCode, header};

use crate::client::{RegistryClient, Subject, content_length, transport_error};
use crate::error::DistributionError;

/// How to fetch a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobOptions {
    /// Ranges fetched at once; 0 or 1 means one stream.
    pub parallel_ranges: usize,
    /// Size of each range when fetching in parallel (at most `parallel_ranges` of them are held
    /// in memory).
    pub range_chunk: u64,
}

impl Default for BlobOptions {
    fn default() -> Self {
        BlobOptions {
            parallel_ranges: 1,
            range_chunk: 16 * 1024 * 1024,
        }
    }
}

/// The bytes of a blob from [`BlobStream::start`] on, in order. A broken connection is resumed
/// transparently with `Range` (up to `max_retries` times without progress in between).
pub struct BlobStream {
    start: u64,
    total: Option<u64>,
    inner: BoxStream<'static, Result<Bytes, DistributionError>>,
}

impl BlobStream {
    /// Offset in the blob of the first byte this stream yields: the offset asked for, or 0 if
    /// the registry ignored the range (then whatever the caller had must be discarded).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The blob's size, when the registry said.
    pub fn total(&self) -> Option<u64> {
        self.total
    }
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("start", &self.start)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, DistributionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// A response to a blob GET, interpreted.
struct Opened {
    /// `None` when there is nothing left to read (416 at the end of the blob).
    resp: Option<Response>,
    /// Offset of the response's first byte.
    start: u64,
    total: Option<u64>,
}

/// First and last byte of a `Content-Range`, if it names a range, and the total, if known.
type ContentRange = (Option<(u64, u64)>, Option<u64>);

/// `Content-Range: bytes first-last/total` (RFC 9110 §14.4); `total` may be `*`.
fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    let range = match range.trim() {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-')?;
            let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
            if b < a {
                return None;
            }
            Some((a, b))
        }
    };
    Some((range, total))
}

async fn open_range(
    client: &RegistryClient,
    repo: &Reference,
    digest: &Digest,
    from: u64,
    to_inclusive: Option<u64>,
) -> Result<Opened, DistributionError> {
    let what = || format!("fetching blob {}@{digest}", repo.name());
    let resp = client
        .get_blob_range(repo, digest, from, to_inclusive)
        .await?;
    let content_range = resp
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match resp.status() {
        StatusCode::OK => {
            let total = content_length(&resp);
            Ok(Opened {
                resp: Some(resp),
                start: 0,
                total,
            })
        }
        StatusCode::PARTIAL_CONTENT => {
            let parsed = content_range.as_deref().and_then(parse_content_range);
            let Some((Some((first, _last)), total)) = parsed else {
                return Err(DistributionError::InvalidResponse {
                    what: what(),
                    reason: format!("206 with Content-Range {content_range:?}"),
                });
            };
            if first != from {
                return Err(DistributionError::InvalidResponse {
                    what: what(),
                    reason: format!(
                        "asked for bytes from {from}, got Content-Range {content_range:?}"
                    ),
                });
            }
            Ok(Opened {
                resp: Some(resp),
                start: from,
                total,
            })
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let total = content_range
                .as_deref()
                .and_then(parse_content_range)
                .and_then(|(_, t)| t);
            match total {
                Some(t) if t == from => Ok(Opened {
                    resp: None,
                    start: from,
                    total: Some(t),
                }),
                _ => Err(DistributionError::InvalidResponse {
                    what: what(),
                    reason: format!(
                        "range from byte {from} not satisfiable (Content-Range {content_range:?})"
                    ),
                }),
            }
        }
        _ => Err(client
            .fail(
                resp,
                repo.registry(),
                &Subject::Blob(repo, digest),
                &what(),
                1,
            )
            .await),
    }
}

/// One resumable stream of bytes `[pos, end)` of a blob.
struct Resumable {
    client: RegistryClient,
    repo: Reference,
    digest: Digest,
    /// Absolute offset of the next byte to yield.
    pos: u64,
    /// Exclusive end, when known.
    end: Option<u64>,
    /// Whether requests ask for `end` as the last byte (a parallel chunk) or run open-ended.
    bounded: bool,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    /// Bytes to drop from the current body: a resumed request the registry answered from 0.
    skip: u64,
    failures: u32,
    done: bool,
}

impl Resumable {
    fn what(&self) -> String {
        format!("fetching blob {}@{}", self.repo.name(), self.digest)
    }

    fn attach(&mut self, opened: Opened) -> Result<(), DistributionError> {
        if let Some(t) = opened.total
            && self.end.is_none()
        {
            self.end = Some(t);
        }
        if opened.start > self.pos {
            return Err(DistributionError::InvalidResponse {
                what: self.what(),
                reason: format!(
                    "resumed at byte {} but the registry answered from {}",
                    self.pos, opened.start
                ),
            });
        }
        self.skip = self.pos - opened.start;
        self.body = opened.resp.map(|r| r.bytes_stream().boxed());
        if self.body.is_none() {
            // Nothing left: the end is where we are.
            self.end = Some(self.pos);
        }
        Ok(())
    }

    /// Counts a failure and waits before the next try; false when out of retries.
    async fn back_off(&mut self) -> bool {
        self.body = None;
        if self.failures >= self.client.config().max_retries {
            return false;
        }
        let delay = self.client.backoff(self.failures);
        self.failures += 1;
        tokio::time::sleep(delay).await;
        true
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, DistributionError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(end) = self.end
                && self.pos >= end
            {
                self.done = true;
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                let to = if self.bounded {
                    self.end.map(|e| e.saturating_sub(1))
                } else {
                    None
                };
                let opened = open_range(&self.client, &self.repo, &self.digest, self.pos, to).await;
                match opened.and_then(|o| self.attach(o)) {
                    Ok(()) => continue,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            };
            match body.next().await {
                Some(Ok(mut chunk)) => {
                    if self.skip > 0 {
                        let drop_n = usize::try_from(self.skip)
                            .unwrap_or(usize::MAX)
                            .min(chunk.len());
                        let _ = chunk.split_to(drop_n);
                        self.skip -= drop_n as u64;
                    }
                    if let Some(end) = self.end {
                        let room = end.saturating_sub(self.pos);
                        if chunk.len() as u64 > room {
                            if self.bounded {
                                // A chunk's request may be answered with the whole blob; keep
                                // only what this stream covers.
                                chunk.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                            } else {
                                self.done = true;
                                return Some(Err(DistributionError::InvalidResponse {
                                    what: self.what(),
                                    reason: format!("more than the {end} bytes announced"),
                                }));
                            }
                        }
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    self.pos += chunk.len() as u64;
                    self.failures = 0;
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => {
                    tracing::debug!(what = %self.what(), at = self.pos, error = %e, "blob stream broke; resuming");
                    let err = transport_error(e, self.repo.registry(), &self.what());
                    if !self.back_off().await {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
                None => {
                    self.body = None;
                    match self.end {
                        Some(end) if self.pos < end => {
                            tracing::debug!(what = %self.what(), at = self.pos, end, "blob stream ended early; resuming");
                            if !self.back_off().await {
                                self.done = true;
                                return Some(Err(DistributionError::Truncated {
                                    what: self.what(),
                                    at: self.pos,
                                    total: end,
                                }));
                            }
                        }
                        _ => {
                            self.done = true;
                            return None;
                        }
                    }
                }
            }
        }
    }

    fn into_stream(self) -> BoxStream<'static, Result<Bytes, DistributionError>> {
        stream::unfold(self, |mut s| async move {
            let item = s.next_chunk().await?;
            Some((item, s))
        })
        .boxed()
    }
}

/// A spawned task aborted when dropped, so a dropped stream stops its range downloads.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

async fn fetch_chunk(mut r: Resumable) -> Result<Bytes, DistributionError> {
    let len = r.end.unwrap_or(r.pos).saturating_sub(r.pos);
    let mut buf = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    while let Some(chunk) = r.next_chunk().await {
        buf.extend_from_slice(&chunk?);
    }
    if (buf.len() as u64) < len {
        return Err(DistributionError::Truncated {
            what: r.what(),
            at: r.pos,
            total: r.end.unwrap_or(r.pos),
        });
    }
    Ok(buf.freeze())
}

pub(crate) async fn open(
    client: RegistryClient,
    repo: Reference,
    digest: Digest,
    offset: u64,
    opts: BlobOptions,
) -> Result<BlobStream, DistributionError> {
    let resumable = |pos: u64, end: Option<u64>, bounded: bool| Resumable {
        client: client.clone(),
        repo: repo.clone(),
        digest: digest.clone(),
        pos,
        end,
        bounded,
        body: None,
        skip: 0,
        failures: 0,
        done: false,
    };
    let chunk = opts.range_chunk.max(1);
    if opts.parallel_ranges <= 1 {
        let opened = open_range(&client, &repo, &digest, offset, None).await?;
        let start = opened.start;
        let total = opened.total;
        let mut r = resumable(start, None, false);
        r.attach(opened)?;
        return Ok(BlobStream {
            start,
            total,
            inner: r.into_stream(),
        });
    }
    let first_end = offset.saturating_add(chunk);
    let opened = open_range(&client, &repo, &digest, offset, Some(first_end - 1)).await?;
    let start = opened.start;
    let ranged = opened
        .resp
        .as_ref()
        .is_some_and(|r| r.status() == StatusCode::PARTIAL_CONTENT);
    if !ranged {
        // The registry ignored Range (or there is nothing left): one stream.
        let total = opened.total;
        let mut r = resumable(start, None, false);
        r.attach(opened)?;
        return Ok(BlobStream {
            start,
            total,
            inner: r.into_stream(),
        });
    }
    let total = opened.total;
    let head_end = total.map_or(first_end, |t| first_end.min(t));
    let mut head = resumable(offset, Some(head_end), true);
    head.attach(opened)?;
    head.end = Some(head_end);
    let head = head.into_stream();
    let tail = match total {
        Some(t) if t > head_end && t - offset > chunk.saturating_mul(2) => {
            let mut ranges = Vec::new();
            let mut s = head_end;
            while s < t {
                let e = s.saturating_add(chunk).min(t);
                ranges.push((s, e));
                s = e;
            }
            let jobs: Vec<Resumable> = ranges
                .into_iter()
                .map(|(s, e)| resumable(s, Some(e), true))
                .collect();
            let what = format!("fetching blob {}@{digest}", repo.name());
            stream::iter(jobs)
                .map(|job| AbortOnDrop(tokio::spawn(fetch_chunk(job))))
                .buffered(opts.parallel_ranges)
                .map(move |joined| match joined {
                    Ok(r) => r,
                    Err(e) => Err(DistributionError::InvalidResponse {
                        what: what.clone(),
                        reason: format!("range download task failed: {e}"),
                    }),
                })
                .boxed()
        }
        Some(t) if t > head_end => resumable(head_end, Some(t), false).into_stream(),
        Some(_) => stream::empty().boxed(),
        None => resumable(head_end, None, false).into_stream(),
    };
    Ok(BlobStream {
        start,
        total,
        inner: head.chain(tail).boxed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((Some((0, 99)), Some(1000)))
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some((Some((5, 9)), None))
        );
        assert_eq!(parse_content_range("bytes */42"), Some((None, Some(42))));
        for bad in [
            "",
            "bytes",
            "bytes 9-5/10",
            "items 0-1/2",
            "bytes a-b/c",
            "bytes 0-1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
