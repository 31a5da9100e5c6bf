//! The announcement as telephone audio: espeak-ng (a Debian package) speaks the text into a
//! WAV file, detour resamples it to 8,000 Hz 16-bit mono (what Asterisk plays without
//! transcoding, and all a telephone line carries), and keeps it until the text changes.
//!
//! espeak-ng runs on a blocking thread, one at a time, killed when it takes longer than
//! [`TIMEOUT`]. Where it is not installed, nothing is spoken: that is logged once, and looked
//! at again at most once a minute (so installing it needs no restart).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tracing::{info, warn};

/// The program that speaks.
pub const PROGRAM: &str = "espeak-ng";

/// The longest espeak-ng may take for one announcement (it needs well under a second).
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The sample rate served: narrowband telephony.
pub const RATE: u32 = 8_000;

/// How long "not installed" is believed before looking again.
const RECHECK_MISSING: Duration = Duration::from_secs(60);

/// How long a failure is kept before the same text is tried again.
const RETRY_FAILED: Duration = Duration::from_secs(30);

/// The voice and pace: American English, a little slower than espeak-ng's 175 words a
/// minute, for a phone line.
const VOICE: &[&str] = &["-v", "en-us", "-s", "160"];

/// Why there is no audio.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeechError {
    /// espeak-ng is not installed (or not on `PATH`).
    #[error("espeak-ng is not installed (Debian package espeak-ng)")]
    Missing,
    /// It ran and failed, took too long, or wrote something that is not the expected WAV.
    #[error("{0}")]
    Failed(String),
}

/// The last text spoken (or tried) and the outcome.
struct Done {
    text: String,
    outcome: Result<Bytes, SpeechError>,
    at: Instant,
}

/// What is known about the program and the last text.
#[derive(Default)]
struct Known {
    done: Option<Done>,
    /// When espeak-ng was last found missing.
    missing_at: Option<Instant>,
    /// "Missing" was logged (and not yet "found" since).
    missing_logged: bool,
}

/// Speaks announcements, caching the audio of the last text.
pub struct Speech {
    program: PathBuf,
    timeout: Duration,
    known: Mutex<Known>,
    /// One espeak-ng at a time; requests for the same text wait for the one running.
    turn: tokio::sync::Mutex<()>,
    /// Someone asked for audio: from then on it is made ahead, as the text changes.
    wanted: AtomicBool,
    /// Audio made so far (each a run of espeak-ng that succeeded).
    made: AtomicU64,
}

impl Default for Speech {
    fn default() -> Self {
        Self::new(PROGRAM, TIMEOUT)
    }
}

impl Speech {
    /// Speaks with `program` (looked up on `PATH` when it has no slash), killed after
    /// `timeout`.
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            timeout,
            known: Mutex::new(Known::default()),
            turn: tokio::sync::Mutex::new(()),
            wanted: AtomicBool::new(false),
            made: AtomicU64::new(0),
        }
    }

    /// True once audio has been asked for.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Marks audio as wanted (a phone system fetches it), so it is made ahead from now on.
    pub fn want(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    /// How many times audio was made (cache misses that succeeded).
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// The answer already known for `text`, if any.
    fn known_for(&self, text: &str) -> Option<Result<Bytes, SpeechError>> {
        let k = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = k.done.as_ref().filter(|d| d.text == text) {
            match &d.outcome {
                Ok(b) => return Some(Ok(b.clone())),
                Err(SpeechError::Failed(_)) if d.at.elapsed() < RETRY_FAILED => {
                    return Some(d.outcome.clone());
                }
                _ => {}
            }
        }
        k.missing_at
            .filter(|at| at.elapsed() < RECHECK_MISSING)
            .map(|_| Err(SpeechError::Missing))
    }

    /// `text` as an 8 kHz WAV: from the cache when it was the last text spoken, else made
    /// now (on a blocking thread, bounded by the timeout).
    pub async fn wav(&self, text: &str) -> Result<Bytes, SpeechError> {
        if let Some(known) = self.known_for(text) {
            return known;
        }
        let _turn = self.turn.lock().await;
        // Someone else may have made it while this one waited.
        if let Some(known) = self.known_for(text) {
            return known;
        }
        let program = self.program.clone();
        let timeout = self.timeout;
        let owned = text.to_string();
        let outcome =
            match tokio::task::spawn_blocking(move || speak(&program, &owned, timeout)).await {
                Ok(r) => r.map(Bytes::from),
                Err(e) => Err(SpeechError::Failed(format!(
                    "the speaking thread failed: {e}"
                ))),
            };
        self.record(text, &outcome);
        outcome
    }

    /// Keeps `outcome` for `text` and logs what changed.
    fn record(&self, text: &str, outcome: &Result<Bytes, SpeechError>) {
        let mut k = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let result = match outcome {
            Ok(wav) => {
                if k.missing_logged {
                    info!("espeak-ng is installed now: /announcement.wav is served");
                }
                k.missing_at = None;
                k.missing_logged = false;
                self.made.fetch_add(1, Ordering::Relaxed);
                let secs = wav.len().saturating_sub(44) as f64 / f64::from(RATE * 2);
                info!(
                    bytes = wav.len(),
                    "announcement spoken anew: {secs:.1} s of 8 kHz audio"
                );
                "ok"
            }
            Err(SpeechError::Missing) => {
                if !k.missing_logged {
                    warn!(
                        "/announcement.wav is not served (404): {PROGRAM} is not installed \
                         (Debian package espeak-ng); /announcement.txt is. Looked for again \
                         at most once a minute; this is logged once"
                    );
                    k.missing_logged = true;
                }
                k.missing_at = Some(Instant::now());
                "missing"
            }
            Err(SpeechError::Failed(e)) => {
                warn!(
                    "cannot speak the announcement: {e}; /announcement.wav answers 503, \
                     tried again in {} s",
                    RETRY_FAILED.as_secs()
                );
                "failed"
            }
        };
        metrics::counter!("detour_announcement_speech_total", "result" => result).increment(1);
        k.done = Some(Done {
            text: text.to_string(),
            outcome: outcome.clone(),
            at: Instant::now(),
        });
    }
}

/// A private folder for one run of espeak-ng, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("detour-speech-{}-{n}", std::process::id()));
        // A folder left by a process that had this id before: ours now.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            warn!("cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Runs `program` on `text` (blocking), killed after `timeout`; the audio at [`RATE`].
fn speak(program: &Path, text: &str, timeout: Duration) -> Result<Vec<u8>, SpeechError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| SpeechError::Failed(format!("{what}: {e}"));
    let scratch = Scratch::new().map_err(|e| failed("cannot make a scratch folder", &e))?;
    let input = scratch.0.join("announcement.txt");
    let output = scratch.0.join("announcement.wav");
    let errors = scratch.0.join("stderr.txt");
    std::fs::write(&input, for_speech(text)).map_err(|e| failed("cannot write the text", &e))?;
    let stderr = std::fs::File::create(&errors).map_err(|e| failed("cannot write", &e))?;
    let mut child = Command::new(program)
        .args(VOICE)
        // UTF-8 text from a file: nothing in it can pass for an option.
        .args(["-b", "1", "-f"])
        .arg(&input)
        .arg("-w")
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SpeechError::Missing,
            _ => failed(&format!("cannot run {}", program.display()), &e),
        })?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                // Killed and reaped: no process is left behind.
                let killed = child.kill().and_then(|()| child.wait());
                return Err(SpeechError::Failed(format!(
                    "{} took longer than {} s and was stopped{}",
                    program.display(),
                    timeout.as_secs_f64(),
                    killed.err().map_or(String::new(), |e| format!(" ({e})"))
                )));
            }
            Err(e) => return Err(failed("cannot wait for espeak-ng", &e)),
        }
    };
    if !status.success() {
        let mut said = String::new();
        if let Ok(f) = std::fs::File::open(&errors) {
            // A line or two is all it says; a bound all the same.
            let _read = f.take(2_000).read_to_string(&mut said);
        }
        return Err(SpeechError::Failed(format!(
            "{} failed ({status}): {}",
            program.display(),
            crate::text::escape(said.trim())
        )));
    }
    let wav = std::fs::read(&output).map_err(|e| failed("no audio written", &e))?;
    telephone(&wav).map_err(|e| SpeechError::Failed(format!("unexpected audio: {e}")))
}

/// The text as handed to espeak-ng: clock times written so it reads them as people say
/// them ("9:05" is "nine oh five", not "nine zero five"; "8:00 AM" is "eight AM").
pub fn for_speech(text: &str) -> String {
    use std::sync::LazyLock;
    static HOUR_AMPM: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\b(\d{1,2}):00(\s*[AaPp]\.?[Mm]\b)").expect("a valid pattern")
    });
    static HOUR: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\b(\d{1,2}):00\b").expect("a valid pattern"));
    static OH: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\b(\d{1,2}):0(\d)\b").expect("a valid pattern"));
    let t = HOUR_AMPM.replace_all(text, "$1$2");
    let t = HOUR.replace_all(&t, "$1 o'clock");
    OH.replace_all(&t, "$1 oh $2").into_owned()
}

/// Reads a PCM WAV (16-bit, mono) as espeak-ng writes it and returns the same sound as an
/// 8 kHz 16-bit mono WAV.
pub fn telephone(wav: &[u8]) -> Result<Vec<u8>, String> {
    let (rate, samples) = read_pcm16_mono(wav)?;
    Ok(write_wav(RATE, &resample(&samples, rate, RATE)))
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The sample rate and samples of a 16-bit mono PCM WAV. A data chunk whose length runs past
/// the end (as written to a pipe) ends with the file.
pub fn read_pcm16_mono(b: &[u8]) -> Result<(u32, Vec<i16>), String> {
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32_at(b, at + 4).ok_or("truncated chunk")? as usize;
        let body = at + 8;
        if id == b"fmt " {
            let tag = u16_at(b, body).ok_or("truncated fmt")?;
            let channels = u16_at(b, body + 2).ok_or("truncated fmt")?;
            let rate = u32_at(b, body + 4).ok_or("truncated fmt")?;
            let bits = u16_at(b, body + 14).ok_or("truncated fmt")?;
            if tag != 1 || channels != 1 || bits != 16 || rate == 0 {
                return Err(format!(
                    "format {tag}, {channels} channel(s), {bits} bits: only 16-bit mono PCM is read"
                ));
            }
            format = Some(rate);
        } else if id == b"data" {
            let rate = format.ok_or("data before fmt")?;
            let end = body.saturating_add(len).min(b.len());
            let samples = b[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok((rate, samples));
        }
        at = body.saturating_add(len).saturating_add(len & 1);
    }
    Err("no data chunk".into())
}

/// A 16-bit mono PCM WAV of `samples` at `rate`.
pub fn write_wav(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Half the width of the resampling filter, in input samples.
const HALF_TAPS: f64 = 16.0;

/// `x` at `from` Hz resampled to `to` Hz: a windowed-sinc (Blackman) low-pass at the
/// telephone band's edge (3.6 kHz for 8 kHz, under its 4 kHz Nyquist), evaluated at each
/// output instant.
pub fn resample(x: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || x.is_empty() {
        return x.to_vec();
    }
    let step = f64::from(from) / f64::from(to);
    // Cycles per input sample: below both Nyquists.
    let cutoff = (0.45 * f64::from(to.min(from))) / f64::from(from);
    let n = (x.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let len = x.len() as isize;
    let mut out = Vec::with_capacity(n);
    for j in 0..n {
        let t = j as f64 * step;
        let centre = t.floor() as isize;
        let (mut acc, mut weight) = (0.0f64, 0.0f64);
        for k in (centre - HALF_TAPS as isize + 1)..=(centre + HALF_TAPS as isize) {
            if k < 0 || k >= len {
                continue;
            }
            let d = t - k as f64;
            let u = d / HALF_TAPS;
            if u.abs() >= 1.0 {
                continue;
            }
            let arg = 2.0 * cutoff * d;
            let sinc = if arg.abs() < 1e-12 {
                1.0
            } else {
                (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg)
            };
            let window = 0.42
                + 0.5 * (std::f64::consts::PI * u).cos()
                + 0.08 * (2.0 * std::f64::consts::PI * u).cos();
            let h = sinc * window;
            acc += f64::from(x[k as usize]) * h;
            weight += h;
        }
        let v = if weight.abs() > 1e-9 {
            acc / weight
        } else {
            0.0
        };
        out.push(v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// The amplitude of `freq` in `x` (one bin of a discrete Fourier transform).
    fn amplitude(x: &[i16], rate: u32, freq: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let a = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate);
            re += f64::from(s) * a.cos();
            im += f64::from(s) * a.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    #[test]
    fn speech_band_tones_pass_and_higher_ones_are_cut() {
        // espeak-ng's rate to the telephone's: a 440 Hz tone keeps its pitch and level...
        let x = tone(440.0, 22_050, 1.0, 10_000.0);
        let y = resample(&x, 22_050, RATE);
        assert_eq!(y.len(), 8_000);
        let inner = &y[100..7_900];
        let a = amplitude(inner, RATE, 440.0);
        assert!((a - 10_000.0).abs() < 300.0, "440 Hz amplitude {a}");
        // ...while 6 kHz, which 8 kHz sampling would fold onto 2 kHz, is filtered out.
        let x = tone(6_000.0, 22_050, 1.0, 10_000.0);
        let y = resample(&x, 22_050, RATE);
        let r = rms(&y[100..7_900]);
        assert!(
            r < 200.0,
            "6 kHz left at RMS {r} (a pass-through would be ~7,000)"
        );
        assert!(amplitude(&y[100..7_900], RATE, 2_000.0) < 200.0);
    }

    #[test]
    fn wav_files_round_trip() {
        let samples: Vec<i16> = vec![0, 1, -1, i16::MAX, i16::MIN, 1234];
        let wav = write_wav(RATE, &samples);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(wav.len(), 44 + 12);
        assert_eq!(read_pcm16_mono(&wav).unwrap(), (RATE, samples.clone()));
        // A data length that runs past the end (espeak-ng --stdout writes 0x7ffff000).
        let mut piped = wav.clone();
        piped[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        assert_eq!(read_pcm16_mono(&piped).unwrap().1, samples);
        assert!(read_pcm16_mono(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(read_pcm16_mono(b"not a wav at all").is_err());
        let mut stereo = wav;
        stereo[22] = 2;
        assert!(read_pcm16_mono(&stereo).unwrap_err().contains("2 channel"));
    }

    #[test]
    fn clock_times_are_written_to_be_said() {
        assert_eq!(for_speech("since 9:05 AM"), "since 9 oh 5 AM");
        assert_eq!(for_speech("back by 8:00 AM."), "back by 8 AM.");
        assert_eq!(for_speech("back by 8:00."), "back by 8 o'clock.");
        assert_eq!(for_speech("since 2:15 PM"), "since 2:15 PM");
        assert_eq!(for_speech("call 555-0100"), "call 555-0100");
    }

    #[test]
    fn espeak_ng_speaks_into_a_telephone_wav() {
        // espeak-ng is a Debian package that .ci/run installs.
        let wav = speak(Path::new(PROGRAM), "Testing one two three.", TIMEOUT).unwrap();
        let (rate, samples) = read_pcm16_mono(&wav).unwrap();
        assert_eq!(rate, RATE);
        let secs = samples.len() as f64 / f64::from(RATE);
        assert!((0.5..5.0).contains(&secs), "{secs} s");
        assert!(rms(&samples) > 300.0, "silence");
    }

    #[test]
    fn a_missing_program_is_told_apart_from_a_failing_one() {
        assert_eq!(
            speak(Path::new("/nonexistent/espeak-ng"), "hi", TIMEOUT),
            Err(SpeechError::Missing)
        );
        let e = speak(Path::new("false"), "hi", TIMEOUT).unwrap_err();
        assert!(
            matches!(&e, SpeechError::Failed(m) if m.contains("failed")),
            "{e:?}"
        );
    }

    #[test]
    fn a_program_that_hangs_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = dir.path().join("hang");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ > {}\nexec sleep 30\n",
                pidfile.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let started = Instant::now();
        let e = speak(&script, "hi", Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&e, SpeechError::Failed(m) if m.contains("took longer")),
            "{e:?}"
        );
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "the hung process {pid} is still there"
        );
    }

    #[tokio::test]
    async fn the_same_text_is_spoken_once() {
        let s = Speech::default();
        let a = s.wav("First text.").await.unwrap();
        let b = s.wav("First text.").await.unwrap();
        assert_eq!(s.made(), 1);
        assert_eq!(a, b);
        let c = s.wav("Second, different text.").await.unwrap();
        assert_eq!(s.made(), 2);
        assert_ne!(a, c);
        let missing = Speech::new("/nonexistent/espeak-ng", TIMEOUT);
        assert_eq!(missing.wav("x").await, Err(SpeechError::Missing));
        assert_eq!(missing.wav("y").await, Err(SpeechError::Missing));
    }
}
