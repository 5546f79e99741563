"""Writes the hand-made `.pth` regression inputs: the fuzz seed `tiny.pth` with its pickle
changed in one place each (see compiler/tests/fuzz_regressions.rs for what each one checks).

Run from the repository root: python3 testdata/fuzz-regressions/make_pth_variants.py
"""

import zipfile

SEED = "fuzz/corpus/pth_import/seed-tiny.pth"
OUT = "testdata/fuzz-regressions/"


def with_pickle(name, change):
    src = zipfile.ZipFile(SEED)
    with zipfile.ZipFile(OUT + name, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = change(data)
            dst.writestr(info.filename, data)


def replace_once(old, new):
    def change(data):
        assert data.count(old) >= 1, old
        return data.replace(old, new, 1)

    return change


# embedding.weight's _rebuild_tensor_v2 gets 3 arguments (storage, offset, size): the
# stride, requires_grad and hooks are cut out.
with_pickle(
    "pth-record-with-3-arguments.pth",
    replace_once(b"K\x02K\x01\x86q\x0c\x89h\x02)Rq\rt", b"t"),
)
# embedding.weight's storage offset is BININT -1.
with_pickle(
    "pth-storage-offset-negative.pth",
    replace_once(b"QK\x00K\x04", b"QJ\xff\xff\xff\xffK\x04"),
)
# embedding.weight's storage offset is a 9-byte LONG1.
with_pickle(
    "pth-long1-of-9-bytes.pth",
    replace_once(b"QK\x00K\x04", b"Q\x8a\x09" + bytes(9) + b"K\x04"),
)
# Before the dict: 48 rounds of "a pair of two memo copies of memo 100, stored back as 100",
# each doubling what candle's reader would build (2^48 objects from 339 bytes).
bomb = b"N" + b"q\x64" + b"h\x64h\x64\x86q\x64" * 48
with_pickle("pth-pickle-memo-doubling.pth", replace_once(b"\x80\x02}", b"\x80\x02" + bomb + b"}"))
