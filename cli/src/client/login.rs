//! `hibernation login` through the browser: open a request, show its page, wait for the user
//! to approve it in the dashboard, collect the token.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::http::{ApiClient, ClientError};
use crate::api::CliLoginState;

const POLL_EVERY: Duration = Duration::from_secs(2);

/// What the dashboard shows as the requester, e.g. `hibernation on build-01`.
pub fn client_name() -> String {
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "this machine".into());
    format!("hibernation on {host}")
}

/// Opens `url` with `$BROWSER`, or the desktop's opener; false when none could be started.
pub fn open_in_browser(url: &str) -> bool {
    let candidates: Vec<String> = match std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty()) {
        Some(browser) => vec![browser],
        None if cfg!(target_os = "macos") => vec!["open".into()],
        None => vec!["xdg-open".into()],
    };
    candidates.iter().any(|program| {
        Command::new(program).arg(url).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().is_ok()
    })
}

/// Whether `url` is a page of the server `client` talks to (same scheme, host and port).
fn is_page_of(client: &ApiClient, url: &str) -> bool {
    match (reqwest::Url::parse(url), reqwest::Url::parse(client.base_url())) {
        (Ok(page), Ok(base)) => page.origin() == base.origin(),
        _ => false,
    }
}

/// Waits for approval and returns the new token and the user it belongs to.
pub async fn login_in_browser(client: &ApiClient) -> anyhow::Result<(String, String)> {
    let started = client.start_cli_login(&client_name()).await?;
    eprintln!("To log in, open {} and enter this code:", started.approve_url);
    eprintln!("  code: {}", started.code);
    // Only a page of the server itself is opened automatically.
    if !is_page_of(client, &started.approve_url) || !open_in_browser(&started.approve_url) {
        eprintln!("(open the link above in your browser)");
    }
    eprintln!("Waiting for approval...");
    let deadline = Instant::now() + Duration::from_secs(started.expires_in_seconds);
    while Instant::now() < deadline {
        match client.poll_cli_login(&started.poll_secret).await {
            Ok(CliLoginState::Approved { token, user }) => return Ok((token, user)),
            Ok(CliLoginState::Pending) => {}
            Err(ClientError::Server { status: 404, .. }) => {
                bail!("the login request was denied in the dashboard; run `hibernation login` again")
            }
            Err(ClientError::Server { status: 410, .. }) => break,
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    bail!("nobody approved the login request in time; run `hibernation login` again")
}
