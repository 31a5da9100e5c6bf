//! The operator console in a real browser: headless Chromium at 360 px (a phone) signs in,
//! opens an incident from a template with the preview (the button, then the live preview's
//! script), posts it and finds it on the outage page; a communicator's override is refused;
//! a forged cross-site POST changes nothing; five wrong passwords lock an account. No page
//! scrolls sideways. Screenshots go to `target/browser/console-*.png`.

#[path = "common/chromium.rs"]
mod chromium;
mod common;
#[path = "common/console.rs"]
mod console;
#[path = "common/page.rs"]
mod page;

use chromium::{Browser, Tab, chromium};
use common::Server;
use console::*;
use detour::console::accounts::Role;
use detour::overrides::Forced;
use page::{addr_of, artifact_dir, page_zone};

/// A form field set as a person types it (so `input` listeners see it).
fn typed(selector: &str, value: &str) -> String {
    format!(
        "(() => {{ const e = document.querySelector({s}); e.value = {v}; e.dispatchEvent(new Event('input', {{ bubbles: true }})); }})();",
        s = serde_json::to_string(selector).unwrap(),
        v = serde_json::to_string(value).unwrap()
    )
}

/// A click on the button `selector`.
fn click(selector: &str) -> String {
    format!(
        "document.querySelector({}).click();",
        serde_json::to_string(selector).unwrap()
    )
}

/// Asserts nothing on the page sticks out sideways at the tab's width, and saves a
/// screenshot as `target/browser/console-{name}.png`.
fn check_and_shoot(b: &mut Browser, t: &Tab, name: &str) {
    let (over, inner, scroll) = t.overflow(b);
    assert!(
        over.is_empty() && scroll <= inner,
        "{name}: wider than the {inner} px screen ({scroll} px): {over:?}"
    );
    t.shot(
        b,
        &artifact_dir("browser").join(format!("console-{name}.png")),
    );
}

fn sign_in(b: &mut Browser, t: &Tab, base: &str, name: &str, password: &str) -> i64 {
    assert_eq!(t.goto(b, &format!("{base}/console/login")), 200);
    t.eval(b, &typed("#name", name));
    t.eval(b, &typed("#password", password));
    t.act(b, &click("button[type=submit]"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_works_in_a_browser_on_a_phone() {
    let _ = chromium();
    let s = Server::start(&console_config(""), &[("example.test.toml", &page_zone())]).await;
    let state = s.fixture.dir.path().join("state");
    add_account(&state, "dana", Role::Operator);
    add_account(&state, "cal", Role::Communicator);
    add_account(&state, "sam", Role::Communicator);
    // The MLS and its standby are down: mls.example.test answers the outage page.
    common::force(&s, "mls", Some(Forced::Down)).await;
    common::force(&s, "mls_dr", Some(Forced::Down)).await;
    let admin_port = addr_of(s.running.admin_addr()).port();
    let page_port = addr_of(&s.running.page_addrs()[0]).port();
    let base = format!("http://console.example.test:{admin_port}");
    let outage = format!("http://mls.example.test:{page_port}/");
    let snapshots = s.running.snapshots().clone();
    let dir = artifact_dir("browser");

    tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(&dir.join("console-chromium.log"));
        let b = &mut b;
        let t = b.tab(360);

        // Signed out, the console sends you to its sign-in form.
        assert_eq!(t.goto(b, &format!("{base}/console/")), 200);
        assert_eq!(t.path(b), "/console/login");
        check_and_shoot(b, &t, "login-360");

        // Signing in leads to the dashboard.
        assert_eq!(sign_in(b, &t, &base, "cal", PASSWORD), 200);
        assert_eq!(t.path(b), "/console/");
        let text = t.text(b);
        for part in ["cal (communicator)", "2 services have a problem", "MLS Sign-On", "Outage page"] {
            assert!(text.contains(part), "{part:?} missing from the dashboard:\n{text}");
        }
        check_and_shoot(b, &t, "dashboard-360");

        // A template fills the incident form; the Preview button shows the outage page as it
        // would look, without posting.
        assert_eq!(t.act(b, &click("main a[href='/console/incidents/new']")), 200);
        assert_eq!(t.act(b, "[...document.querySelectorAll('.templates a')].find(a => a.textContent === 'Sign-on outage').click();"), 200);
        assert_eq!(t.path(b), "/console/incidents/new?template=0");
        let message = "The MLS is down; the vendor expects it back by 15:00. Forms work: use the link below.";
        t.eval(b, &typed("#message", message));
        assert_eq!(t.act(b, &click("button[value=preview]")), 200);
        let srcdoc = t.eval(b, "document.getElementById('preview-frame').srcdoc");
        assert!(srcdoc.as_str().unwrap().contains(message), "the preview shows the message");
        let shown = t.eval(b, "document.getElementById('preview').hidden");
        assert_eq!(shown, false);
        assert!(t.text(b).contains("the outage page of mls.example.test"));
        assert_eq!(snapshots.load().incidents.list.len(), 0, "a preview posts nothing");
        check_and_shoot(b, &t, "incident-preview-360");

        // The live preview follows typing (the script is optional; here it runs).
        t.eval(b, &typed("#message", "Typing a newer word: pineapple."));
        let live = t.eval(
            b,
            "new Promise(ok => { const f = document.getElementById('preview-frame'); const t0 = Date.now(); \
             (function wait() { if (f.srcdoc.includes('pineapple')) ok(document.getElementById('preview-what').textContent); \
             else if (Date.now() - t0 > 10000) ok('timed out'); else setTimeout(wait, 100); })(); })",
        );
        assert!(live.as_str().unwrap().starts_with("Live preview"), "{live}");
        assert_eq!(snapshots.load().incidents.list.len(), 0, "typing posts nothing");

        // Posting it: the incident's page, then the outage page shows it.
        t.eval(b, &typed("#message", message));
        assert_eq!(t.act(b, &click("button[value=open]")), 200);
        assert!(t.path(b).starts_with("/console/incidents/"), "{}", t.path(b));
        assert!(t.text(b).contains("opened; it is on the page now"));
        check_and_shoot(b, &t, "incident-360");
        assert_eq!(snapshots.load().incidents.list.len(), 1);
        let t2 = b.tab(360);
        assert_eq!(t2.goto(b, &outage), 503);
        assert!(t2.text(b).contains(message), "the outage page shows the incident");
        check_and_shoot(b, &t2, "outage-with-incident-360");

        // A communicator sees DNS but cannot change it: the form is not offered, and posting
        // one anyway (with the session's own token) is refused.
        assert_eq!(t.goto(b, &format!("{base}/console/dns")), 200);
        assert!(t.text(b).contains("only operators change what DNS answers"));
        let forms = t.eval(b, "document.querySelectorAll('form[action=\"/console/dns/override\"]').length");
        assert_eq!(forms, 0);
        check_and_shoot(b, &t, "dns-communicator-360");
        let forged = "const f = document.createElement('form'); f.method = 'post'; f.action = '/console/dns/override'; \
            for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value], ['service', 'mls'], ['state', 'up'], ['reason', 'no']]) \
            { const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); } \
            document.body.appendChild(f); f.submit();";
        assert_eq!(t.act(b, forged), 403);
        assert!(t.text(b).contains("Operators only"));
        assert_eq!(
            snapshots.load().health.overrides["mls"].state,
            Forced::Down,
            "the override is as it was"
        );

        // The same form without the CSRF token is refused too.
        assert_eq!(t.goto(b, &format!("{base}/console/incidents/new")), 200);
        let no_token = "const f = document.querySelector('form[data-preview]'); f.querySelector('input[name=csrf]').remove(); \
            document.querySelector('#message').value = 'forged'; f.querySelector('input[value=mls]').checked = true; \
            f.querySelector('button[value=open]').click();";
        assert_eq!(t.act(b, no_token), 403);
        assert!(t.text(b).contains("security token"));

        // Another site's page posting to the console (a blank page here: detour's own pages
        // forbid forms to elsewhere): the Strict cookie is not sent, and the origin is not
        // the console's. Nothing changes.
        let t3 = b.tab(360);
        t3.goto(b, "about:blank");
        let cross = format!(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '{base}/console/incidents/new'; \
             for (const [k, v] of [['service', 'mls'], ['message', 'cross-site'], ['do', 'open']]) \
             {{ const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }} \
             document.body.appendChild(f); f.submit();"
        );
        let code = t3.act(b, &cross);
        assert!(code == 401 || code == 403, "refused: {code}");
        assert_eq!(snapshots.load().incidents.list.len(), 1, "nothing posted");

        // Five wrong passwords lock the account: the right one is refused afterwards.
        let t4 = b.private_tab(360);
        for _ in 0..5 {
            assert_eq!(sign_in(b, &t4, &base, "sam", "a wrong password entirely"), 401);
            assert!(t4.text(b).contains("Wrong name or password."));
        }
        assert_eq!(sign_in(b, &t4, &base, "sam", PASSWORD), 429);
        assert!(t4.text(b).contains("locked for"));
        check_and_shoot(b, &t4, "locked-360");

        // The operator's view: sign out, sign in as dana, the DNS forms are there.
        assert_eq!(t.goto(b, &format!("{base}/console/")), 200);
        assert_eq!(t.act(b, &click("header form button")), 200);
        assert_eq!(t.path(b), "/console/login");
        assert_eq!(sign_in(b, &t, &base, "dana", PASSWORD), 200);
        assert_eq!(t.goto(b, &format!("{base}/console/dns")), 200);
        check_and_shoot(b, &t, "dns-operator-360");
        assert_eq!(t.goto(b, &format!("{base}/console/audit")), 200);
        assert!(t.text(b).contains("incident.open"));
        check_and_shoot(b, &t, "audit-360");
        let wide = b.tab(1280);
        assert_eq!(wide.goto(b, &format!("{base}/console/")), 200);
        check_and_shoot(b, &wide, "dashboard-1280");
    })
    .await
    .unwrap();
}
