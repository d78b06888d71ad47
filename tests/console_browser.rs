//! SPEC section 12 in a real browser: headless Chromium over WebDriver (chromedriver,
//! started here on a free port and stopped by its PID), driven by fantoccini, against the
//! real binary with the token in an `HttpOnly` cookie.
//!
//! The whole story of an admin who logs everyone out from the page, with the keyboard
//! where it matters, plus what a non-admin and a signed-out visitor see. Screenshots of
//! the page and of the dialog go to the target directory; with `UPDATE_SCREENSHOTS=1`
//! also to docs/ (the ones README shows).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages `chromium`,
//! `chromium-driver`; `.ci/run` installs them): missing, this fails under `CI=true` and
//! prints a loud SKIP elsewhere.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::{Gateway, admin, gateway, token, upstream};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const LOGIN_URL: &str = "http://login.example.test/signin?app=demo";
const PAGE: &str = "/_sessiongate/console/";
const WAIT: Duration = Duration::from_secs(15);

/// A chromedriver process, killed (by its PID) on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver and a headless Chromium session, or `None` (after a loud SKIP)
/// where they are not installed; on CI their absence is a failure.
async fn browser() -> Option<(Driver, Client)> {
    if !(Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()) {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{CHROMIUM} and {CHROMEDRIVER} are required on CI (chromium, chromium-driver)");
        }
        eprintln!(
            "\n*** SKIP: chromium or chromedriver is not installed; browser tests did not run ***\n"
        );
        return None;
    }
    let port = support::free_port();
    // A time zone other than the gateway's UTC: the page shows times in the viewer's.
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .env("TZ", "Europe/Berlin")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", driver.port)).is_err() {
        assert!(start.elapsed() < WAIT, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities(driver._profile.path()))
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session starts");
    Some((driver, client))
}

fn capabilities(profile: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let options = json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": args}});
    options.as_object().unwrap().clone()
}

/// The text of element `id` once `ready` holds for it.
async fn text_when(client: &Client, id: &str, ready: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = match client.find(Locator::Id(id)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ready(&text) {
            return text;
        }
        assert!(
            start.elapsed() < WAIT,
            "#{id} never got there; last text {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn script(client: &Client, code: &str) -> Value {
    client
        .execute(code, Vec::new())
        .await
        .expect("the script runs")
}

async fn active_id(client: &Client) -> String {
    let id = script(
        client,
        "return document.activeElement && document.activeElement.id",
    )
    .await;
    id.as_str().unwrap_or_default().to_string()
}

async fn enabled(client: &Client, id: &str) -> bool {
    let element = client.find(Locator::Id(id)).await.unwrap();
    element.is_enabled().await.unwrap()
}

async fn click(client: &Client, id: &str) {
    let element = client.find(Locator::Id(id)).await.unwrap();
    element.click().await.unwrap();
}

async fn type_into(client: &Client, id: &str, text: &str) {
    let element = client.find(Locator::Id(id)).await.unwrap();
    element.send_keys(text).await.unwrap();
}

/// Signs the browser in as `jwt`: the token cookie, `HttpOnly` as in production.
async fn sign_in(client: &Client, jwt: &str) {
    client.delete_all_cookies().await.unwrap();
    // Domain and SameSite spelled out: chromedriver refuses a null domain, and a
    // SameSite=None cookie (the WebDriver default) that is not Secure.
    let cookie = Cookie::parse(format!(
        "sg={jwt}; Domain=127.0.0.1; Path=/; HttpOnly; SameSite=Strict"
    ))
    .expect("a valid cookie");
    client.add_cookie(cookie).await.unwrap();
    client.refresh().await.unwrap();
}

async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&target, &png).unwrap();
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name);
        std::fs::write(docs, &png).unwrap();
    }
    println!("screenshot: {}", target.display());
}

async fn reason_of(gw: &Gateway, jwt: &str) -> (u16, Value) {
    let rsp = gw.get("/app").bearer_auth(jwt).send().await.unwrap();
    (rsp.status().as_u16(), rsp.json().await.unwrap())
}

#[tokio::test]
async fn an_admin_logs_everyone_out_from_the_page() {
    let Some((_driver, client)) = browser().await else {
        return;
    };
    let upstream = upstream().await;
    let gw = gateway(&upstream)
        .set("auth.cookie = \"sg\"")
        .set(&format!("auth.login_url = \"{LOGIN_URL}\""))
        .start()
        .await;
    client.set_window_size(1000, 1500).await.unwrap();
    client.goto(&gw.url("/_sessiongate")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), PAGE);

    signed_out_visitor_is_sent_to_sign_in(&client).await;
    let alice = token().sub("alice").claim("jti", json!("alice-1")).sign();
    non_admin_sees_a_clear_message(&client, &alice).await;
    assert_eq!(reason_of(&gw, &alice).await.0, 200, "alice is active");

    let ada = admin("ada", "acme").claim("jti", json!("ada-page")).sign();
    sign_in(&client, &ada).await;
    let cutoff = text_when(&client, "cutoff", |t| !t.is_empty() && t != "Loading…").await;
    assert_eq!(cutoff, "No one has been signed out of this workspace yet.");
    assert_eq!(
        script(&client, "return document.cookie").await,
        "",
        "HttpOnly: never read"
    );
    let who = text_when(&client, "who", |t| t.contains("ada")).await;
    assert_eq!(who, "Signed in as ada in workspace acme.");

    sign_out_a_user(&client, &gw).await;
    the_dialog_takes_focus_and_gives_it_back(&client).await;
    confirm_logout_all(&client, &gw, &alice, &ada).await;
    after_a_reload_the_page_still_works(&client).await;
    schedule_a_logout_then_cancel_it(&client, &gw, &ada).await;
    edit_the_policy(&client, &gw, &ada).await;
    narrow_screens_do_not_scroll_sideways(&client).await;
    client.close().await.unwrap();
}

async fn signed_out_visitor_is_sent_to_sign_in(client: &Client) {
    let title = text_when(client, "refused-title", |t| !t.is_empty()).await;
    assert_eq!(title, "You are not signed in");
    let text = client.find(Locator::Id("refused-text")).await.unwrap();
    let text = text.text().await.unwrap();
    assert!(text.contains("no sign-in was found"), "{text}");
    let link = client.find(Locator::Id("sign-in")).await.unwrap();
    let href = link.attr("href").await.unwrap();
    let expected = format!("{LOGIN_URL}&return_to=%2F_sessiongate%2Fconsole%2F");
    assert_eq!(href.as_deref(), Some(expected.as_str()));
    assert!(
        !client
            .find(Locator::Id("danger"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    );
}

async fn non_admin_sees_a_clear_message(client: &Client, alice: &str) {
    sign_in(client, alice).await;
    let title = text_when(client, "refused-title", |t| t.contains("admin")).await;
    assert_eq!(title, "You are not an admin of acme");
    let text = client.find(Locator::Id("refused-text")).await.unwrap();
    assert!(
        text.text()
            .await
            .unwrap()
            .starts_with("Only admins of acme")
    );
    for hidden in ["state", "user", "audit", "danger"] {
        let section = client.find(Locator::Id(hidden)).await.unwrap();
        assert!(
            !section.is_displayed().await.unwrap(),
            "#{hidden} is hidden"
        );
    }
    let own = client.find(Locator::Id("own")).await.unwrap();
    assert!(
        own.is_displayed().await.unwrap(),
        "anyone may sign out their other sessions"
    );
}

async fn sign_out_a_user(client: &Client, gw: &Gateway) {
    let bob = token().sub("bob").sign();
    assert_eq!(reason_of(gw, &bob).await.0, 200);
    // An empty name is refused in words, before any call.
    click(client, "user-submit").await;
    let error = text_when(client, "user-error", |t| !t.is_empty()).await;
    assert_eq!(error, "Enter the user name of the user to sign out.");
    assert_eq!(active_id(client).await, "user-name");
    type_into(client, "user-name", "bob").await;
    type_into(client, "user-reason", "left the company").await;
    click(client, "user-submit").await;
    let status = text_when(client, "page-status", |t| !t.is_empty()).await;
    assert!(status.starts_with("bob was signed out"), "{status}");
    let (status, body) = reason_of(gw, &bob).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (401, json!("session_revoked"))
    );
}

async fn the_dialog_takes_focus_and_gives_it_back(client: &Client) {
    let open = client.find(Locator::Id("open-logout-all")).await.unwrap();
    assert_eq!(open.text().await.unwrap(), "Log all users out");
    script(client, "document.getElementById('open-logout-all').focus()").await;
    open.send_keys(&Key::Enter.to_string()).await.unwrap();
    let dialog = client.find(Locator::Id("logout-all-dialog")).await.unwrap();
    assert!(dialog.is_displayed().await.unwrap());
    assert_eq!(
        active_id(client).await,
        "la-reason",
        "focus moves into the dialog"
    );
    // alice's and bob's requests; the admin's calls of the admin API are not counted.
    let activity = text_when(client, "activity", |t| t.starts_with("Active")).await;
    assert_eq!(
        activity,
        "Active in the last hour: about 2 sessions of 2 users. All of them except yours will be signed out."
    );
    client
        .active_element()
        .await
        .unwrap()
        .send_keys(&Key::Escape.to_string())
        .await
        .unwrap();
    let start = Instant::now();
    while dialog.is_displayed().await.unwrap() {
        assert!(start.elapsed() < WAIT, "Escape closes the dialog");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        active_id(client).await,
        "open-logout-all",
        "focus returns to the button"
    );
    let outline = script(
        client,
        "const style = getComputedStyle(document.activeElement); \
         return [style.outlineStyle, style.outlineWidth]",
    )
    .await;
    assert_eq!(
        outline,
        json!(["solid", "3px"]),
        "keyboard focus is visible"
    );
    let unlabelled = script(
        client,
        "return [...document.querySelectorAll('input, select, textarea')] \
         .filter((field) => field.labels.length === 0).map((field) => field.id)",
    )
    .await;
    assert_eq!(unlabelled, json!([]), "every field has a <label for>");
}

async fn confirm_logout_all(client: &Client, gw: &Gateway, alice: &str, ada: &str) {
    client
        .find(Locator::Id("open-logout-all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(client, "activity", |t| t.starts_with("Active")).await;
    type_into(client, "la-reason", "laptop stolen").await;
    let category = client.find(Locator::Id("la-category")).await.unwrap();
    category.select_by_value("security_incident").await.unwrap();
    type_into(client, "la-ticket", "INC-42").await;
    assert!(
        !enabled(client, "la-submit").await,
        "disabled until the name is typed"
    );
    type_into(client, "la-confirm", "acm").await;
    assert!(
        !enabled(client, "la-submit").await,
        "a partial name does not match"
    );
    type_into(client, "la-confirm", "e").await;
    assert!(
        enabled(client, "la-submit").await,
        "enabled once it matches"
    );
    save_screenshot(client, "console-dialog.png").await;
    let submit = client.find(Locator::Id("la-submit")).await.unwrap();
    assert_eq!(submit.text().await.unwrap(), "Log all users out");
    submit.click().await.unwrap();

    let status = text_when(client, "page-status", |t| t.contains("invalidated")).await;
    let state = gw.admin_get("workspaces/acme/sessions", ada).await;
    let cutoff = state["sessions_valid_after"].as_i64().unwrap();
    let shown = script(
        client,
        &format!(
            "return new Date({cutoff} * 1000).toLocaleString(undefined, \
             {{dateStyle: 'medium', timeStyle: 'long'}})"
        ),
    )
    .await;
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("GMT+"), "local time, not UTC: {shown}");
    assert_eq!(
        status,
        format!(
            "All sessions of acme were invalidated. Everyone who signed in before {shown} \
             must sign in again; your session stays signed in."
        )
    );
    let role = client.find(Locator::Id("page-status")).await.unwrap();
    assert_eq!(role.attr("role").await.unwrap().as_deref(), Some("status"));
    assert_eq!(active_id(client).await, "open-logout-all");
    let (code, body) = reason_of(gw, alice).await;
    assert_eq!(
        (code, body["reason"].clone()),
        (401, json!("session_invalidated"))
    );
    assert_eq!(state["preserved_session"], "jti:ada-page");
    text_when(client, "cutoff", |t| t.contains("GMT+")).await;
    script(client, "window.scrollTo(0, 0)").await;
    save_screenshot(client, "console.png").await;
}

async fn after_a_reload_the_page_still_works(client: &Client) {
    client.refresh().await.unwrap();
    let cutoff = text_when(client, "cutoff", |t| !t.is_empty() && t != "Loading…").await;
    assert!(!cutoff.starts_with("No one"), "{cutoff}");
    let by = text_when(client, "cutoff-by", |t| t.contains("ada")).await;
    assert!(by.ends_with("by ada: \"laptop stolen\""), "{by}");
    let preserved = client.find(Locator::Id("preserved")).await.unwrap();
    assert_eq!(
        preserved.text().await.unwrap(),
        "jti:ada-page (this session)"
    );
    let first = client
        .find(Locator::Css("#audit-rows tr:first-child"))
        .await
        .unwrap();
    let cells: Vec<String> = {
        let mut texts = Vec::new();
        for cell in first.find_all(Locator::Css("td")).await.unwrap() {
            texts.push(cell.text().await.unwrap());
        }
        texts
    };
    assert_eq!(
        cells[1..7],
        [
            "Logged all users out",
            "",
            "ada",
            "laptop stolen",
            "Security incident",
            "INC-42"
        ]
    );
    let rows = client
        .find_all(Locator::Css("#audit-rows tr"))
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        2,
        "the logout-all and bob's sign-out, newest first"
    );
}

/// `at` (RFC 3339) as the page shows times: the viewer's time zone.
async fn local_time(client: &Client, at: &str) -> String {
    let code = format!(
        "return new Date(Date.parse('{at}')).toLocaleString(undefined, \
         {{dateStyle: 'medium', timeStyle: 'long'}})"
    );
    script(client, &code).await.as_str().unwrap().to_string()
}

async fn schedule_a_logout_then_cancel_it(client: &Client, gw: &Gateway, ada: &str) {
    click(client, "open-logout-all").await;
    text_when(client, "activity", |t| t.starts_with("Active")).await;
    assert!(!enabled(client, "la-at").await, "only for a later time");
    click(client, "la-when-later").await;
    assert!(enabled(client, "la-at").await);
    // Tomorrow at this minute, as a datetime-local field holds it (local, no zone).
    let chosen = script(
        client,
        "const d = new Date(Date.now() + 86400000); d.setSeconds(0, 0); \
         const p = (n) => String(n).padStart(2, '0'); \
         const value = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`; \
         document.getElementById('la-at').value = value; return d.toISOString()",
    )
    .await;
    type_into(client, "la-reason", "quarterly rotation").await;
    type_into(client, "la-confirm", "acme").await;
    click(client, "la-submit").await;

    let status = text_when(client, "page-status", |t| t.contains("scheduled for")).await;
    let pending = gw.admin_get("workspaces/acme/sessions", ada).await["scheduled_logout"].clone();
    let at = pending["at"].as_str().expect("a pending scheduled logout");
    assert_eq!(
        at,
        chosen.as_str().unwrap(),
        "the local time, converted to UTC"
    );
    let shown = local_time(client, at).await;
    assert_eq!(
        status,
        format!(
            "A logout of all users of acme is scheduled for {shown}. Until then nothing \
             changes; you can cancel it under Sessions."
        )
    );
    let scheduled = text_when(client, "scheduled", |t| t.contains("ada")).await;
    assert_eq!(scheduled, format!("{shown}, scheduled by ada"));
    let cancel = client.find(Locator::Id("cancel-scheduled")).await.unwrap();
    assert!(cancel.is_displayed().await.unwrap());
    let first = client
        .find(Locator::Css("#audit-rows tr:first-child td:nth-child(2)"))
        .await
        .unwrap();
    assert_eq!(
        first.text().await.unwrap(),
        "Scheduled a logout of all users"
    );

    cancel.click().await.unwrap();
    let status = text_when(client, "page-status", |t| t.contains("cancelled")).await;
    assert_eq!(
        status,
        "The scheduled logout was cancelled. No one will be signed out."
    );
    text_when(client, "scheduled", |t| t == "None").await;
    assert!(!cancel.is_displayed().await.unwrap());
    let state = gw.admin_get("workspaces/acme/sessions", ada).await;
    assert_eq!(state["scheduled_logout"], Value::Null);
}

async fn value_of(client: &Client, id: &str) -> Value {
    script(
        client,
        &format!("return document.getElementById('{id}').value"),
    )
    .await
}

async fn set_value(client: &Client, id: &str, value: &str) {
    let code = format!("document.getElementById('{id}').value = {}", json!(value));
    script(client, &code).await;
}

/// SPEC section 12's policy editor: "add my IP", save, see it, and refusals in words.
async fn edit_the_policy(client: &Client, gw: &Gateway, ada: &str) {
    let ip = text_when(client, "my-ip", |t| !t.is_empty()).await;
    assert_eq!(ip, "127.0.0.1");
    let updated = text_when(client, "policy-updated", |t| t.contains("no policy")).await;
    assert!(
        updated.starts_with("This workspace has no policy yet"),
        "{updated}"
    );
    click(client, "add-my-ip").await;
    assert_eq!(value_of(client, "policy-ips").await, "127.0.0.1");
    click(client, "add-my-ip").await;
    assert_eq!(
        value_of(client, "policy-ips").await,
        "127.0.0.1",
        "added once"
    );
    type_into(client, "policy-claims", "roles: admin, owner").await;
    type_into(client, "policy-age", "3600").await;
    click(client, "policy-submit").await;
    text_when(client, "page-status", |t| {
        t == "The workspace policy was saved."
    })
    .await;
    text_when(client, "policy-updated", |t| t.contains("by ada")).await;
    assert_eq!(
        value_of(client, "policy-ips").await,
        "127.0.0.1/32",
        "shown as saved"
    );
    let policy = gw.admin_get("workspaces/acme/policy", ada).await;
    assert_eq!(policy["ip_allowlist"], json!(["127.0.0.1/32"]));
    assert_eq!(
        policy["require_claims"],
        json!([{"claim": "roles", "any_of": ["admin", "owner"]}])
    );
    assert_eq!(policy["max_session_age_secs"], 3600);

    // An allow-list without the admin's own address is refused in words: the 409.
    set_value(client, "policy-ips", "198.51.100.0/24").await;
    click(client, "policy-submit").await;
    let error = text_when(client, "policy-error", |t| !t.is_empty()).await;
    assert_eq!(
        error,
        "This conflicts with the current settings: your IP address is not in the new \
         ip_allowlist: saving this policy would sign you out; nothing was changed."
    );
    set_value(client, "policy-ips", "10.0.0.0/33").await;
    click(client, "policy-submit").await;
    text_when(client, "policy-error", |t| t.contains("ip_allowlist[0]")).await;

    // Another admin saves meanwhile: this page's ETag is stale, and it says so.
    let theirs = json!({"ip_allowlist": ["127.0.0.0/8"], "require_claims": [{"claim": "roles", "any_of": ["admin", "<b>owner</b>"]}]});
    let rsp = gw.put_policy("acme", ada, &theirs).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    set_value(client, "policy-ips", "127.0.0.1").await;
    set_value(client, "policy-claims", "").await;
    click(client, "policy-submit").await;
    let error = text_when(client, "policy-error", |t| t.contains("Someone else")).await;
    assert!(error.contains("save again"), "{error}");
    assert_eq!(
        value_of(client, "policy-ips").await,
        "127.0.0.0/8",
        "their version is shown"
    );
    assert_eq!(
        value_of(client, "policy-claims").await,
        "roles: admin, <b>owner</b>",
        "as text"
    );
    let bold = client.find_all(Locator::Css("#policy b")).await.unwrap();
    assert!(bold.is_empty(), "values are never markup");
    gw.put_policy("acme", ada, &json!({})).send().await.unwrap();
}

async fn narrow_screens_do_not_scroll_sideways(client: &Client) {
    client.set_window_size(320, 900).await.unwrap();
    let width = script(client, "return window.innerWidth").await;
    let overflow = script(
        client,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(width.as_i64().unwrap() <= 400, "window {width}");
    assert_eq!(overflow, 0, "nothing wider than the screen at {width} px");
}
