//! The console's accounts in a cluster: `detour user` writes them to etcd under the
//! cluster's prefix, and every instance signs people in with them (a real etcd, two detours
//! sharing it); a changed password ends sessions on the other instance too.
#![cfg(feature = "cluster")]

mod common;
#[path = "common/console.rs"]
mod console;
#[path = "common/page.rs"]
mod page;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::etcd::Etcd;
use console::*;

fn config(instance: &str, endpoints: &[String]) -> String {
    let etcd: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    common::page_config(
        "",
        &format!(
            r#"
[services.mls]
name = "MLS"

[services.mls_dr]
name = "MLS (disaster-recovery site)"

[cluster]
instance = "{instance}"
etcd = [{}]
prefix = "/detour/console-test/"
lease_ttl = "2s"
"#,
            etcd.join(", ")
        ),
    )
}

/// `detour user ARGS` with `stdin`, against `config`: (exit code, stdout, stderr).
fn user(config: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_detour"))
        .arg("user")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Signs in until it works (the instance's mirror follows etcd's watch), for 10 s at most.
async fn sign_in_eventually(a: &mut Agent, name: &str, password: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = a.sign_in(name, password).await.status;
        if status == 303 || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_live_in_etcd_and_every_instance_uses_them() {
    let etcd = Etcd::start(1);
    let endpoints = etcd.endpoints();
    let zone = page::page_zone();
    let a = Server::start(&config("a", &endpoints), &[("example.test.toml", &zone)]).await;
    let b = Server::start(&config("b", &endpoints), &[("example.test.toml", &zone)]).await;

    let (code, out, err) = user(
        &a.fixture.config_path(),
        &["add", "dana", "--role", "operator"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("account dana added"), "{out}");
    assert!(
        !a.fixture.dir.path().join("state/accounts.json").exists(),
        "in etcd, not in the state folder"
    );
    // Listed through etcd from the other instance's config.
    let (code, out, err) = user(&b.fixture.config_path(), &["list", "--json"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"name\":\"dana\""), "{out}");

    // Instance b signs dana in; what she does is shared and audited with her name.
    let mut on_b = Agent::new(b.running.admin_addr());
    assert_eq!(sign_in_eventually(&mut on_b, "dana", PASSWORD).await, 303);
    let _ = on_b.get("/console/incidents/new").await;
    let r = on_b
        .post(
            "/console/incidents/new",
            &[
                ("service", "mls"),
                ("message", "Shared news."),
                ("do", "open"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mut on_a = Agent::new(a.running.admin_addr());
    assert_eq!(sign_in_eventually(&mut on_a, "dana", PASSWORD).await, 303);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit = on_a.get("/console/audit").await;
        if audit.body.contains("incident.open") {
            assert!(audit.body.contains("<strong>dana</strong>"));
            break;
        }
        assert!(Instant::now() < deadline, "the audit entry reached etcd");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A new password, set through instance a's config, ends the session on b.
    let (code, _, err) = user(
        &a.fixture.config_path(),
        &["passwd", "dana"],
        "a different long passphrase\n",
    );
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while on_b.get("/console/").await.status == 200 {
        assert!(Instant::now() < deadline, "b's session ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut again = Agent::new(b.running.admin_addr());
    assert_eq!(
        sign_in_eventually(&mut again, "dana", "a different long passphrase").await,
        303
    );
    let (code, _, err) = user(&a.fixture.config_path(), &["remove", "ghost"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no account"), "{err}");
    drop(etcd);
}
