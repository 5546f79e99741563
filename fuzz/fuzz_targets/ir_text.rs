//! The IR text parser; a graph it accepts is verified and printed, and the print must parse
//! back to the same text (the parser's contract).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchhead_compiler::ir::{parse, print, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(graph) = parse(text) else {
        return;
    };
    let _ = verify(&graph);
    let printed = print(&graph);
    if printed.contains("%!") {
        return;
    }
    let again = parse(&printed).expect("the printed form parses");
    assert_eq!(print(&again), printed, "print(parse(print(g))) == print(g)");
});
