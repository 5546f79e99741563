//! The tensor records of a `.pth` pickle, checked before candle's `PthTensors` indexes them.
//!
//! candle turns each state_dict value into a tensor by taking fixed positions out of its
//! tuples (`_rebuild_tensor_v2`'s 4 arguments, the storage's 5 fields) and multiplying the
//! storage offset by the element size, without checking: a short tuple or a huge offset is a
//! panic. [`check`] reads the pickle as candle does (with candle's own reader, once
//! [`super::pth_pickle`] has bounded it), finds the same records and refuses one that would
//! panic, naming its key. A record candle skips or reports itself is left to candle.

use candle_core::pickle::{Object, Stack};

/// The storage offset (in elements) allowed: times any element size it fits a `usize`.
const MAX_OFFSET: i64 = (isize::MAX / 8) as i64;

/// Checks the records of the state_dict candle finds in `pickle`, under `key` or at the top.
pub(crate) fn check(pickle: &[u8]) -> Result<(), String> {
    let mut stack = Stack::empty();
    let mut reader = pickle;
    if stack.read_loop(&mut reader).is_err() {
        return Ok(()); // candle fails the same way, with its own message
    }
    let Ok(root) = stack.finalize() else {
        return Ok(());
    };
    let root = unwrap_module(root);
    for key in [Some("model"), None] {
        if let Some(Object::Dict(entries)) = state_dict(&root, key) {
            entries
                .iter()
                .try_for_each(|(name, value)| record(name, value))?;
        }
    }
    Ok(())
}

/// A scripted module's state (`__torch__.Module` built with it), as candle unwraps it.
fn unwrap_module(root: Object) -> Object {
    if let Object::Build { callable, args } = &root
        && let Object::Reduce { callable, .. } = callable.as_ref()
        && let Object::Class {
            module_name,
            class_name,
        } = callable.as_ref()
        && module_name == "__torch__"
        && class_name == "Module"
    {
        return args.as_ref().clone();
    }
    root
}

/// The object candle takes as the state_dict for `key`.
fn state_dict<'a>(root: &'a Object, key: Option<&str>) -> Option<&'a Object> {
    let (Some(key), Object::Dict(entries)) = (key, root) else {
        return Some(root);
    };
    let wanted = Object::Unicode(key.to_owned());
    entries.iter().find(|(k, _)| *k == wanted).map(|(_, v)| v)
}

/// One state_dict entry, walked as candle's `Object::into_tensor_info` walks it.
fn record(name: &Object, value: &Object) -> Result<(), String> {
    let Object::Unicode(name) = name else {
        return Ok(());
    };
    let Object::Reduce { callable, args } = value else {
        return Ok(());
    };
    let refuse = |what: &str| Err(format!("tensor {name}: {what}"));
    let (callable, args) = match class(callable) {
        Some(("torch._tensor", "_rebuild_from_type_v2")) => match tuple(args) {
            Some([inner, _, inner_args, ..]) => (inner, inner_args),
            Some(_) => return refuse("_rebuild_from_type_v2 with fewer than 3 arguments"),
            None => return Ok(()),
        },
        Some(("torch._utils", "_rebuild_parameter")) => match tuple(args) {
            Some([Object::Reduce { callable, args }, ..]) => (callable.as_ref(), args.as_ref()),
            Some([]) => return refuse("_rebuild_parameter without arguments"),
            _ => return Ok(()),
        },
        _ => (callable.as_ref(), args.as_ref()),
    };
    if class(callable) != Some(("torch._utils", "_rebuild_tensor_v2")) {
        return Ok(());
    }
    rebuild_args(args).map_or(Ok(()), refuse)
}

/// What in `_rebuild_tensor_v2`'s arguments would make candle panic, if anything.
fn rebuild_args(args: &Object) -> Option<&'static str> {
    let args = tuple(args)?;
    let [storage, offset, _, _, ..] = args else {
        return Some("_rebuild_tensor_v2 with fewer than 4 arguments");
    };
    if let Object::Int(n) = offset {
        if *n < 0 {
            return Some("a negative storage offset");
        }
    } else if let Object::Long(n) = offset
        && !(0..=MAX_OFFSET).contains(n)
    {
        return Some("a storage offset out of range");
    }
    match storage {
        Object::PersistentLoad(id) => match tuple(id) {
            Some(fields) if fields.len() < 5 => Some("a storage record with fewer than 5 fields"),
            _ => None,
        },
        _ => None,
    }
}

fn class(object: &Object) -> Option<(&str, &str)> {
    match object {
        Object::Class {
            module_name,
            class_name,
        } => Some((module_name, class_name)),
        _ => None,
    }
}

fn tuple(object: &Object) -> Option<&[Object]> {
    match object {
        Object::Tuple(items) => Some(items),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    /// `{"w": _rebuild_tensor_v2(ARGS)}` (protocol 2, no memo), with `args` the opcodes that
    /// push the arguments between a MARK and TUPLE.
    fn state_dict_with(args: &[u8]) -> Vec<u8> {
        let mut p = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
        p.extend_from_slice(args);
        p.extend_from_slice(b"tRs.");
        p
    }

    /// The storage record `("storage", FloatStorage, "0", "cpu", 4)` loaded by BINPERSID.
    const STORAGE: &[u8] =
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ";

    #[test]
    fn a_whole_record_is_accepted() {
        let args = [STORAGE, b"K\x00K\x04\x85K\x01\x85\x89"].concat();
        assert_eq!(check(&state_dict_with(&args)), Ok(()));
    }

    #[test]
    fn a_record_with_three_arguments_is_refused() {
        let args = [STORAGE, b"K\x00K\x04\x85"].concat();
        let err = check(&state_dict_with(&args)).expect_err("3 arguments");
        assert!(
            err.contains("tensor w") && err.contains("fewer than 4"),
            "{err}"
        );
    }

    #[test]
    fn a_storage_record_with_four_fields_is_refused() {
        let short = replace_once(STORAGE, b"K\x04t", b"t");
        let args = [&short[..], b"K\x00K\x04\x85K\x01\x85\x89"].concat();
        let err = check(&state_dict_with(&args)).expect_err("4 storage fields");
        assert!(err.contains("fewer than 5 fields"), "{err}");
    }

    #[test]
    fn a_negative_storage_offset_is_refused() {
        let args = [STORAGE, b"J\xff\xff\xff\xffK\x04\x85K\x01\x85\x89"].concat();
        let err = check(&state_dict_with(&args)).expect_err("offset -1");
        assert!(err.contains("negative storage offset"), "{err}");
    }

    fn replace_once(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern present");
        [&bytes[..at], to, &bytes[at + from.len()..]].concat()
    }
}
