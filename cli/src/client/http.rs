//! The HTTP client for the push API, with errors that say what to do.

use std::time::Duration;

use base64::Engine;
use reqwest::{StatusCode, Url};

use crate::api::{
    API_PREFIX, ApiError, CacheInfo, CliLoginPoll, CliLoginStart, CliLoginStarted, CliLoginState, PATH_INFO_HEADER,
    PathUpload, PathUploaded, PinInfo, PinRequest, PushPlanRequest, PushPlanResponse, WhoAmI,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {url}: {detail}; check the URL and that the server is running")]
    Unreachable { url: String, detail: String },
    #[error("the server rejected the token: {0}")]
    Unauthorized(String),
    #[error("{url} is not a Hibernation server (HTTP {status} on {path}); check the URL")]
    NotHibernation { url: String, status: u16, path: String },
    #[error("the server answered HTTP {status}: {message}")]
    Server { status: u16, message: String },
    #[error("no API token: run `hibernation login <url> --token <token>` or set HIBERNATION_TOKEN")]
    NoToken,
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// Worth retrying: the connection failed, or the server was busy or broke.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Server { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// HTTP 409: the server wants something first (references or the NAR itself).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Server { status: 409, .. })
    }
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let mut base =
            Url::parse(url.trim()).map_err(|e| ClientError::Local(format!("invalid server URL {url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::Local(format!("invalid server URL {url:?}: use http:// or https://")));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("hibernation/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Local(e.to_string()))?;
        Ok(Self { http, base, token })
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path.trim_start_matches('/')).expect("API paths are valid")
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, ClientError> {
        let token = self.token.as_deref().ok_or(ClientError::NoToken)?;
        Ok(request.bearer_auth(token))
    }

    /// With the token when there is one (public caches answer anonymous callers too).
    fn maybe_authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.token.as_deref() {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, ClientError> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() {
            let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
            return serde_json::from_slice(&bytes).map_err(|_| self.not_hibernation(status, path));
        }
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = response.bytes().await.unwrap_or_default();
        let message = serde_json::from_slice::<ApiError>(&body).ok().map(|e| e.error);
        match (status, message) {
            (StatusCode::UNAUTHORIZED, Some(m)) => Err(ClientError::Unauthorized(m)),
            (_, Some(message)) if is_json => Err(ClientError::Server { status: status.as_u16(), message }),
            _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => Err(ClientError::Server {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
            _ => Err(self.not_hibernation(status, path)),
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        ClientError::Unreachable { url: self.base.to_string(), detail }
    }

    fn not_hibernation(&self, status: StatusCode, path: &str) -> ClientError {
        ClientError::NotHibernation { url: self.base.to_string(), status: status.as_u16(), path: path.to_string() }
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        let path = format!("{API_PREFIX}/whoami");
        self.send(self.authed(self.http.get(self.url(&path)))?, &path).await
    }

    pub async fn list_caches(&self) -> Result<Vec<CacheInfo>, ClientError> {
        let path = format!("{API_PREFIX}/caches");
        self.send(self.maybe_authed(self.http.get(self.url(&path))), &path).await
    }

    pub async fn cache_info(&self, cache: &str) -> Result<CacheInfo, ClientError> {
        let path = format!("{API_PREFIX}/caches/{cache}");
        self.send(self.maybe_authed(self.http.get(self.url(&path))), &path).await
    }

    /// Trusted publishing: an ID token for a short-lived API token.
    pub async fn exchange_id_token(&self, id_token: &str) -> Result<crate::api::OidcTokenResponse, ClientError> {
        let path = format!("{API_PREFIX}/oidc/token");
        let body = crate::api::OidcTokenRequest { token: id_token.to_string() };
        self.send(self.http.post(self.url(&path)).json(&body), &path).await
    }

    pub async fn start_cli_login(&self, client_name: &str) -> Result<CliLoginStarted, ClientError> {
        let path = format!("{API_PREFIX}/cli-login");
        let body = CliLoginStart { client_name: client_name.to_string() };
        self.send(self.http.post(self.url(&path)).json(&body), &path).await
    }

    pub async fn poll_cli_login(&self, poll_secret: &str) -> Result<CliLoginState, ClientError> {
        let path = format!("{API_PREFIX}/cli-login/poll");
        let body = CliLoginPoll { poll_secret: poll_secret.to_string() };
        self.send(self.http.post(self.url(&path)).json(&body), &path).await
    }

    pub async fn push_plan(&self, cache: &str, request: &PushPlanRequest) -> Result<PushPlanResponse, ClientError> {
        let path = format!("{API_PREFIX}/caches/{cache}/push-plan");
        self.send(self.authed(self.http.post(self.url(&path)).json(request))?, &path).await
    }

    /// Sends one path; `body` is the zstd NAR, or `None` to attach a NAR the server has.
    pub async fn upload_path(
        &self,
        cache: &str,
        upload: &PathUpload,
        body: Option<reqwest::Body>,
    ) -> Result<PathUploaded, ClientError> {
        let hash = upload.store_path.trim_start_matches("/nix/store/").get(..32).unwrap_or_default();
        let path = format!("{API_PREFIX}/caches/{cache}/paths/{hash}");
        let info =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(upload).expect("serialisable"));
        let request = self
            .http
            .put(self.url(&path))
            .header(PATH_INFO_HEADER, info)
            .header(reqwest::header::CONTENT_TYPE, "application/zstd");
        let request = match body {
            Some(body) => request.body(body),
            None => request.header(reqwest::header::CONTENT_LENGTH, "0").body(Vec::new()),
        };
        self.send(self.authed(request)?, &path).await
    }

    pub async fn list_pins(&self, cache: &str) -> Result<Vec<PinInfo>, ClientError> {
        let path = format!("{API_PREFIX}/caches/{cache}/pins");
        self.send(self.maybe_authed(self.http.get(self.url(&path))), &path).await
    }

    pub async fn put_pin(&self, cache: &str, name: &str, request: &PinRequest) -> Result<PinInfo, ClientError> {
        let path = format!("{API_PREFIX}/caches/{cache}/pins/{name}");
        self.send(self.authed(self.http.put(self.url(&path)).json(request))?, &path).await
    }

    pub async fn delete_pin(&self, cache: &str, name: &str) -> Result<(), ClientError> {
        let path = format!("{API_PREFIX}/caches/{cache}/pins/{name}");
        let _: serde_json::Value = self.send(self.authed(self.http.delete(self.url(&path)))?, &path).await?;
        Ok(())
    }
}
