//! A real browser for UI tests: Debian's chromium driven through chromedriver over the W3C
//! WebDriver protocol. On a panic, a screenshot of the current page is written to
//! `target/browser-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    name: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium; `name` labels failure screenshots.
    pub fn start(name: &str) -> Self {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}): the test command installs chromium-driver"));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let created: Value = http.post(format!("{base}/session")).json(&capabilities).send().unwrap().json().unwrap();
        let session =
            created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_string();
        Self { driver, base, session, http, name: name.to_string(), _profile: profile }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().unwrap().json().unwrap();
        response["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).as_str().unwrap_or_default().to_string()
    }

    pub fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).as_str().unwrap_or_default().to_string()
    }

    fn find(&self, css: &str) -> Option<String> {
        let found = self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})));
        found[ELEMENT_KEY].as_str().map(str::to_string)
    }

    /// Waits up to five seconds for an element.
    pub fn element(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(id) = self.find(css) {
                return id;
            }
            assert!(Instant::now() < deadline, "no element {css} on {}", self.url());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({})));
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    /// Chooses the file at `path` in the file input `css`.
    pub fn attach(&self, css: &str, path: &std::path::Path) {
        let id = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": path.to_str().unwrap()})),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({})));
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.element(css);
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None).as_str().unwrap_or_default().to_string()
    }

    /// Resizes the browser window (e.g. 390 x 844, a phone).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn execute(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// The current value of an input (what the user sees in it).
    pub fn value(&self, css: &str) -> String {
        self.element(css);
        let script = format!("return document.querySelector({}).value;", serde_json::to_string(css).unwrap());
        self.execute(&script).as_str().unwrap_or_default().to_string()
    }

    /// Chooses the option of the `<select>` at `css` whose label contains `label`.
    pub fn choose(&self, css: &str, label: &str) {
        self.element(css);
        let script = format!(
            "const s = document.querySelector({}); const o = [...s.options].find(o => o.text.includes({}));
             if (!o) return false; s.value = o.value; return true;",
            serde_json::to_string(css).unwrap(),
            serde_json::to_string(label).unwrap()
        );
        assert_eq!(self.execute(&script), serde_json::Value::Bool(true), "no option {label} in {css}");
    }

    /// The form controls on the page a screen reader could not name (no label, no
    /// aria-label), as `tag#id name=...` descriptions.
    pub fn unlabelled_controls(&self) -> Vec<String> {
        let script = "return [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
            .map(e => e.tagName.toLowerCase() + '#' + e.id + ' name=' + e.name);";
        let found = self.execute(script);
        found
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    }

    /// Marks the loaded document, so [`Browser::same_document`] can tell an in-place update
    /// from a page load.
    pub fn mark_document(&self) {
        self.execute("window.__hibernation_mark = true; return true;");
    }

    /// Whether the document marked last is still the one shown (nothing reloaded it).
    pub fn same_document(&self) -> bool {
        self.execute("return window.__hibernation_mark === true;").as_bool().unwrap_or(false)
    }

    /// How far the page is wider than the window, in CSS pixels (0: no sideways scrolling).
    pub fn horizontal_overflow(&self) -> i64 {
        let script = "return document.documentElement.scrollWidth - document.documentElement.clientWidth;";
        self.execute(script).as_i64().unwrap_or(i64::MAX)
    }

    pub fn accept_alert(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.call(reqwest::Method::POST, "/alert/accept", Some(json!({}))).get("error").is_some() {
            assert!(Instant::now() < deadline, "no dialog to accept");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to five seconds until the page source satisfies `check`.
    pub fn wait_until(&self, what: &str, check: impl Fn(&str) -> bool) {
        self.wait_up_to(Duration::from_secs(5), what, check)
    }

    /// Waits up to `limit` until the page source satisfies `check`.
    pub fn wait_up_to(&self, limit: Duration, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        while !check(&self.source()) {
            assert!(Instant::now() < deadline, "timed out waiting until {what} on {}", self.url());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn screenshot(&self, label: &str) -> Option<PathBuf> {
        let data = self.call(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str()?).ok()?;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{}-{label}.png", self.name));
        std::fs::write(&path, png).ok()?;
        Some(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(path) = self.screenshot("failure")
        {
            eprintln!("screenshot of {} at failure: {}", self.url(), path.display());
        }
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
