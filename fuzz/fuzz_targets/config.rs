//! Any text as `detour.toml` (the first half) and as a zone file (the second half): loading
//! must return a Config or file:line:col errors, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (config, zone) = text.split_at(mid);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("zones/z.toml"), zone).unwrap();
    // zones_dir defaults to "zones" beside the config.
    std::fs::write(dir.path().join("detour.toml"), config).unwrap();
    if let Err(errors) = detour::config::Config::load(&dir.path().join("detour.toml")) {
        assert!(!errors.is_empty());
    }
});
