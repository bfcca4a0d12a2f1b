//! Backups that must fail cleanly: a wrong identity or passphrase, a file truncated at
//! every age chunk boundary, flipped bytes, a re-encrypted but incomplete or altered
//! payload. Each gives a clear error and leaves the target vault byte-for-byte unchanged
//! (hashed while the engine holds it open, before and after).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::backup::*;
use crate::support::*;
use tokenvault::Request;
use tokenvault::backup::{Unlock, verify};
use tokenvault::secret::Secret;

/// age's STREAM chunk: 64 KiB of plaintext + a 16-byte tag.
const CHUNK: usize = 64 * 1024 + 16;

/// Start of the payload: after the header's `--- MAC` line and the 16-byte nonce.
fn payload_start(file: &[u8]) -> usize {
    let mac = file
        .windows(4)
        .position(|w| w == b"\n---")
        .expect("age header");
    let eol = mac + 1 + file[mac + 1..].iter().position(|b| *b == b'\n').unwrap();
    eol + 1 + 16
}

struct Setup {
    tv: TestVault,
    file: std::path::PathBuf,
    id_text: String,
    target_dir: tempfile::TempDir,
    target_path: std::path::PathBuf,
    target: tokenvault::Engine,
}

fn setup(connections: usize) -> Setup {
    let tv = TestVault::new();
    let src = tv.engine();
    fill(
        src.vault(),
        &Fill {
            connections,
            token_len: 200,
            ..Fill::default()
        },
    );
    let (_id, id_text, recipient) = identity();
    let file = tv.dir.path().join("b.age");
    report(run(
        &src,
        Request::BackupExport {
            path: file.display().to_string(),
            tenant: None,
            recipients: vec![recipient],
            passphrase: None,
            include_audit: true,
        },
    ));
    drop(src);
    let (target_dir, target_path, target) = other_vault();
    // the target is not empty: a restore that went wrong would have something to break
    fill(
        target.vault(),
        &Fill {
            tenants: vec!["zeta".into()],
            ..Fill::default()
        },
    );
    Setup {
        tv,
        file,
        id_text,
        target_dir,
        target_path,
        target,
    }
}

impl Setup {
    /// Restores `bytes` (written as a backup file) into the target; returns the error text
    /// and asserts the target file did not change.
    fn restore_fails(&self, bytes: &[u8], unlock: Request) -> String {
        let bad = self.target_dir.path().join("bad.age");
        std::fs::write(&bad, bytes).unwrap();
        let before = sha256_file(&self.target_path);
        let req = match unlock {
            Request::BackupRestore {
                identity,
                passphrase,
                ..
            } => Request::BackupRestore {
                path: bad.display().to_string(),
                identity,
                passphrase,
                tenant: None,
                replace: true,
            },
            other => other,
        };
        let err = run(&self.target, req).expect_err("a bad backup was restored");
        assert_eq!(
            sha256_file(&self.target_path),
            before,
            "the vault file changed after: {err}"
        );
        err.to_string()
    }

    fn with_identity(&self) -> Request {
        Request::BackupRestore {
            path: String::new(),
            identity: Some(Secret::new(self.id_text.clone())),
            passphrase: None,
            tenant: None,
            replace: true,
        }
    }
}

#[test]
fn wrong_identity_or_passphrase_is_a_clear_error_and_changes_nothing() {
    let s = setup(3);
    let bytes = std::fs::read(&s.file).unwrap();
    let (_other, other_text, _) = identity();
    let err = s.restore_fails(
        &bytes,
        Request::BackupRestore {
            path: String::new(),
            identity: Some(Secret::new(other_text)),
            passphrase: None,
            tenant: None,
            replace: true,
        },
    );
    assert!(err.contains("none of the identities"), "{err}");
    // a passphrase for a recipient file
    let err = s.restore_fails(
        &bytes,
        Request::BackupRestore {
            path: String::new(),
            identity: None,
            passphrase: Some(Secret::new("nope")),
            tenant: None,
            replace: true,
        },
    );
    assert!(err.contains("--identity"), "{err}");

    // a passphrase backup opened with the wrong passphrase, and with an identity
    let src = s.tv.engine();
    src.backups().set_backup_work_factor(Some(TEST_WORK_FACTOR));
    let pfile = s.tv.dir.path().join("p.age");
    report(run(
        &src,
        Request::BackupExport {
            path: pfile.display().to_string(),
            tenant: None,
            recipients: vec![],
            passphrase: Some(Secret::new("right")),
            include_audit: false,
        },
    ));
    let pbytes = std::fs::read(&pfile).unwrap();
    let err = s.restore_fails(
        &pbytes,
        Request::BackupRestore {
            path: String::new(),
            identity: None,
            passphrase: Some(Secret::new("wrong")),
            tenant: None,
            replace: true,
        },
    );
    assert!(err.contains("wrong backup passphrase"), "{err}");
    let err = s.restore_fails(&pbytes, s.with_identity());
    assert!(err.contains("--backup-passphrase-file"), "{err}");
    // and the right passphrase works
    let e = run(
        &s.target,
        Request::BackupRestore {
            path: pfile.display().to_string(),
            identity: None,
            passphrase: Some(Secret::new("right")),
            tenant: None,
            // uid 10000 is granted to zeta in the target: a conflict only --replace settles
            replace: true,
        },
    );
    report(e);
    // exit code 3 for a wrong key, like a wrong vault passphrase
    let e = verify(&pfile, &Unlock::Passphrase(Secret::new("wrong")), false).unwrap_err();
    assert_eq!(e.exit_code(), 3);
}

#[test]
fn truncation_at_every_chunk_boundary_is_detected() {
    // ~1.3 MB of plaintext: about twenty 64 KiB chunks
    let s = setup(2000);
    let bytes = std::fs::read(&s.file).unwrap();
    let start = payload_start(&bytes);
    let chunks = (bytes.len() - start).div_ceil(CHUNK);
    assert!(chunks >= 10, "only {chunks} chunks");
    let mut cuts: Vec<usize> = (0..chunks).map(|k| start + k * CHUNK).collect();
    // inside the header, right after the nonce, and one byte short of the end
    cuts.extend([0, 10, start - 16, start - 1, bytes.len() - 1]);
    for cut in cuts {
        let err = s.restore_fails(&bytes[..cut], s.with_identity());
        assert!(
            err.contains("damaged or incomplete") || err.contains("not a readable age file"),
            "cut at {cut}: {err}"
        );
        assert!(
            verify_bytes(&s, &bytes[..cut]).is_err(),
            "verify accepted a cut at {cut}"
        );
    }
}

fn verify_bytes(s: &Setup, bytes: &[u8]) -> tokenvault::Result<tokenvault::contract::BackupReport> {
    let p = s.target_dir.path().join("v.age");
    std::fs::write(&p, bytes).unwrap();
    verify(&p, &unlock_identity(&s.id_text), false)
}

#[test]
fn flipped_bytes_anywhere_are_detected() {
    let s = setup(300);
    let bytes = std::fs::read(&s.file).unwrap();
    let start = payload_start(&bytes);
    // every byte of the header and nonce, then a stride through the payload, and the end
    let mut at: Vec<usize> = (0..start).collect();
    at.extend((start..bytes.len()).step_by(1999));
    at.push(bytes.len() - 1);
    for i in at {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        let err = s.restore_fails(&bad, s.with_identity());
        assert!(
            err.contains("backup"),
            "flip at {i} of {}: unclear error {err}",
            bytes.len()
        );
    }
}

/// The age layer is intact but the plaintext is not what the exporter wrote: the trailer
/// checksum and counts catch it.
#[test]
fn an_altered_or_shortened_payload_re_encrypted_is_detected() {
    let s = setup(5);
    let id: age::x25519::Identity = s.id_text.trim().parse().unwrap();
    let enc = std::fs::read(&s.file).unwrap();
    let plain = age::decrypt(&id, &enc).unwrap();
    let (_, other_text, other_recipient) = identity();
    let recipient: age::x25519::Recipient = other_recipient.parse().unwrap();
    let seal = |p: &[u8]| age::encrypt(&recipient, p).unwrap();
    let with_other = |_: &Setup| Request::BackupRestore {
        path: String::new(),
        identity: Some(Secret::new(other_text.clone())),
        passphrase: None,
        tenant: None,
        replace: true,
    };
    // the untouched payload re-encrypted restores fine (the test's own control)
    let ok = s.target_dir.path().join("ok.age");
    std::fs::write(&ok, seal(&plain)).unwrap();
    verify(&ok, &unlock_identity(&other_text), false).unwrap();

    // one token character changed
    let at = plain.windows(3).position(|w| w == b"AT-").unwrap();
    let mut altered = plain.clone();
    altered[at + 3] ^= 0x01;
    let err = s.restore_fails(&seal(&altered), with_other(&s));
    assert!(err.contains("checksum"), "{err}");
    // cut anywhere: before the trailer, or inside it
    for cut in [plain.len() / 2, plain.len() - 40, plain.len() - 1] {
        let err = s.restore_fails(&seal(&plain[..cut]), with_other(&s));
        assert!(err.contains("damaged or incomplete"), "cut {cut}: {err}");
    }
    // not a tokenvault payload at all
    let err = s.restore_fails(&seal(b"hello"), with_other(&s));
    assert!(err.contains("damaged or incomplete"), "{err}");
}
