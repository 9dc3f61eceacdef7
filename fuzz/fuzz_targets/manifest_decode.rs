//! Decodes arbitrary bytes as a manifest or index, as served with a content type from a small
//! list (the first input byte picks it; `@` is the first entry, `A` the second, and so on).
//! Decoding may fail but must not panic. A document that decodes must, re-serialised with
//! serde_json, decode to the same value both when served with the same content type and when
//! served with the media type the decoded document reports.

#![no_main]

use hull_oci::{ParsedManifest, Platform, media_type};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 16] = [
    None,
    Some(""),
    Some("application/json"),
    Some("text/plain"),
    Some(media_type::OCI_MANIFEST),
    Some(media_type::OCI_INDEX),
    Some(media_type::DOCKER_MANIFEST),
    Some(media_type::DOCKER_MANIFEST_LIST),
    Some(media_type::DOCKER_SCHEMA1),
    Some(media_type::DOCKER_SCHEMA1_SIGNED),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some(" application/vnd.oci.image.index.v1+json ;q=0.5"),
    Some("text/html"),
    Some(media_type::OCI_CONFIG),
    Some("application/octet-stream"),
    Some(";"),
];

fn reserialise(parsed: &ParsedManifest) -> Vec<u8> {
    match parsed {
        ParsedManifest::Image(m) => serde_json::to_vec(m),
        ParsedManifest::Index(i) => serde_json::to_vec(i),
    }
    .unwrap_or_else(|e| panic!("{parsed:?} does not serialise: {e}"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, doc)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    let Ok(parsed) = ParsedManifest::from_slice(doc, content_type) else {
        return;
    };
    match &parsed {
        ParsedManifest::Image(m) => {
            let _ = m.is_image();
        }
        ParsedManifest::Index(i) => {
            let _ = i.matching(&Platform::host());
            let _ = i.platforms();
        }
    }

    let bytes = reserialise(&parsed);
    let text = String::from_utf8_lossy(&bytes);
    let again = ParsedManifest::from_slice(&bytes, content_type).unwrap_or_else(|e| {
        panic!("re-serialised document served as {content_type:?} does not decode: {e}\n{text}")
    });
    assert_eq!(
        again, parsed,
        "re-serialised document served as {content_type:?} differs\n{text}"
    );

    let own = parsed.media_type().to_string();
    let own_again = ParsedManifest::from_slice(&bytes, Some(&own)).unwrap_or_else(|e| {
        panic!("re-serialised document served as its own type {own:?} does not decode: {e}\n{text}")
    });
    assert_eq!(
        own_again, parsed,
        "re-serialised document served as {own:?} differs\n{text}"
    );
});
