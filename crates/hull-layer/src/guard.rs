//! A reader between the tar stream and the `tar` crate that counts, limits and watches.
//!
//! - Counts every byte, and trips when more than `max_bytes` arrive (decompression bombs).
//! - Limits the bytes read while the `tar` crate looks for the next entry: that is when it
//!   reads GNU long names/links and PAX records *into memory*, uncapped, so an 8 GiB long name
//!   would become an 8 GiB allocation. Entry data is read in the other phase, unbounded here.
//! - Notes whether the stream ended before an end-of-archive block was seen (truncation).

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Bytes the `tar` crate may read to reach one entry: the previous entry's padding, the
/// header, and GNU long name/link and PAX records (xattrs included).
pub(crate) const HEADER_BUDGET: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trip {
    MaxBytes(u64),
    Headers(u64),
}

#[derive(Debug)]
pub(crate) struct GuardState {
    total: Cell<u64>,
    max: Option<u64>,
    header_budget: u64,
    header_left: Cell<Option<u64>>,
    eof: Cell<bool>,
    tripped: Cell<Option<Trip>>,
}

impl GuardState {
    pub(crate) fn new(max: Option<u64>, header_budget: u64) -> Rc<GuardState> {
        Rc::new(GuardState {
            total: Cell::new(0),
            max,
            header_budget,
            header_left: Cell::new(None),
            eof: Cell::new(false),
            tripped: Cell::new(None),
        })
    }

    /// The `tar` crate is about to look for the next entry.
    pub(crate) fn header_phase(&self) {
        self.header_left.set(Some(self.header_budget));
    }

    /// Entry data is being read.
    pub(crate) fn data_phase(&self) {
        self.header_left.set(None);
    }

    pub(crate) fn tripped(&self) -> Option<Trip> {
        self.tripped.get()
    }

    /// Whether a read returned end-of-stream.
    pub(crate) fn eof(&self) -> bool {
        self.eof.get()
    }

    fn trip(&self, t: Trip) -> io::Error {
        self.tripped.set(Some(t));
        trip_error(t)
    }
}

fn trip_error(t: Trip) -> io::Error {
    match t {
        Trip::MaxBytes(limit) => io::Error::other(format!(
            "layer exceeds the limit of {limit} uncompressed bytes"
        )),
        Trip::Headers(limit) => {
            io::Error::other(format!("tar extension headers exceed {limit} bytes"))
        }
    }
}

pub(crate) struct Guarded<R> {
    inner: R,
    state: Rc<GuardState>,
}

impl<R: Read> Guarded<R> {
    pub(crate) fn new(inner: R, state: Rc<GuardState>) -> Self {
        Guarded { inner, state }
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(t) = self.state.tripped.get() {
            return Err(trip_error(t));
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.state.eof.set(true);
        }
        let n64 = n as u64;
        let total = self.state.total.get().saturating_add(n64);
        self.state.total.set(total);
        if let Some(max) = self.state.max
            && total > max
        {
            return Err(self.state.trip(Trip::MaxBytes(max)));
        }
        if let Some(left) = self.state.header_left.get() {
            match left.checked_sub(n64) {
                Some(rest) => self.state.header_left.set(Some(rest)),
                None => return Err(self.state.trip(Trip::Headers(self.state.header_budget))),
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_bytes_trips_and_stays_tripped() {
        let state = GuardState::new(Some(10), HEADER_BUDGET);
        let mut g = Guarded::new(&[1u8; 20][..], state.clone());
        let mut buf = [0u8; 8];
        assert_eq!(g.read(&mut buf).unwrap(), 8);
        assert!(g.read(&mut buf).is_err());
        assert_eq!(state.tripped(), Some(Trip::MaxBytes(10)));
        assert!(g.read(&mut buf).is_err());
    }

    #[test]
    fn exactly_max_bytes_is_fine() {
        let state = GuardState::new(Some(10), HEADER_BUDGET);
        let mut g = Guarded::new(&[1u8; 10][..], state.clone());
        let mut out = Vec::new();
        g.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 10);
        assert!(state.eof());
        assert_eq!(state.tripped(), None);
    }

    #[test]
    fn header_budget_applies_only_in_header_phase() {
        let state = GuardState::new(None, 4);
        let mut g = Guarded::new(&[1u8; 20][..], state.clone());
        let mut buf = [0u8; 8];
        assert_eq!(g.read(&mut buf).unwrap(), 8);
        state.header_phase();
        assert!(g.read(&mut buf).is_err());
        assert_eq!(state.tripped(), Some(Trip::Headers(4)));
    }
}
