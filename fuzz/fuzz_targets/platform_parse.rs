//! Parses arbitrary text as a platform (`os/arch[/variant]`). Parsing may fail but must not panic;
//! a parsed platform is already normalised, matches itself, and prints as text that parses back
//! to the same value.

#![no_main]

use hull_oci::Platform;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = s.parse::<Platform>() else {
        return;
    };
    assert_eq!(
        p.clone().normalized(),
        p,
        "{s:?} parsed to a platform that is not normalised"
    );
    assert!(p.matches(&p), "{p:?} does not match itself");
    let printed = p.to_string();
    let again = printed
        .parse::<Platform>()
        .unwrap_or_else(|e| panic!("{printed:?} (printed from {s:?}) does not parse: {e}"));
    assert_eq!(again, p, "{printed:?} parses to another platform");
});
