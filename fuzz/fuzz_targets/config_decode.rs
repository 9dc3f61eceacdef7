//! Decodes arbitrary bytes as an image config. Decoding may fail but must not panic, and a config
//! that decodes must encode (with `to_vec`, as hull writes configs) to bytes that decode to the
//! same value: nothing read is lost on the way back out.

#![no_main]

use hull_oci::ImageConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = ImageConfig::from_slice(data) else {
        return;
    };
    let _ = config.platform();
    let bytes = config.to_vec();
    let again = ImageConfig::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "re-encoded config does not decode: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(again, config, "re-encoded config decodes to another value");
});
