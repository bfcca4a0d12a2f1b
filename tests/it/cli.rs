use crate::support::*;

#[test]
fn put_get_roundtrip_through_the_binary() {
    let tv = TestVault::new();
    tv.cmd().args(["tenant", "add", "acme"]).assert().success();
    tv.cmd()
        .args(["put", "acme/spotify/alice"])
        .write_stdin(r#"{"access_token":"AT-roundtrip","expires_in":3600}"#)
        .assert()
        .success();
    let out = tv
        .cmd()
        .args(["get", "acme/spotify/alice"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "AT-roundtrip\n");
}
