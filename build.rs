//! Build script: stamps the binary with the commit it was built from and the build date, for
//! `tokenvault --version` and the `tokenvault_build_info` metric.
//!
//! Must not fail a build: without git, outside a checkout, or in a source tarball the commit
//! is "unknown". `TOKENVAULT_BUILD_COMMIT` overrides the commit (a Docker build has no
//! `.git`), and `SOURCE_DATE_EPOCH` the date (reproducible builds).

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// A commit id is hex; anything else from the environment is replaced, so the value can go
/// into a Prometheus label and a version line as it is.
pub fn clean(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| s.to_owned())
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The commit checked out in `dir` (12 hex digits), or "unknown" without git or outside a
/// checkout. `watch` gets the files git read it from, for `rerun-if-changed`.
pub fn commit_in(dir: &Path, watch: &mut Vec<String>) -> String {
    let Some(c) = git(dir, &["rev-parse", "--short=12", "HEAD"]).and_then(|c| clean(&c)) else {
        return "unknown".to_owned();
    };
    let abs = |p: String| {
        if Path::new(&p).is_absolute() {
            p
        } else {
            dir.join(p).display().to_string()
        }
    };
    if let Some(d) = git(dir, &["rev-parse", "--git-dir"]) {
        watch.push(format!("{}/HEAD", abs(d)));
    }
    if let Some(common) = git(dir, &["rev-parse", "--git-common-dir"]).map(abs) {
        watch.push(format!("{common}/packed-refs"));
        if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            watch.push(format!("{common}/{r}"));
        }
    }
    // only files that exist: cargo reruns the script on every build for a missing one
    watch.retain(|w| Path::new(w).exists());
    c
}

/// The build date (YYYY-MM-DD, UTC): `SOURCE_DATE_EPOCH` when it is a number, else now.
pub fn build_date(source_date_epoch: Option<&str>) -> String {
    source_date_epoch
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs() as i64)
        })
        .map(|s| {
            let (y, m, d) = civil(s.div_euclid(86_400));
            format!("{y:04}-{m:02}-{d:02}")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TOKENVAULT_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let mut watch = Vec::new();
    let commit = std::env::var("TOKENVAULT_BUILD_COMMIT")
        .ok()
        .and_then(|c| clean(&c))
        .unwrap_or_else(|| {
            let dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into());
            commit_in(Path::new(&dir), &mut watch)
        });
    for w in &watch {
        println!("cargo:rerun-if-changed={w}");
    }
    let date = build_date(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref());
    println!("cargo:rustc-env=TOKENVAULT_COMMIT={commit}");
    println!("cargo:rustc-env=TOKENVAULT_BUILD_DATE={date}");
}
