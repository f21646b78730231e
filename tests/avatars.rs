//! Avatars: a picture uploaded on the account page becomes a small square PNG in the
//! database, shown in the nav and in the user and member lists (initials when there is
//! none), served only to signed-in people; anything else uploaded changes nothing.

mod support;

use std::io::Cursor;

use support::web::{WebClient, csrf_in, location};
use support::{Backend, Server};

on_every_backend!(an_uploaded_picture_becomes_everyones_view_of_you, bad_uploads_change_nothing);

fn picture(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = Vec::new();
    pixels.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

fn setup(backend: Backend) -> (Server, i64) {
    let server = Server::start(backend);
    WebClient::new(&server).setup_admin();
    server.create_user_with_password("bob", "bob@example.com", "bob password");
    let bob = server.count("SELECT id AS n FROM users WHERE login = 'bob'");
    (server, bob)
}

fn signed_in<'a>(server: &'a Server, email: &str, password: &str) -> (WebClient<'a>, String) {
    let client = WebClient::new(server);
    assert_eq!(client.sign_in(email, password).status(), 303);
    let csrf = csrf_in(&client.get("/account").text().unwrap());
    (client, csrf)
}

fn stored(server: &Server, bob: i64) -> i64 {
    server.count(&format!("SELECT COUNT(*) AS n FROM users WHERE id = {bob} AND avatar IS NOT NULL"))
}

fn an_uploaded_picture_becomes_everyones_view_of_you(backend: Backend) {
    let (server, bob_id) = setup(backend);
    let (bob, csrf) = signed_in(&server, "bob@example.com", "bob password");
    let (admin, admin_csrf) = signed_in(&server, support::web::ADMIN_EMAIL, support::web::ADMIN_PASSWORD);
    let img = format!("<img class=\"avatar\" src=\"/avatars/{bob_id}\"");

    // No picture yet: initials, in the nav and the users list.
    let account = bob.get("/account").text().unwrap();
    assert!(account.contains("aria-hidden=\"true\">B</span> Bob") || account.contains(">B</span>"), "{account}");
    assert!(!admin.get("/users").text().unwrap().contains(&img));
    assert_eq!(admin.get(&format!("/avatars/{bob_id}")).status(), 404);

    // A wide photo is cut to its middle square and made small.
    let uploaded = bob.post_file(
        "/account/avatar",
        &[("csrf", &csrf)],
        ("picture", "me.jpg", picture(900, 400, image::ImageFormat::Jpeg)),
    );
    assert_eq!(location(&uploaded), "/account");
    assert_eq!(stored(&server, bob_id), 1);
    let served = admin.get(&format!("/avatars/{bob_id}"));
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    let etag = served.headers()["etag"].to_str().unwrap().to_string();
    let png = served.bytes().unwrap();
    assert!(png.len() < 40_000, "a small picture: {} bytes", png.len());
    let made = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
    assert_eq!((made.width(), made.height()), (96, 96));
    let again =
        admin.http.get(format!("{}/avatars/{bob_id}", server.url())).header("if-none-match", &etag).send().unwrap();
    assert_eq!(again.status(), 304, "unchanged pictures are not sent again");

    // Shown in Bob's nav, the users list, Bob's page and the group member list.
    assert!(bob.get("/caches").text().unwrap().contains(&img), "the nav");
    assert!(admin.get("/users").text().unwrap().contains(&img), "the users list");
    let large = format!("<img class=\"avatar large\" src=\"/avatars/{bob_id}\"");
    assert!(admin.get(&format!("/users/{bob_id}")).text().unwrap().contains(&large), "Bob's page");
    admin.post("/groups", &[("csrf", &admin_csrf), ("name", "builders")]);
    let group = server.count("SELECT id AS n FROM user_groups WHERE name = 'builders'");
    admin.post(&format!("/groups/{group}/members"), &[("csrf", &admin_csrf), ("user_id", &bob_id.to_string())]);
    assert!(admin.get("/groups").text().unwrap().contains(&img), "the member list");

    // Only signed-in people see avatars.
    let anonymous = WebClient::new(&server).get(&format!("/avatars/{bob_id}"));
    assert!(location(&anonymous).starts_with("/sign-in"), "{:?}", anonymous.status());

    // Removed: initials again, and nothing stored.
    assert_eq!(location(&bob.post("/account/avatar/remove", &[("csrf", &csrf)])), "/account");
    assert_eq!(stored(&server, bob_id), 0);
    assert!(!admin.get("/users").text().unwrap().contains(&img));
    assert_eq!(admin.get(&format!("/avatars/{bob_id}")).status(), 404);
}

fn bad_uploads_change_nothing(backend: Backend) {
    let (server, bob_id) = setup(backend);
    let (bob, csrf) = signed_in(&server, "bob@example.com", "bob password");
    let first = bob.post_file(
        "/account/avatar",
        &[("csrf", &csrf)],
        ("picture", "me.png", picture(120, 120, image::ImageFormat::Png)),
    );
    assert_eq!(location(&first), "/account");
    let before = bob.get(&format!("/avatars/{bob_id}")).bytes().unwrap();

    let huge = {
        // 5000 × 5000 pixels compress to a few KiB: a decompression bomb in miniature.
        let pixels = image::GrayImage::new(5000, 5000);
        let mut bytes = Vec::new();
        pixels.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        bytes
    };
    assert!(huge.len() < 1 << 20);
    for (name, bytes, status, says) in [
        ("notes.txt", b"just text, not a picture".to_vec(), 422, "not a picture"),
        ("bomb.png", huge, 422, "larger than 4096"),
        ("cut.jpg", picture(300, 300, image::ImageFormat::Jpeg)[..400].to_vec(), 422, "not a picture"),
        ("empty.png", Vec::new(), 422, "Choose a picture"),
    ] {
        let refused = bob.post_file("/account/avatar", &[("csrf", &csrf)], ("picture", name, bytes));
        assert_eq!(refused.status(), status, "{name}");
        assert!(refused.text().unwrap().contains(says), "{name}");
    }
    // Without the form's CSRF token nothing is read. (Before the oversized body below: the
    // connection that one is cut off on must not be the one this request is sent on.)
    let forged = bob.post_file(
        "/account/avatar",
        &[("csrf", "forged")],
        ("picture", "x.png", picture(50, 50, image::ImageFormat::Png)),
    );
    assert_eq!(forged.status(), 403);
    // Over the 1 MiB body limit: refused as it arrives (413, or the connection closed on the
    // sender when the server answers before reading it all).
    let big = bob.http.post(format!("{}/account/avatar", server.url())).body(vec![0; 2 << 20]).send();
    if let Ok(refused) = big {
        assert_eq!(refused.status(), 413);
        // The body was left unread: the client must not send its next request on this
        // connection (it did, and failed it, before the server said so).
        assert_eq!(refused.headers()["connection"], "close");
    }
    assert_eq!(bob.get(&format!("/avatars/{bob_id}")).bytes().unwrap(), before, "the first picture stays");
}
