//! A minimal "browser" for the authorisation-code flow tests: one HTTP/1.1 GET over a
//! plain std socket, never following redirects, on loopback only.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// GETs `url`: its status, its `Location` header, its body.
pub fn http_get(url: &str) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let u = url::Url::parse(url).unwrap();
    let host = u.host_str().unwrap().to_owned();
    let port = u.port().unwrap();
    assert_eq!(host, "127.0.0.1", "the test must stay on loopback: {url}");
    let mut s = std::net::TcpStream::connect((host.as_str(), port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    (status, location, body.to_owned())
}

/// The value of query parameter `name` of `url`.
pub fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
