//! Parses arbitrary text as an image reference, both with tag defaulting (`parse`) and without
//! (`parse_name_only`). Parsing may fail but must not panic, and whatever parses must print as a
//! reference that parses back to the same value, be rebuildable from its parts, and keep its name
//! through the familiar (Docker-style) spelling where that spelling is unambiguous.

#![no_main]

use hull_oci::Reference;
use libfuzzer_sys::fuzz_target;

fn check_round_trips(r: &Reference) {
    let printed = r.to_string();
    let again = Reference::parse_name_only(&printed)
        .unwrap_or_else(|e| panic!("{printed:?} (printed from {r:?}) does not parse: {e}"));
    assert_eq!(&again, r, "{printed:?} parses to another reference");

    let rebuilt = Reference::new(r.registry(), r.repository(), r.tag(), r.digest().cloned())
        .unwrap_or_else(|e| panic!("{r:?} cannot be rebuilt from its parts: {e}"));
    assert_eq!(&rebuilt, r, "rebuilding {r:?} from its parts changes it");

    // The familiar name reads back as the same repository: a Docker Hub repository whose first
    // component looks like a host (`docker.io/example.com/app`) keeps its `docker.io/`.
    let familiar = r.familiar_name();
    let named = Reference::parse_name_only(&familiar)
        .unwrap_or_else(|e| panic!("familiar name {familiar:?} of {r:?} does not parse: {e}"));
    assert_eq!(
        named.name(),
        r.name(),
        "familiar name {familiar:?} names another repository"
    );

    let _ = r.manifest_ref();
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let full = Reference::parse(s);
    let name_only = Reference::parse_name_only(s);
    assert_eq!(
        full.is_ok(),
        name_only.is_ok(),
        "parse and parse_name_only disagree on {s:?}: {full:?} vs {name_only:?}"
    );
    if let Ok(r) = &full {
        assert!(
            r.tag().is_some() || r.digest().is_some(),
            "{s:?} parsed without tag or digest"
        );
        Reference::parse(&r.to_string())
            .map(|again| assert_eq!(&again, r))
            .unwrap_or_else(|e| panic!("{r:?} does not parse again: {e}"));
        check_round_trips(r);
    }
    if let Ok(n) = &name_only {
        check_round_trips(n);
        if let Ok(r) = &full {
            assert_eq!(r.name(), n.name());
            assert_eq!(r.digest(), n.digest());
        }
    }
});
