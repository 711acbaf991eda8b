//! A partition's progress when its records may finish out of order: the offset a commit
//! carries (its lowest record not yet finished, so that no commit ever passes one) and the
//! records finished above it, carried in the commit's metadata so that a kcon member taking the
//! partition over does not process them again.
//!
//! # The metadata's encoding, version 1
//! ASCII text: `kcon1`, then `r` (run lengths) or `b` (a bitmap), then the payload in base64url
//! without padding (RFC 4648, section 5). The payload opens with two unsigned LEB128 varints:
//! the committed offset `C` and the span `S`, the number of offsets after it that the rest
//! describes (`C+1 ..= C+S`). Then the body:
//! - `r`: unsigned LEB128 varints, the lengths of the runs the span is cut into, alternately
//!   finished and not, the first finished (it may be empty); they add up to `S`.
//! - `b`: `ceil(S / 8)` bytes; bit `i` (byte `i / 8`, least significant bit first) is set when
//!   offset `C+1+i` is finished; the bits past the span are clear.
//!
//! `C` is not finished (it is the lowest record that is not); an offset of the span that names
//! no record (a transaction marker, a record compacted away) counts as finished; an offset past
//! the span is not finished. The writer picks the smaller body. When the text would be longer
//! than the bound (the broker refuses a commit whose metadata passes its
//! `offset.metadata.max.bytes`, 4,096 by default) the writer shortens the span until it fits:
//! whatever the text says is finished was finished, and a shortened span only means that more
//! records are processed again after a restart.
//!
//! A reader takes the text only with the offset it was committed with: when `C` is another
//! offset, or the text is not kcon's version 1 (none, another client's, a later version, a
//! corrupt one), nothing above the committed offset counts as finished and every record from
//! it is processed (at least once holds either way).

use std::collections::BTreeSet;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What every text of this encoding starts with.
const VERSION: &str = "kcon1";
/// The body's kind: run lengths.
const RUNS: u8 = b'r';
/// The body's kind: a bitmap.
const BITMAP: u8 = b'b';

/// One partition's records received and not yet finished.
#[derive(Debug, Default, Clone)]
pub(crate) struct Progress {
    /// The offsets of the records received and not finished.
    pending: BTreeSet<i64>,
    /// One past the highest offset received; none before the first record.
    next: Option<i64>,
    /// The records finished above the lowest pending one: what the metadata is for. Empty
    /// while records finish in offset order, so that then no metadata is ever written.
    above: BTreeSet<i64>,
}

/// A commit's metadata for one partition: what [`Progress::metadata`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metadata {
    /// The text; empty when no finished record lies above the committed offset (or none fits).
    pub(crate) text: String,
    /// Whether it names every record finished above the committed offset: false when the bound
    /// cut the span short.
    pub(crate) complete: bool,
}

impl Progress {
    /// The record at `offset` was received: it is pending until it finishes.
    pub(crate) fn received(&mut self, offset: i64) {
        self.pending.insert(offset);
        let after = offset.saturating_add(1);
        self.next = Some(self.next.map_or(after, |next| next.max(after)));
    }

    /// The record at `offset` finished: processed, skipped or acknowledged by the dead-letter
    /// topic.
    pub(crate) fn finished(&mut self, offset: i64) {
        let low = self.pending.first().copied();
        if !self.pending.remove(&offset) {
            return;
        }
        if low.is_some_and(|low| offset > low) {
            self.above.insert(offset);
            return;
        }
        // The lowest pending record finished: those finished below the new lowest are now
        // under the committable offset.
        if !self.above.is_empty() {
            match self.pending.first() {
                Some(&low) => self.above = self.above.split_off(&low),
                None => self.above.clear(),
            }
        }
    }

    /// Whether a record finished above the committable offset: only then does a commit's
    /// metadata say anything a reader could use.
    pub(crate) fn finished_above(&self) -> bool {
        !self.above.is_empty()
    }

    /// The offset a commit carries: the lowest record not finished, or one past the highest
    /// received when every record is; none before the first record.
    pub(crate) fn committable(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }

    /// How many records received are not finished.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How far the records finished run ahead of the committable offset: one past the highest
    /// record received, minus the committable offset (0 when nothing is pending).
    pub(crate) fn gap(&self) -> i64 {
        match (self.pending.first(), self.next) {
            (Some(low), Some(next)) => next - low,
            _ => 0,
        }
    }

    /// The metadata a commit at [`committable`](Self::committable) carries: the records
    /// finished above that offset, in a text of at most `max_bytes` bytes.
    pub(crate) fn metadata(&self, max_bytes: usize) -> Metadata {
        let (Some(&low), Some(next)) = (self.pending.first(), self.next) else {
            return Metadata::none(true);
        };
        // The span ends at the highest offset received that is not pending: the pending ones
        // above it would say nothing.
        let mut last = next - 1;
        for &p in self.pending.range(low..next).rev() {
            if p != last {
                break;
            }
            last -= 1;
        }
        if last <= low || low < 0 {
            return Metadata::none(true);
        }
        let full = last - low;
        let (kind, len) = self.layout(low, full);
        if text_len(len) <= max_bytes {
            return Metadata {
                text: self.encode(low, full, kind, len),
                complete: true,
            };
        }
        // The text's length never falls as the span grows: the longest span that fits.
        let (mut fits, mut too_long) = (0, full);
        while too_long - fits > 1 {
            let mid = fits + (too_long - fits) / 2;
            if text_len(self.layout(low, mid).1) <= max_bytes {
                fits = mid;
            } else {
                too_long = mid;
            }
        }
        if fits == 0 {
            return Metadata::none(false);
        }
        let (kind, len) = self.layout(low, fits);
        Metadata {
            text: self.encode(low, fits, kind, len),
            complete: false,
        }
    }

    /// The pending offsets of the span `low+1 ..= low+span`, as runs: (first, count).
    fn pending_runs(&self, low: i64, span: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let mut inside = self.pending.range(low + 1..=low + span).peekable();
        std::iter::from_fn(move || {
            let first = *inside.next()?;
            let mut count = 1;
            while inside.next_if(|&&p| p == first + count).is_some() {
                count += 1;
            }
            Some((first, count))
        })
    }

    /// The run lengths of the span: before each run of pending offsets the run of finished
    /// ones that leads to it (the first may be empty), then the finished run to the span's end.
    fn runs(&self, low: i64, span: i64) -> impl Iterator<Item = u64> + '_ {
        let mut at = low + 1;
        let tail = self
            .pending
            .range(low + 1..=low + span)
            .next_back()
            .map_or(low + 1, |&p| p + 1);
        self.pending_runs(low, span)
            .flat_map(move |(first, count)| {
                let finished = first - at;
                at = first + count;
                [finished as u64, count as u64]
            })
            .chain(std::iter::once((low + span + 1 - tail) as u64))
    }

    /// The body the text for the span `low+1 ..= low+span` carries (run lengths unless the
    /// bitmap is shorter) and the payload's length.
    fn layout(&self, low: i64, span: i64) -> (u8, usize) {
        let head = varint_len(low as u64) + varint_len(span as u64);
        let runs: usize = self.runs(low, span).map(varint_len).sum();
        let bitmap = bitmap_len(span);
        if runs <= bitmap {
            (RUNS, head + runs)
        } else {
            (BITMAP, head + bitmap)
        }
    }

    /// The text for the span `low+1 ..= low+span`, with the body `kind` and a payload of `len`
    /// bytes (as [`layout`](Self::layout) said).
    fn encode(&self, low: i64, span: i64, kind: u8, len: usize) -> String {
        let mut payload = Vec::with_capacity(len);
        put_varint(&mut payload, low as u64);
        put_varint(&mut payload, span as u64);
        if kind == RUNS {
            for run in self.runs(low, span) {
                put_varint(&mut payload, run);
            }
        } else {
            let start = payload.len();
            payload.resize(start + bitmap_len(span), 0xff);
            if let Some(tail) = payload.last_mut()
                && span % 8 != 0
            {
                // The bits past the span are clear.
                *tail = (1u8 << (span % 8)) - 1;
            }
            for (first, count) in self.pending_runs(low, span) {
                for offset in first..first + count {
                    let bit = (offset - low - 1) as usize;
                    payload[start + bit / 8] &= !(1 << (bit % 8));
                }
            }
        }
        debug_assert_eq!(payload.len(), len);
        let mut text = String::with_capacity(text_len(len));
        text.push_str(VERSION);
        text.push(char::from(kind));
        URL_SAFE_NO_PAD.encode_string(&payload, &mut text);
        text
    }
}

impl Metadata {
    fn none(complete: bool) -> Metadata {
        Metadata {
            text: String::new(),
            complete,
        }
    }
}

/// The records a commit's metadata says were finished above the committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FinishedAbove {
    /// The committed offset.
    committed: i64,
    /// The last offset the text describes.
    last: i64,
    /// The offsets of the span that are not finished, in order.
    unfinished: Vec<Range<i64>>,
}

/// Why a commit's metadata that is kcon's could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable(pub(crate) String);

impl FinishedAbove {
    /// What `metadata`, committed with the offset `committed`, says: `Ok(None)` when the text
    /// is not of this encoding (empty, another client's, a later version), an error when it
    /// claims to be and cannot be read or was written for another offset. Either way a caller
    /// that has none processes every record from `committed`.
    pub(crate) fn read(
        committed: i64,
        metadata: &str,
    ) -> Result<Option<FinishedAbove>, Unreadable> {
        let Some(rest) = metadata.strip_prefix(VERSION) else {
            return Ok(None);
        };
        let bad = |why: &str| Unreadable(format!("kcon's offset metadata {why}"));
        let (&kind, body) = rest
            .as_bytes()
            .split_first()
            .ok_or_else(|| bad("has no body"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| bad(&format!("is not base64url: {e}")))?;
        let mut input = payload.as_slice();
        let low = take_varint(&mut input).ok_or_else(|| bad("has no offset"))?;
        let span = take_varint(&mut input).ok_or_else(|| bad("has no span"))?;
        let (Ok(low), Ok(span)) = (i64::try_from(low), i64::try_from(span)) else {
            return Err(bad("has an offset or a span out of range"));
        };
        let last = low
            .checked_add(span)
            .ok_or_else(|| bad("has a span past the last offset"))?;
        if low != committed {
            return Err(bad(&format!(
                "was written for offset {low}, not the committed {committed}"
            )));
        }
        let mut unfinished = Vec::new();
        match kind {
            RUNS => {
                let mut at = low + 1;
                let mut finished = true;
                while !input.is_empty() {
                    let run = take_varint(&mut input).ok_or_else(|| bad("has a broken run"))?;
                    let end = i64::try_from(run)
                        .ok()
                        .and_then(|run| at.checked_add(run))
                        .filter(|&end| end <= last + 1)
                        .ok_or_else(|| bad("has runs longer than its span"))?;
                    if !finished && end > at {
                        unfinished.push(at..end);
                    }
                    at = end;
                    finished = !finished;
                }
                if at != last + 1 {
                    return Err(bad("has runs shorter than its span"));
                }
            }
            BITMAP => {
                if u64::try_from(input.len()).ok() != Some(span.unsigned_abs().div_ceil(8)) {
                    return Err(bad("has a bitmap of the wrong length"));
                }
                for (i, byte) in input.iter().enumerate() {
                    for bit in 0..8 {
                        let offset = low + 1 + (i * 8 + bit) as i64;
                        if offset > last || byte & (1 << bit) != 0 {
                            continue;
                        }
                        match unfinished.last_mut() {
                            Some(r) if r.end == offset => r.end += 1,
                            _ => unfinished.push(offset..offset + 1),
                        }
                    }
                }
            }
            _ => return Err(bad("has a body of an unknown kind")),
        }
        Ok(Some(FinishedAbove {
            committed,
            last,
            unfinished,
        }))
    }

    /// Whether the record at `offset` was finished.
    pub(crate) fn contains(&self, offset: i64) -> bool {
        if offset <= self.committed || offset > self.last {
            return false;
        }
        // The last unfinished run starting at or before `offset`.
        let i = self.unfinished.partition_point(|r| r.start <= offset);
        i == 0 || !self.unfinished[i - 1].contains(&offset)
    }

    /// The last offset the metadata describes: past it, nothing counts as finished.
    pub(crate) fn last(&self) -> i64 {
        self.last
    }
}

/// How many bytes `value` takes as an unsigned LEB128 varint.
fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `value` as an unsigned LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Takes an unsigned LEB128 varint off the front of `input`: none when it ends first or the
/// value passes 64 bits.
fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// How many bytes the bitmap of a span takes.
fn bitmap_len(span: i64) -> usize {
    usize::try_from(span.unsigned_abs().div_ceil(8)).unwrap_or(usize::MAX)
}

/// How long the text of a payload of `len` bytes is: the version, the body's kind, and the
/// payload in base64 without padding.
fn text_len(len: usize) -> usize {
    VERSION.len() + 1 + len.saturating_mul(4).div_ceil(3)
}

/// Checks what [`Progress::metadata`] writes within `max_bytes` against `progress`, and
/// panics when a pending record lies outside the gap, the text is longer than the bound, is
/// not read back for the committable offset, says a pending record is finished, or (complete)
/// leaves out one that is not pending.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_metadata(progress: &Progress, max_bytes: usize) -> Metadata {
    // Every pending record lies between the committable offset and the next one.
    assert!(
        progress.gap() >= progress.pending() as i64,
        "{} records pending in a gap of {}",
        progress.pending(),
        progress.gap()
    );
    let metadata = progress.metadata(max_bytes);
    assert!(
        metadata.text.len() <= max_bytes || metadata.text.is_empty(),
        "{} bytes of metadata, the bound {max_bytes}",
        metadata.text.len()
    );
    let (Some(committed), Some(next)) = (progress.committable(), progress.next) else {
        assert!(metadata.text.is_empty(), "metadata before any record");
        return metadata;
    };
    let read = FinishedAbove::read(committed, &metadata.text)
        .unwrap_or_else(|e| panic!("{:?} does not read back: {}", metadata.text, e.0));
    if metadata.text.is_empty() {
        assert!(read.is_none());
    }
    for offset in committed..next {
        let pending = progress.pending.contains(&offset);
        let finished = read.as_ref().is_some_and(|r| r.contains(offset));
        assert!(
            !(pending && finished),
            "{:?} says the pending record {offset} is finished",
            metadata.text
        );
        if metadata.complete && offset > committed && !pending {
            assert!(
                finished,
                "{:?} is complete and leaves out the finished record {offset}",
                metadata.text
            );
        }
    }
    metadata
}

#[cfg(test)]
mod tests;
