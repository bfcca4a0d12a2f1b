//! Small programs that run as another local uid, for attacks a second user would make:
//! a fake daemon that records every byte it is sent, and a client that opens many
//! connections and holds them. The kernel's SO_PEERCRED is what is under test, so these
//! must be real processes of that uid: the test binary runs itself again (`setuid` by
//! `Command::uid`, as root) with only [`helper_process`] selected, and the role in the
//! environment. Results come back as files in a directory owned by that uid.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NOBODY: u32 = 65534;
/// A helper never outlives this, even if the test that started it is gone.
const LIFETIME: Duration = Duration::from_secs(90);

/// True when the test can act as another uid (it runs as root); tests skip otherwise.
pub fn can_switch_uid() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root to act as another uid");
    false
}

/// Gives `path` to `uid` (and its group of the same number).
pub fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A helper process of another uid; killed on drop.
pub struct Helper {
    child: Child,
    pub dir: PathBuf,
}

impl Helper {
    /// Starts `role` as `uid`, its result files going to a new directory under `base`
    /// (which `uid` must be able to search).
    pub fn spawn(uid: u32, base: &Path, role: &str, env: &[(&str, String)]) -> Helper {
        let dir = base.join(format!(
            "helper-{role}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        chown(&dir, uid);
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args([
            "--exact",
            "support::other_uid::helper_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TV_HELPER_ROLE", role)
        .env("TV_HELPER_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .uid(uid)
        .gid(uid);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().unwrap();
        Helper { child, dir }
    }

    /// The contents of result file `name`, once the helper has written it.
    pub fn wait_file(&mut self, name: &str, timeout: Duration) -> String {
        let p = self.dir.join(name);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = std::fs::read_to_string(&p) {
                return s;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("helper exited ({status}) before writing {name}");
            }
            assert!(Instant::now() < deadline, "helper never wrote {name}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_json(&mut self, name: &str, timeout: Duration) -> Value {
        serde_json::from_str(&self.wait_file(name, timeout)).unwrap()
    }

    /// What the fake daemon has received so far, on every connection.
    pub fn recorded(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("record")).unwrap_or_default()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake daemon of `uid` listening at `socket`; returns once it accepts connections.
pub fn fake_daemon(uid: u32, base: &Path, socket: &Path) -> Helper {
    let mut h = Helper::spawn(
        uid,
        base,
        "listen",
        &[("TV_HELPER_SOCKET", socket.display().to_string())],
    );
    h.wait_file("ready", Duration::from_secs(30));
    h
}

/// `count` connections from `uid` to `socket`, each sending `send` (request lines)
/// and reading one answer per line. With `wait_secs`, each connection then waits that
/// long (in all) for a further line or a close. Results: `opened.json`, `waited.json`.
pub fn holder(
    uid: u32,
    base: &Path,
    socket: &Path,
    count: usize,
    send: &[Value],
    wait_secs: Option<u64>,
) -> Helper {
    let lines: Vec<String> = send.iter().map(Value::to_string).collect();
    let mut env = vec![
        ("TV_HELPER_SOCKET", socket.display().to_string()),
        ("TV_HELPER_COUNT", count.to_string()),
        ("TV_HELPER_SEND", lines.join("\n")),
    ];
    if let Some(w) = wait_secs {
        env.push(("TV_HELPER_WAIT_SECS", w.to_string()));
    }
    Helper::spawn(uid, base, "hold", &env)
}

/// Whether an answer line is a refusal by the connection caps.
pub fn is_cap_refusal(v: &Value) -> bool {
    v["ok"] == false
        && v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many connections"))
}

/// The helper program itself: does nothing unless started by [`Helper::spawn`].
#[test]
#[ignore = "not a test: the other-uid helper process that tests start"]
fn helper_process() {
    let Ok(role) = std::env::var("TV_HELPER_ROLE") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("TV_HELPER_DIR").unwrap());
    std::thread::spawn(|| {
        std::thread::sleep(LIFETIME);
        std::process::exit(0);
    });
    match role.as_str() {
        "listen" => listen(&dir),
        "hold" => hold(&dir),
        other => panic!("unknown helper role {other}"),
    }
}

fn write_result(dir: &Path, name: &str, contents: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

/// Records every byte any client sends, and answers each line with `{"ok":true}` as a
/// daemon that says yes to everything would.
fn listen(dir: &Path) -> ! {
    let socket = PathBuf::from(std::env::var("TV_HELPER_SOCKET").unwrap());
    let l = UnixListener::bind(&socket).unwrap();
    chmod(&socket, 0o666);
    write_result(dir, "ready", b"");
    loop {
        let Ok((mut s, _)) = l.accept() else { continue };
        let record = dir.join("record");
        std::thread::spawn(move || {
            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&record)
                    .unwrap();
                f.write_all(&buf[..n]).unwrap();
                for _ in buf[..n].iter().filter(|b| **b == b'\n') {
                    let _ = s.write_all(b"{\"ok\":true}\n");
                }
            }
        });
    }
}

fn read_value(rd: &mut BufReader<UnixStream>) -> Result<Option<Value>, std::io::Error> {
    let mut line = String::new();
    match rd.read_line(&mut line)? {
        0 => Ok(None),
        _ => Ok(Some(
            serde_json::from_str(&line).unwrap_or_else(|_| json!({ "raw": line })),
        )),
    }
}

fn hold(dir: &Path) -> ! {
    let socket = PathBuf::from(std::env::var("TV_HELPER_SOCKET").unwrap());
    let count: usize = std::env::var("TV_HELPER_COUNT").unwrap().parse().unwrap();
    let send = std::env::var("TV_HELPER_SEND").unwrap_or_default();
    let lines: Vec<&str> = send.lines().filter(|l| !l.is_empty()).collect();
    let mut conns = Vec::new();
    let mut opened = Vec::new();
    for _ in 0..count {
        let s = match UnixStream::connect(&socket) {
            Ok(s) => s,
            Err(e) => {
                opened.push(json!({ "connect_error": e.to_string() }));
                continue;
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut rd = BufReader::new(s);
        let mut answers = Vec::new();
        let mut eof = false;
        for l in &lines {
            // a refused connection may already be closed: read what it said anyway
            let _ = w.write_all(format!("{l}\n").as_bytes());
        }
        if lines.is_empty() {
            // a connection that says nothing: a refusal still arrives at once
            rd.get_ref()
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
        }
        for _ in 0..lines.len().max(1) {
            match read_value(&mut rd) {
                Ok(Some(v)) => answers.push(v),
                Ok(None) => {
                    eof = true;
                    break;
                }
                Err(_) => break,
            }
        }
        opened.push(json!({ "answers": answers, "eof": eof }));
        conns.push((rd, w, eof));
    }
    write_result(
        dir,
        "opened.json",
        serde_json::to_vec(&opened).unwrap().as_slice(),
    );
    if let Some(w) = std::env::var("TV_HELPER_WAIT_SECS")
        .ok()
        .and_then(|w| w.parse::<u64>().ok())
    {
        let deadline = Instant::now() + Duration::from_secs(w);
        let mut waited = Vec::new();
        for (rd, _, was_eof) in &mut conns {
            if *was_eof {
                waited.push(json!({ "closed_before": true }));
                continue;
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            rd.get_ref().set_read_timeout(Some(left)).unwrap();
            let r = match read_value(rd) {
                Ok(Some(v)) => {
                    rd.get_ref()
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let closed = matches!(read_value(rd), Ok(None));
                    json!({ "line": v, "closed": closed })
                }
                Ok(None) => json!({ "line": null, "closed": true }),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    json!({ "line": null, "closed": false })
                }
                Err(e) => json!({ "line": null, "closed": true, "error": e.to_string() }),
            };
            waited.push(r);
        }
        write_result(
            dir,
            "waited.json",
            serde_json::to_vec(&waited).unwrap().as_slice(),
        );
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
