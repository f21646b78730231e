//! A cookie-keeping HTTP client for dashboard tests (no redirects followed, so tests see them).

use reqwest::blocking::{Client, Response};

use super::Server;

pub const ADMIN_EMAIL: &str = "ada@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

pub struct WebClient<'a> {
    pub http: Client,
    pub server: &'a Server,
}

/// The CSRF token embedded in a page's forms.
pub fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("the page has a form with a CSRF token") + marker.len();
    html[start..start + 32].to_string()
}

impl<'a> WebClient<'a> {
    pub fn new(server: &'a Server) -> Self {
        let http = Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, server }
    }

    pub fn get(&self, path: &str) -> Response {
        self.http.get(format!("{}{path}", self.server.url())).send().unwrap()
    }

    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.http.post(format!("{}{path}", self.server.url())).form(form).send().unwrap()
    }

    /// Posts a multipart form: text `fields` and one file `(field, file name, bytes)`.
    pub fn post_file(&self, path: &str, fields: &[(&str, &str)], file: (&str, &str, Vec<u8>)) -> Response {
        let mut form = reqwest::blocking::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        let (name, file_name, bytes) = file;
        form = form
            .part(name.to_string(), reqwest::blocking::multipart::Part::bytes(bytes).file_name(file_name.to_string()));
        self.http.post(format!("{}{path}", self.server.url())).multipart(form).send().unwrap()
    }

    /// The page an action's redirect (303) leads to, as the browser would show it next: with
    /// the action's one-time notice.
    pub fn follow(&self, response: Response) -> String {
        assert_eq!(response.status(), 303, "not a redirect: {}", response.text().unwrap_or_default());
        let to = location(&response).to_string();
        self.get(&to).text().unwrap()
    }

    /// Fetches `page` and returns its CSRF token (setting the cookie on first visit).
    pub fn csrf(&self, page: &str) -> String {
        csrf_in(&self.get(page).text().unwrap())
    }

    /// Runs first-run setup as the administrator; the client is then signed in.
    pub fn setup_admin(&self) {
        let (csrf, code) = (self.csrf("/setup"), self.server.setup_code());
        let form = [
            ("csrf", csrf.as_str()),
            ("setup_code", &code),
            ("name", "Ada"),
            ("email", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
        ];
        let response = self.post("/setup", &form);
        assert_eq!(response.status(), 303, "setup failed: {}", response.text().unwrap_or_default());
    }

    pub fn sign_in(&self, email: &str, password: &str) -> Response {
        let csrf = self.csrf("/sign-in");
        self.post("/sign-in", &[("csrf", &csrf), ("email", email), ("password", password)])
    }
}

pub fn location(response: &Response) -> &str {
    response.headers().get("location").map(|v| v.to_str().unwrap()).unwrap_or_default()
}

/// From the groups page: the first group's id and the id of `user` in its member list.
pub fn first_group_and_user(groups_page: &str, user: &str) -> (String, String) {
    let group = groups_page.split("/groups/").nth(1).unwrap().split('/').next().unwrap().to_string();
    let option = groups_page.split("<option value=\"").skip(1).find(|s| s.contains(&format!(">{user} ("))).unwrap();
    (group, option.split('"').next().unwrap().to_string())
}

pub fn token_secret(page: &str) -> String {
    page.split("id=\"new-token\">").nth(1).unwrap().split('<').next().unwrap().to_string()
}
