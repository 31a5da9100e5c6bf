//! The phone announcement end to end, through the real `detour` binary on loopback:
//! `/announcement.txt` and `/announcement.wav` while a real backend is killed and restarted
//! and an incident is opened and resolved, `detour announce` printing the same words, and the
//! 404 (logged once) where espeak-ng is not installed.

mod common;
#[path = "common/page.rs"]
mod page;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::backend::HttpBackend;
use common::binary::{Daemon, cli};
use common::{BARE_ZONE, Fixture, page_config};
use page::{Resp, get, request};

const FAST: &str =
    "interval = \"200ms\", timeout = \"150ms\", confirm_interval = \"50ms\", rise = 2, fall = 2";

/// The sign-on portal follows `backend`; Forms sits behind it; Tax records is unchecked. The
/// admin API has a fixed (free) port, so client commands can find it.
fn config(backend: SocketAddr) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let text = page_config(
        "",
        &format!(
            r#"
[page]
title = "Example Realty"
timezone = "America/New_York"

[services.sso]
name = "MLS Sign-On"
check = {{ type = "http", url = "http://{backend}/", {FAST} }}

[services.forms]
name = "Forms"
url = "https://forms.example.net/login"
depends_on = ["sso"]

[services.tax]
name = "Tax records"
"#
        ),
    );
    let fixed = text.replace(
        "admin_listen = \"127.0.0.1:0\"",
        &format!("admin_listen = \"127.0.0.1:{port}\""),
    );
    assert_ne!(fixed, text);
    fixed
}

/// A detour child serving `config`; its page address.
fn start(fixture: &Fixture, env: &[(&str, &str)]) -> (Daemon, SocketAddr) {
    let mut d = Daemon::start_with_env(&fixture.config_path(), env);
    let page = d.addr_after("listening for the page on ");
    d.wait_for("ready");
    (d, page)
}

async fn txt(page: SocketAddr) -> Resp {
    let r = get(page, "127.0.0.1", "/announcement.txt").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    r
}

async fn wav(page: SocketAddr) -> Resp {
    let r = get(page, "127.0.0.1", "/announcement.wav").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("audio/wav"));
    r
}

/// Polls `/announcement.txt` until `ok` holds; returns that body.
async fn txt_until(page: SocketAddr, what: &str, ok: impl Fn(&str) -> bool) -> Resp {
    let start = Instant::now();
    loop {
        let r = txt(page).await;
        if ok(&r.body) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: still {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks a RIFF/WAVE header: PCM, mono, 16-bit, 8 kHz; returns the seconds of audio.
fn telephone_wav(bytes: &[u8]) -> f64 {
    assert!(bytes.len() > 44, "{} bytes", bytes.len());
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    assert_eq!(&bytes[12..16], b"fmt ");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), 1, "mono");
    assert_eq!(u32_at(24), 8_000, "8 kHz");
    assert_eq!(u16_at(34), 16, "16-bit");
    assert_eq!(&bytes[36..40], b"data");
    let data = u32_at(40) as usize;
    assert_eq!(data, bytes.len() - 44, "data length");
    let samples: Vec<i16> = bytes[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert!(samples.iter().any(|s| s.unsigned_abs() > 1_000), "silence");
    samples.len() as f64 / 8_000.0
}

/// How many times the daemon has spoken an announcement so far.
fn spoken(d: &mut Daemon) -> usize {
    // Lines come through a pipe and a thread: give the latest a moment.
    std::thread::sleep(Duration::from_millis(300));
    d.log()
        .iter()
        .filter(|l| l.contains("announcement spoken anew"))
        .count()
}

fn announce(config: &Path) -> String {
    let (code, stdout, stderr) = cli(config, &["announce"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
}

/// `t` as the announcement says it in New York: "2:15 PM".
fn clock(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    let ny = t.with_timezone(&chrono_tz::America::New_York);
    detour::announce::clock_words(ny.hour(), ny.minute())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_announcement_follows_the_services_and_its_audio_follows_the_words() {
    let mut backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let f = Fixture::new(&config(backend.addr), &[("example.test.toml", BARE_ZONE)]);
    let (mut d, page) = start(&f, &[]);

    // Everything up: one calm sentence, the same from the CLI.
    let calm = txt_until(page, "all up", |b| !b.is_empty()).await;
    assert_eq!(calm.body, "All systems are working normally.\n");
    assert_eq!(announce(&f.config_path()), calm.body);
    let calm_tag = calm.header("etag").expect("an ETag").to_string();
    let again = request(
        page,
        "GET",
        "127.0.0.1",
        "/announcement.txt",
        &[("If-None-Match", &calm_tag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.bytes.is_empty());

    // Its audio: a telephone WAV, spoken once, then served from the cache.
    let calm_wav = wav(page).await;
    let secs = telephone_wav(&calm_wav.bytes);
    assert!((1.0..6.0).contains(&secs), "{secs} s for one sentence");
    assert_eq!(spoken(&mut d), 1);
    assert_eq!(wav(page).await.bytes, calm_wav.bytes);
    let wav_tag = calm_wav.header("etag").expect("an ETag").to_string();
    let not_again = request(
        page,
        "GET",
        "127.0.0.1",
        "/announcement.wav",
        &[("If-None-Match", &wav_tag)],
    )
    .await;
    assert_eq!(not_again.status, 304);
    assert_eq!(spoken(&mut d), 1, "the same words are not spoken twice");

    // The portal's backend dies: the words say so, since when, and what still works.
    backend.stop();
    let out = txt_until(page, "sso down", |b| b.contains("unavailable")).await;
    let status: serde_json::Value =
        serde_json::from_str(&get(page, "127.0.0.1", "/status.json").await.body).unwrap();
    let since: DateTime<Utc> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "sso")
        .and_then(|s| s["since"].as_str())
        .and_then(|s| s.parse().ok())
        .expect("sso's since");
    assert_eq!(
        out.body,
        format!(
            "MLS Sign-On has been unavailable since {} Eastern. Forms still works if you go to it \
             directly, at forms.example.net; Tax records is working normally. We will update \
             this message as we learn more.\n",
            clock(since)
        )
    );
    assert_ne!(out.header("etag"), Some(calm_tag.as_str()));
    assert_eq!(announce(&f.config_path()), out.body);

    // An update from the team is read out.
    let (code, id, err) = cli(
        &f.config_path(),
        &[
            "incident",
            "open",
            "--service",
            "sso",
            "The vendor is restoring the sign-on database",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    let news = txt_until(page, "the update", |b| b.contains("latest update")).await;
    let status: serde_json::Value =
        serde_json::from_str(&get(page, "127.0.0.1", "/status.json").await.body).unwrap();
    let posted: DateTime<Utc> = status["incidents"][0]["updates"][0]["at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("the update's time");
    assert!(
        news.body.contains(&format!(
            "Eastern. The latest update, at {}: The vendor is restoring the sign-on database. \
             Forms still works",
            clock(posted)
        )),
        "{}",
        news.body
    );
    assert_eq!(announce(&f.config_path()), news.body);

    // New words, new audio (longer: more is said); then the cache again.
    let news_wav = wav(page).await;
    let news_secs = telephone_wav(&news_wav.bytes);
    assert_ne!(news_wav.bytes, calm_wav.bytes);
    assert_ne!(news_wav.header("etag"), Some(wav_tag.as_str()));
    assert!(
        news_secs > secs * 3.0 && news_secs < 40.0,
        "{news_secs} s against {secs} s"
    );
    let made = spoken(&mut d);
    assert!(made >= 2, "{made}");
    assert_eq!(wav(page).await.bytes, news_wav.bytes);
    assert_eq!(spoken(&mut d), made, "served from the cache");

    // Back up and resolved: the calm sentence and its audio again.
    backend.restart().await;
    let (code, _, err) = cli(&f.config_path(), &["incident", "resolve", &id]);
    assert_eq!(code, 0, "{err}");
    txt_until(page, "all up again", |b| {
        b == "All systems are working normally.\n"
    })
    .await;
    let back = wav(page).await;
    assert_eq!(back.bytes, calm_wav.bytes, "the same words, the same audio");
    assert_eq!(back.header("etag"), Some(wav_tag.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_espeak_ng_the_audio_is_a_404_logged_once() {
    let backend = HttpBackend::start("127.0.0.1:0".parse().unwrap()).await;
    let f = Fixture::new(&config(backend.addr), &[("example.test.toml", BARE_ZONE)]);
    // Not running yet: `detour announce` says so, exit 1, like every client command.
    let (code, out, err) = cli(&f.config_path(), &["announce"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("is detour running?"), "{err}");
    // A PATH where espeak-ng is not.
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap().to_string();
    let (mut d, page) = start(&f, &[("PATH", &path)]);
    for _ in 0..3 {
        let r = get(page, "127.0.0.1", "/announcement.wav").await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(r.body.contains("espeak-ng is not installed"), "{}", r.body);
    }
    // The words are still served.
    assert_eq!(txt(page).await.body, "All systems are working normally.\n");
    std::thread::sleep(Duration::from_millis(300));
    let said: Vec<String> = d
        .log()
        .into_iter()
        .filter(|l| l.contains("espeak-ng is not installed"))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("/announcement.wav is not served (404)"),
        "{}",
        said[0]
    );
}
