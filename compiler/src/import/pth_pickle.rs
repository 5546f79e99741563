//! A bound on a `.pth` checkpoint's pickle (`*data.pkl`), checked before candle reads it.
//!
//! candle's pickle reader allocates what an opcode claims before reading it (a `BINUNICODE`
//! claiming 4 GiB is a 4 GiB buffer), copies an object on every memo get and put, and shifts
//! past 64 bits on a `LONG1` longer than 8 bytes. [`scan`] walks the opcode stream the way that
//! reader does, counting the objects it would build instead of building them, and refuses the
//! pickle, naming the opcode and its offset, when:
//! - an opcode's length argument (any pickle protocol's: `BINUNICODE`, `BINSTRING`, `BINBYTES`,
//!   their `SHORT_` and `8` forms, `BYTEARRAY8`, `FRAME`, `LONG1`, `LONG4`) claims more bytes
//!   than are left in the entry;
//! - a `LONG1` is longer than the 8 bytes candle decodes;
//! - the objects built, memo copies included, number more than [`UNITS_PER_BYTE`] per byte of
//!   the entry (a string counts one per 8 bytes);
//! - objects nest deeper than [`MAX_DEPTH`] (candle drops, copies and prints them
//!   recursively: a deep one overflows the stack).
//!
//! It stops where candle's reader stops: at `STOP`, at an opcode candle does not know (after
//! checking its length), or at a missing argument, stack entry, mark or memo entry, which candle
//! reports itself without allocating. So whatever this accepts, candle reads within bounds.

use std::io::Read;
use std::path::Path;

use crate::error::ImportError;

/// Objects built (memo copies included) allowed per byte of a pickle. `torch.save`'s builds
/// about one per byte: each object once, and a memo copy of each small one.
const UNITS_PER_BYTE: u64 = 8;
/// Allowance on top of [`UNITS_PER_BYTE`] for tiny pickles.
const UNITS_BASE: u64 = 1 << 16;
/// Nesting allowed (a state dict under a key, a tensor record, its storage tuple: under 10).
const MAX_DEPTH: u32 = 256;

/// Every `*data.pkl` entry of the zip archive at `path` (the entries candle reads), by name,
/// once [`scan`] has accepted it.
pub(crate) fn bounded_pickles(path: &Path) -> Result<Vec<(String, Vec<u8>)>, ImportError> {
    let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file.metadata().map_or(0, |m| m.len());
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| corrupt(path, format!("not a zip archive: {e}")))?;
    let mut pickles = Vec::new();
    for index in 0..zip.len() {
        // candle reads without checking the CRC (it stops at STOP, short of the end): so do we.
        let options = zip::ZipReadOptions::new().ignore_crc32(true);
        let mut entry = zip
            .by_index_with_options(index, options)
            .map_err(|e| corrupt(path, format!("zip entry {index}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| corrupt(path, format!("zip entry {index}: {e}")))?
            .into_owned();
        if !name.ends_with("data.pkl") {
            continue;
        }
        // An entry holds no more than the file does (candle reads stored entries only).
        let mut pickle = Vec::new();
        (&mut entry)
            .take(file_len)
            .read_to_end(&mut pickle)
            .map_err(|e| corrupt(path, format!("{name}: {e}")))?;
        scan(&pickle).map_err(|e| corrupt(path, format!("{name}: {e}")))?;
        pickles.push((name, pickle));
    }
    Ok(pickles)
}

/// Walks `pickle`'s opcodes as candle's reader would; `Err` names the opcode, its offset and
/// what is wrong.
pub(crate) fn scan(pickle: &[u8]) -> Result<(), String> {
    let limit = (pickle.len() as u64)
        .saturating_mul(UNITS_PER_BYTE)
        .saturating_add(UNITS_BASE);
    let mut stack = Shadow::new(limit);
    let mut at = 0;
    while let Some(&code) = pickle.get(at) {
        let arg = Arg { pickle, at: at + 1 };
        match step(&mut stack, code, &arg) {
            Ok(len) => at += 1 + len,
            Err(Halt::Stop) => return Ok(()),
            Err(Halt::Refuse(why)) => {
                return Err(format!("pickle opcode 0x{code:02x} at offset {at}: {why}"));
            }
        }
    }
    Ok(())
}

/// Why the scan ends early.
enum Halt {
    /// candle's reader stops here: done, or failing on its own without allocating.
    Stop,
    /// The pickle is refused.
    Refuse(String),
}

/// One opcode of candle's `Stack::read`; `Ok` is the length of its argument.
fn step(stack: &mut Shadow, code: u8, arg: &Arg) -> Result<usize, Halt> {
    match code {
        // PROTO; BININT1, BININT2, BININT, BINFLOAT
        0x80 => arg.fixed(1),
        b'K' => stack.push_fixed(arg, 1),
        b'M' => stack.push_fixed(arg, 2),
        b'J' => stack.push_fixed(arg, 4),
        b'G' => stack.push_fixed(arg, 8),
        // GLOBAL: module and class name, each up to a newline
        b'c' => {
            let len = arg.line(0) + arg.line(arg.line(0));
            stack.push(1 + len as u64 / 8)?;
            Ok(len)
        }
        b'X' => {
            let (len, bytes) = arg.counted(4)?;
            stack.push(1 + bytes / 8)?;
            Ok(len)
        }
        0x8a => {
            let (len, bytes) = arg.counted(1)?;
            if bytes > 8 {
                return Err(Halt::Refuse(format!(
                    "LONG1 of {bytes} bytes (at most 8 are read)"
                )));
            }
            stack.push(1)?;
            Ok(len)
        }
        // BINGET, LONG_BINGET, BINPUT, LONG_BINPUT
        b'h' => stack.memo_get(arg.uint(1)?).map(|()| 1),
        b'j' => stack.memo_get(arg.uint(4)?).map(|()| 4),
        b'q' => stack.memo_put(arg.uint(1)?).map(|()| 1),
        b'r' => stack.memo_put(arg.uint(4)?).map(|()| 4),
        _ => match unread_counted(code) {
            Some(size_len) => arg.counted(size_len).and(Err(Halt::Stop)),
            None => stack_op(stack, code).map(|()| 0),
        },
    }
}

/// candle's opcodes without an argument.
fn stack_op(stack: &mut Shadow, code: u8) -> Result<(), Halt> {
    match code {
        // EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, DICT (candle reads it as EMPTY_DICT), NEWTRUE,
        // NEWFALSE, NONE
        b')' | b']' | b'}' | b'd' | 0x88 | 0x89 | b'N' => stack.push(1),
        b'(' => stack.push_mark(),
        b't' => stack.combine_to_mark(),
        // APPENDS, SETITEMS: the objects since the mark join the list or dict below it
        b'e' | b'u' => stack.join_to_mark(),
        // TUPLE1, TUPLE2, TUPLE3; BINPERSID; REDUCE, BUILD, NEWOBJ
        0x85 | b'Q' => stack.combine(1),
        0x86 | b'R' | b'b' | 0x81 => stack.combine(2),
        0x87 => stack.combine(3),
        // APPEND, SETITEM
        b'a' => stack.join(1),
        b's' => stack.join(2),
        // STOP, and every opcode candle does not know
        _ => Err(Halt::Stop),
    }
}

/// The length-carrying opcodes candle does not read, with their length's size: checked anyway,
/// so the bound holds for a reader that reads them.
fn unread_counted(code: u8) -> Option<usize> {
    match code {
        // SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE
        b'U' | b'C' | 0x8c => Some(1),
        // BINSTRING, BINBYTES, LONG4
        b'T' | b'B' | 0x8b => Some(4),
        // BINUNICODE8, BINBYTES8, BYTEARRAY8, FRAME
        0x8d | 0x8e | 0x96 | 0x95 => Some(8),
        _ => None,
    }
}

/// The bytes after an opcode.
struct Arg<'a> {
    pickle: &'a [u8],
    at: usize,
}

impl Arg<'_> {
    fn left(&self) -> usize {
        self.pickle.len().saturating_sub(self.at)
    }

    /// An argument of `len` bytes: candle stops on a truncated one.
    fn fixed(&self, len: usize) -> Result<usize, Halt> {
        if self.left() < len {
            return Err(Halt::Stop);
        }
        Ok(len)
    }

    /// The little-endian unsigned integer in the argument's first `n` bytes.
    fn uint(&self, n: usize) -> Result<u64, Halt> {
        let bytes = self.pickle.get(self.at..self.at + n).ok_or(Halt::Stop)?;
        Ok(bytes.iter().rev().fold(0, |v, &b| (v << 8) | u64::from(b)))
    }

    /// The length of a newline-terminated argument starting `from` bytes in, newline included
    /// (all that is left when there is none).
    fn line(&self, from: usize) -> usize {
        let rest = self.pickle.get(self.at + from..).unwrap_or_default();
        rest.iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |n| n + 1)
    }

    /// A `size_len`-byte length and that many bytes, all of which must be there: the
    /// argument's whole length, and the claimed one.
    fn counted(&self, size_len: usize) -> Result<(usize, u64), Halt> {
        let claimed = self.uint(size_len)?;
        let left = self.left() - size_len;
        if claimed > left as u64 {
            return Err(Halt::Refuse(format!(
                "claims {claimed} bytes, {left} are left in the entry"
            )));
        }
        Ok((size_len + claimed as usize, claimed))
    }
}

/// An object on the shadow stack: how many objects it holds and how deep they nest.
#[derive(Clone, Copy, Default)]
struct Entry {
    units: u64,
    depth: u32,
}

impl Entry {
    /// `self` and `other` in one object (a container holding both).
    fn with(self, other: Entry) -> Entry {
        Entry {
            units: self.units.saturating_add(other.units),
            depth: self.depth.max(other.depth),
        }
    }

    /// `self` one level down: inside a new container (which `units` counts).
    fn wrapped(self, units: u64) -> Entry {
        Entry {
            units: self.units.saturating_add(units),
            depth: self.depth.saturating_add(1),
        }
    }
}

/// A shadow of candle's stack and memo: an [`Entry`] per object, and where the marks are.
struct Shadow {
    stack: Vec<Entry>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, (Entry, bool)>,
    built: u64,
    limit: u64,
}

impl Shadow {
    fn new(limit: u64) -> Self {
        Self {
            stack: Vec::new(),
            marks: Vec::new(),
            memo: std::collections::HashMap::new(),
            built: 0,
            limit,
        }
    }

    /// Counts `units` more objects built, the deepest `depth` down, refusing past the limits.
    fn build(&mut self, units: u64, depth: u32) -> Result<(), Halt> {
        self.built = self.built.saturating_add(units);
        if self.built > self.limit {
            return Err(Halt::Refuse(format!(
                "builds over {} objects (memo copies included), more than the pickle's size allows",
                self.limit
            )));
        }
        if depth > MAX_DEPTH {
            return Err(Halt::Refuse(format!(
                "objects nest deeper than {MAX_DEPTH}"
            )));
        }
        Ok(())
    }

    /// A new leaf of `units` objects (a string counts its bytes / 8).
    fn push(&mut self, units: u64) -> Result<(), Halt> {
        self.build(units, 1)?;
        self.stack.push(Entry { units, depth: 1 });
        Ok(())
    }

    fn push_fixed(&mut self, arg: &Arg, len: usize) -> Result<usize, Halt> {
        let len = arg.fixed(len)?;
        self.push(1)?;
        Ok(len)
    }

    fn push_mark(&mut self) -> Result<(), Halt> {
        self.marks.push(self.stack.len());
        self.push(1)
    }

    /// Pops the `n` top entries (candle stops on an empty stack), as one.
    fn pop(&mut self, n: usize) -> Result<Entry, Halt> {
        let from = self.stack.len().checked_sub(n).ok_or(Halt::Stop)?;
        Ok(self.truncate(from))
    }

    fn truncate(&mut self, from: usize) -> Entry {
        while self.marks.last().is_some_and(|&m| m >= from) {
            self.marks.pop();
        }
        self.stack.drain(from..).fold(Entry::default(), Entry::with)
    }

    /// `inner` becomes one new object on the stack.
    fn push_wrapped(&mut self, inner: Entry) -> Result<(), Halt> {
        let entry = inner.wrapped(1);
        self.build(1, entry.depth)?;
        self.stack.push(entry);
        Ok(())
    }

    /// `inner` moves into the list or dict on top of the stack.
    fn join_top(&mut self, inner: Entry) -> Result<(), Halt> {
        let top = self.stack.last().copied().ok_or(Halt::Stop)?;
        let joined = top.with(inner.wrapped(0));
        self.build(0, joined.depth)?;
        *self.stack.last_mut().ok_or(Halt::Stop)? = joined;
        Ok(())
    }

    /// `n` entries become one new object holding them.
    fn combine(&mut self, n: usize) -> Result<(), Halt> {
        let inner = self.pop(n)?;
        self.push_wrapped(inner)
    }

    /// `n` entries move into the list or dict below them.
    fn join(&mut self, n: usize) -> Result<(), Halt> {
        let inner = self.pop(n)?;
        self.join_top(inner)
    }

    /// The entries above the last mark (which is dropped), as one.
    fn pop_to_mark(&mut self) -> Result<Entry, Halt> {
        let mark = *self.marks.last().ok_or(Halt::Stop)?;
        let inner = self.truncate(mark + 1);
        self.truncate(mark);
        Ok(inner)
    }

    fn combine_to_mark(&mut self) -> Result<(), Halt> {
        let inner = self.pop_to_mark()?;
        self.push_wrapped(inner)
    }

    fn join_to_mark(&mut self) -> Result<(), Halt> {
        let inner = self.pop_to_mark()?;
        self.join_top(inner)
    }

    /// candle pushes a copy of the memo entry.
    fn memo_get(&mut self, id: u64) -> Result<(), Halt> {
        let (entry, is_mark) = *self.memo.get(&id).ok_or(Halt::Stop)?;
        if is_mark {
            self.marks.push(self.stack.len());
        }
        self.build(entry.units, entry.depth)?;
        self.stack.push(entry);
        Ok(())
    }

    /// candle stores a copy of the top of the stack.
    fn memo_put(&mut self, id: u64) -> Result<(), Halt> {
        let top = self.stack.len().checked_sub(1).ok_or(Halt::Stop)?;
        let entry = self.stack[top];
        self.build(entry.units, entry.depth)?;
        let is_mark = self.marks.last() == Some(&top);
        self.memo.insert(id, (entry, is_mark));
        Ok(())
    }
}

fn corrupt(path: &Path, reason: String) -> ImportError {
    ImportError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::scan;

    /// `{"a": ("b", 1)}` as protocol 2 writes it, memo puts included.
    const SMALL: &[u8] =
        b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01X\x01\x00\x00\x00bq\x02K\x01\x86q\x03s.";

    #[test]
    fn a_small_pickle_is_accepted() {
        assert_eq!(scan(SMALL), Ok(()));
    }

    #[test]
    fn a_string_claiming_more_than_is_left_is_refused_with_its_offset() {
        let mut pickle = b"\x80\x02}q\x00X\x01\x00\xff\xff".to_vec();
        pickle.extend_from_slice(b"abc.");
        let err = scan(&pickle).expect_err("a 4 GiB string in 14 bytes");
        assert!(err.contains("0x58 at offset 5"), "{err}");
        assert!(err.contains("claims 4294901761 bytes, 4 are left"), "{err}");
    }

    #[test]
    fn a_length_opcode_candle_does_not_read_is_checked_too() {
        let pickle = b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f}.";
        let err = scan(pickle).expect_err("a FRAME claiming 2^63 bytes");
        assert!(err.contains("0x95 at offset 2"), "{err}");
    }

    #[test]
    fn a_long1_longer_than_8_bytes_is_refused() {
        let pickle = b"\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.";
        let err = scan(pickle).expect_err("a 9-byte LONG1");
        assert!(err.contains("LONG1 of 9 bytes"), "{err}");
        assert_eq!(scan(b"\x8a\x08\x01\x02\x03\x04\x05\x06\x07\x08."), Ok(()));
    }

    /// Each round (`h\0 h\0 \x86 q\0`: a pair of two memo copies, stored back) doubles the
    /// object candle would build: 40 rounds in 200 bytes would be 2^40 objects.
    #[test]
    fn memo_copies_that_double_each_round_are_refused() {
        let mut pickle = b"N\x71\x00".to_vec();
        for _ in 0..40 {
            pickle.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        pickle.push(b'.');
        let err = scan(&pickle).expect_err("an exponential pickle");
        assert!(err.contains("builds over"), "{err}");
        assert_eq!(scan(&pickle[..3 + 7 * 4]), Ok(()), "four rounds are fine");
    }

    #[test]
    fn objects_nested_deeper_than_the_limit_are_refused() {
        let nested = |depth: usize| [b"N".to_vec(), vec![0x85; depth], b".".to_vec()].concat();
        assert_eq!(scan(&nested(super::MAX_DEPTH as usize - 1)), Ok(()));
        let err = scan(&nested(100_000)).expect_err("100,000 nested tuples");
        assert!(err.contains("nest deeper"), "{err}");
    }

    /// The scan goes on past marks that candle's reader pairs up (to the bad string at the
    /// end) and stops where candle's reader would fail on a missing one.
    #[test]
    fn marks_are_paired_as_candle_pairs_them() {
        // [(1, 2), 3] then [4] appended: MARK MARK 1 2 TUPLE 3 APPENDS, MARK 4 APPENDS
        let paired = b"]((K\x01K\x02tK\x03e(K\x04eX\xff\xff\xff\xff.";
        let err = scan(paired).expect_err("the scan reaches the string");
        assert!(err.contains("at offset 15"), "{err}");
        let unpaired = b"]K\x01eX\xff\xff\xff\xff.";
        assert_eq!(
            scan(unpaired),
            Ok(()),
            "APPENDS without a mark stops candle first"
        );
    }
}
