//! The fan-out to subscribers: news goes into each interested subscriber's outbox
//! ([`super::subscribers`]) at once, in one transaction; this task empties the outboxes at
//! `[subscribers] rate` messages a second, at most one message per subscriber per `min_gap`
//! (what came in between is folded into that one message), through the first email or SMS
//! sink. A row leaves the outbox only once its message was accepted, so a crash resumes
//! where it stopped; only the messages in flight at the crash (at most [`IN_FLIGHT`]) may
//! go twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::deliver::{self, Recipient};
use super::links::Purpose;
use super::message::Addressing;
use super::payload::{self, Context, Notice};
use super::subscribers::{Pending, Store, Subscriber};
use super::{Shared, mask};
use crate::config::{Config, Notify, Sink};

/// One hand-over's outcome: subscriber, outbox rows, result, channel.
type Done = (i64, Vec<i64>, Result<(), String>, String);

/// Messages being handed over at once.
pub const IN_FLIGHT: usize = 8;

/// How long an unsubscribe link works: a year (a link in an old message should still work).
pub const UNSUBSCRIBE_LIFETIME: chrono::Duration = chrono::Duration::days(365);

/// How long a confirmation link works.
pub const CONFIRM_LIFETIME: chrono::Duration = chrono::Duration::hours(48);

/// The sink a channel ("email", "sms") sends through: the first of its type.
pub fn sink_for<'a>(config: &'a Config, channel: &str) -> Option<&'a Notify> {
    config.notify.iter().find(|n| {
        matches!(
            (&n.sink, channel),
            (Sink::Email(_), "email") | (Sink::Sms(_), "sms")
        )
    })
}

/// True when subscribers hear of `n`: incidents always, maintenance announcements always,
/// state changes when `automatic`.
pub fn wanted(n: &Notice, automatic: bool) -> bool {
    use crate::events::Kind;
    if n.text.is_some() {
        return true;
    }
    match n.event.kind {
        Kind::Incident => true,
        Kind::Down | Kind::Up | Kind::Impacted | Kind::Maintenance | Kind::Degraded => automatic,
        // Drills are for staff; safety rules for operators.
        Kind::Override | Kind::Guard | Kind::Test | Kind::Drill | Kind::Safety => false,
    }
}

/// One message for everything waiting for a subscriber: the notice itself when there is
/// one, else a digest whose headline lists them, newest last.
pub fn fold(pending: &[Pending]) -> Option<Notice> {
    let last = pending.last()?;
    if pending.len() == 1 {
        return Some(last.notice.clone());
    }
    let heads: Vec<String> = pending
        .iter()
        .map(|p| payload::headline(&p.notice))
        .collect();
    let mut n = last.notice.clone();
    n.text = Some(format!("{} updates: {}", heads.len(), heads.join("; ")));
    Some(n)
}

impl Shared {
    /// The links and footer of a message to `s`.
    pub(super) fn subscriber_addressing(&self, config: &Config, s: &Subscriber) -> Addressing {
        let base = Context::of(config).status_page;
        let unsubscribe_url = match (&self.signer, base) {
            (Some(signer), Some(base)) => Some(format!(
                "{base}unsubscribe/{}",
                signer.sign(
                    Purpose::Unsubscribe,
                    &format!("{}:{}", s.channel, s.address),
                    Utc::now() + UNSUBSCRIBE_LIFETIME
                )
            )),
            _ => None,
        };
        let what = if s.services.is_empty() {
            "everything".to_string()
        } else {
            s.services
                .iter()
                .map(|id| {
                    config
                        .services
                        .get(id)
                        .map_or(id.clone(), |x| x.name.clone())
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        Addressing {
            unsubscribe_url,
            why: format!(
                "You asked for news of {what} from the {} status page.",
                config.page.title
            ),
            ..Addressing::default()
        }
    }
}

/// Empties the outboxes until `cancel`; woken by `wake` when news is queued.
pub(super) async fn run(shared: Arc<Shared>, store: Arc<Store>, wake: Arc<tokio::sync::Notify>) {
    // Subscribers whose last try failed: when to try again, and tries so far.
    let mut backoff: HashMap<i64, (DateTime<Utc>, u32)> = HashMap::new();
    // One SMTP client per email sink for the whole fan-out: its connections are reused
    // from message to message (rebuilt when the sink changes).
    let mut smtp: Option<(crate::config::Email, deliver::Smtp)> = None;
    let cancel = shared.cancel.clone();
    loop {
        let config = shared.current();
        let Some(sc) = config.subscribers.clone() else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                _ = cancel.cancelled() => return,
            }
        };
        let now = Utc::now();
        let batch = usize::try_from(sc.rate).unwrap_or(1).max(1);
        let st = store.clone();
        let gap = sc.min_gap;
        let due = match tokio::task::spawn_blocking(move || st.due(now, gap, batch * 4)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                warn!(error = %e, "subscribers: cannot read the outbox");
                Vec::new()
            }
            Err(e) => {
                warn!(error = %e, "subscribers: cannot read the outbox");
                Vec::new()
            }
        };
        let due: Vec<(Subscriber, Vec<Pending>)> = due
            .into_iter()
            .filter(|(s, _)| backoff.get(&s.id).is_none_or(|(t, _)| *t <= now))
            .take(batch)
            .collect();
        if due.is_empty() {
            let st = store.clone();
            let next = tokio::task::spawn_blocking(move || st.next_due(gap))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let wait = next
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(2))
                .clamp(Duration::from_millis(50), Duration::from_secs(2));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
                _ = cancel.cancelled() => return,
            }
            continue;
        }
        // Paced at `rate`: one message every 1/rate s, at most IN_FLIGHT at once.
        let pace = Duration::from_secs(1) / sc.rate.max(1);
        let mut tick = tokio::time::interval(pace);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut set: JoinSet<Done> = JoinSet::new();
        let ctx = shared.context();
        let base = shared.base();
        for (sub, pending) in due {
            let Some(sink) = sink_for(&config, &sub.channel).cloned() else {
                continue;
            };
            let Some(notice) = fold(&pending) else {
                continue;
            };
            let rows: Vec<i64> = pending.iter().map(|p| p.id).collect();
            let mut addressing = shared.subscriber_addressing(&config, &sub);
            addressing.message_id = Some(format!(
                "<detour.s{}.r{}-{}@{}>",
                sub.id,
                rows.first().copied().unwrap_or(0),
                rows.last().copied().unwrap_or(0),
                message_host(&config)
            ));
            let r = Recipient {
                to: sub.address.clone(),
                addressing,
            };
            // Until the next slot: record every hand-over as soon as it ends, so that a crash
            // finds at most the ones truly in flight unrecorded.
            let mut stop = false;
            loop {
                tokio::select! {
                    biased;
                    Some(done) = set.join_next(), if !set.is_empty() => {
                        if let Ok(done) = done {
                            let attempts = sink_attempts(&config, &done.3);
                            finish(&store, &mut backoff, done, &attempts).await;
                        }
                    }
                    _ = tick.tick(), if set.len() < IN_FLIGHT => break,
                    _ = cancel.cancelled() => {
                        stop = true;
                        break;
                    }
                }
            }
            if stop {
                break;
            }
            let client = shared.client.clone();
            let (ctx, base) = (ctx.clone(), base.clone());
            let id = sub.id;
            let channel = sub.channel.clone();
            let transport = match &sink.sink {
                Sink::Email(e) => {
                    if smtp.as_ref().is_none_or(|(c, _)| c != e) {
                        smtp = deliver::smtp(e).ok().map(|t| (e.clone(), t));
                    }
                    smtp.as_ref().map(|(c, t)| (c.clone(), t.clone()))
                }
                _ => None,
            };
            set.spawn(async move {
                let result = match &transport {
                    Some((cfg, t)) => {
                        match tokio::time::timeout(
                            sink.timeout,
                            deliver::email_via(t, cfg, &r, &notice, &ctx),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err("timed out".to_string()),
                        }
                    }
                    None => {
                        deliver::attempt(
                            &client,
                            &sink.sink,
                            &base,
                            &notice,
                            &ctx,
                            sink.timeout,
                            Some(&r),
                        )
                        .await
                    }
                };
                if let Err(e) = &result {
                    warn!(to = %mask(&r.to), channel, error = %e, "subscriber message not delivered");
                }
                (id, rows, result, channel)
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok(done) = done {
                let attempts = sink_attempts(&config, &done.3);
                finish(&store, &mut backoff, done, &attempts).await;
            }
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}

/// The host part of Message-IDs: the status page's host, else "detour.invalid".
fn message_host(config: &Config) -> String {
    config
        .page
        .url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "detour.invalid".to_string())
}

fn sink_attempts(config: &Config, channel: &str) -> u32 {
    sink_for(config, channel).map_or(1, |s| s.attempts)
}

/// Records one hand-over: sent (the rows leave the outbox, the gap starts), or failed (tried
/// again after a backoff, dropped after the sink's `attempts`).
async fn finish(
    store: &Arc<Store>,
    backoff: &mut HashMap<i64, (DateTime<Utc>, u32)>,
    (id, rows, result, channel): Done,
    attempts: &u32,
) {
    let st = store.clone();
    match result {
        Ok(()) => {
            backoff.remove(&id);
            metrics::counter!("detour_subscriber_messages_total", "channel" => channel, "result" => "delivered").increment(1);
            let now = Utc::now();
            match tokio::task::spawn_blocking(move || st.sent(id, &rows, now)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "subscribers: cannot record a delivery"),
                Err(e) => warn!(error = %e, "subscribers: cannot record a delivery"),
            }
        }
        Err(_) => {
            let tries = backoff.get(&id).map_or(0, |(_, n)| *n) + 1;
            if tries >= *attempts {
                backoff.remove(&id);
                metrics::counter!("detour_subscriber_messages_total", "channel" => channel, "result" => "failed").increment(1);
                info!(subscriber = id, tries, "subscriber message given up");
                match tokio::task::spawn_blocking(move || st.drop_rows(&rows)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "subscribers: cannot drop a failed message"),
                    Err(e) => warn!(error = %e, "subscribers: cannot drop a failed message"),
                }
            } else {
                metrics::counter!("detour_subscriber_messages_total", "channel" => channel, "result" => "retried").increment(1);
                let wait = super::backoff(tries, Duration::from_secs(300));
                let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                backoff.insert(id, (at, tries));
            }
        }
    }
}
