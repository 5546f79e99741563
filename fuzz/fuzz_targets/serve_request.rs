//! The body of `POST /v1/completions`, parsed and checked against the default limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchhead_cli::serve::{Limits, parse_request};

fuzz_target!(|data: &[u8]| {
    let _ = parse_request(data, &Limits::default());
});
