//! `hibernation login --oidc`: trusted publishing from CI. The job's OpenID Connect ID
//! token (from GitHub Actions' token service, or given) is traded for a short-lived token;
//! no long-lived secret is stored in CI.

use anyhow::{Context, bail};

use super::http::ApiClient;
use crate::api::OidcTokenResponse;

/// Where the ID token comes from.
pub enum IdTokenSource {
    /// The token itself (`--id-token`).
    Given(String),
    /// A file holding it (`--id-token-file`; GitLab's `id_tokens`, Kubernetes' projected tokens).
    File(std::path::PathBuf),
    /// GitHub Actions' token service (`ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN`, set for
    /// jobs with `permissions: id-token: write`), asked for the server's URL as audience.
    GitHubActions,
}

/// Fetches the ID token for `audience` (the server's URL).
pub async fn id_token(source: IdTokenSource, audience: &str) -> anyhow::Result<String> {
    let token = match source {
        IdTokenSource::Given(token) => token,
        IdTokenSource::File(path) => std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the ID token from {}", path.display()))?,
        IdTokenSource::GitHubActions => {
            let (Ok(url), Ok(bearer)) =
                (std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL"), std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"))
            else {
                bail!(
                    "no ID token: outside GitHub Actions give one with --id-token or --id-token-file; in GitHub Actions the job needs `permissions: id-token: write`"
                );
            };
            let mut url = reqwest::Url::parse(&url).context("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL")?;
            url.query_pairs_mut().append_pair("audience", audience);
            let answer: serde_json::Value = reqwest::Client::new()
                .get(url)
                .bearer_auth(bearer)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .context("GitHub Actions' token service refused the ID token request")?
                .json()
                .await
                .context("GitHub Actions' token service answered nonsense")?;
            answer["value"].as_str().context("GitHub Actions' token service gave no token")?.to_string()
        }
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("the ID token is empty");
    }
    Ok(token)
}

/// Trades the ID token for an API token.
pub async fn exchange(client: &ApiClient, id_token: &str) -> anyhow::Result<OidcTokenResponse> {
    Ok(client.exchange_id_token(id_token).await?)
}
