//! Any text as what operators and clients send: an `overrides.toml` edited by hand, an
//! `until` ("2h" or RFC 3339), a duration, a reason to check and escape. None may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = detour::overrides::parse(text);
    let _ = detour::admin::parse_until(text, chrono::Utc::now());
    let _ = detour::config::duration::parse(text);
    let escaped = detour::text::escape(text);
    assert!(!escaped.chars().any(detour::text::is_unsafe));
    let _ = detour::text::check_text("reason", text);
    let _ = detour::text::check_name("by", text);
});
