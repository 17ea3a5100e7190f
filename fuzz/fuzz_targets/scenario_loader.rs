//! Any bytes as a scenario file: the loader must answer with a scenario or an error naming a
//! line of the input, never panic, hang or allocate past the bounds it checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match sim::scenario::parse("fuzz.toml", text) {
        Ok(s) => {
            // What a run would build is within the loader's bounds.
            let pods: u64 = s.services.iter().map(|s| u64::from(s.replicas)).sum();
            assert!(pods <= sim::scenario::MAX_PODS, "{pods} pods passed the loader");
        }
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(e.line <= lines + 1, "error line {} of {lines}", e.line);
            assert!(!e.field.is_empty() && !e.message.is_empty());
        }
    }
});
