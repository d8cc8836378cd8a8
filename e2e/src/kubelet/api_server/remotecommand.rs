//! `exec` and `attach` over SPDY: stream set-up as the kubelet's remotecommand server does it,
//! a handful of built-in commands and an in-memory filesystem per container (see the parent
//! module's docs for the command list).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::sync::watch;

use super::registry::PodRegistry;
use super::spdy::{Session, Stream, StreamReader, StreamWriter, rst};
use super::{Body, finished, negotiate_upgrade, on_upgrade, text};

/// `X-Stream-Protocol-Version`s of remote commands, most preferred first.
pub const PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// How long the server waits for the client to open all the streams it asked for.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server waits, after the command, for the client to hang up.
const LINGER: Duration = Duration::from_secs(10);

/// Modification time of every file the filesystem makes (fixed, so archives are deterministic).
const MTIME: u64 = 1_700_000_000;

/// A container's filesystem: files by absolute path, plus directories.
#[derive(Debug, Clone, Default)]
pub struct Fs {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

/// Makes `path` absolute (relative to `/`), resolving `.` and `..` and dropping a trailing `/`.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> Option<String> {
    if path == "/" {
        return None;
    }
    let (head, _) = path.rsplit_once('/')?;
    Some(if head.is_empty() {
        "/".into()
    } else {
        head.into()
    })
}

impl Fs {
    /// `/`, `/etc`, `/root`, `/tmp` and `/etc/hostname` (the pod name).
    pub fn new(pod: &str) -> Self {
        let mut fs = Self::default();
        for d in ["/root", "/tmp"] {
            fs.mkdir_p(d);
        }
        fs.write("/etc/hostname", format!("{pod}\n").into_bytes());
        fs
    }

    /// Creates a directory and its parents.
    pub fn mkdir_p(&mut self, path: &str) {
        let mut p = Some(normalize(path));
        while let Some(d) = p {
            p = parent(&d);
            self.dirs.insert(d);
        }
    }

    /// Writes a file (creating its parent directories).
    pub fn write(&mut self, path: &str, data: Vec<u8>) {
        let path = normalize(path);
        if let Some(p) = parent(&path) {
            self.mkdir_p(&p);
        }
        self.files.insert(path, data);
    }

    /// A file's content.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        self.files.get(&normalize(path)).map(Vec::as_slice)
    }

    /// Whether `path` is a directory.
    pub fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(&normalize(path))
    }

    /// Removes a file; `false` if there was none.
    pub fn remove(&mut self, path: &str) -> bool {
        self.files.remove(&normalize(path)).is_some()
    }

    /// Names directly inside directory `dir`, sorted.
    pub fn list(&self, dir: &str) -> Vec<String> {
        let dir = normalize(dir);
        let prefix = if dir == "/" {
            "/".to_owned()
        } else {
            format!("{dir}/")
        };
        let mut names: BTreeSet<String> = BTreeSet::new();
        for p in self.files.keys().chain(self.dirs.iter()) {
            if let Some(rest) = p.strip_prefix(&prefix)
                && !rest.is_empty()
                && !rest.contains('/')
            {
                names.insert(rest.to_owned());
            }
        }
        names.into_iter().collect()
    }

    /// `path` and everything under it: (path, `None` for a directory or the file's content).
    fn walk(&self, path: &str) -> Vec<(String, Option<Vec<u8>>)> {
        let path = normalize(path);
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut out = Vec::new();
        if let Some(data) = self.files.get(&path) {
            out.push((path, Some(data.clone())));
            return out;
        }
        if !self.dirs.contains(&path) {
            return out;
        }
        out.push((path.clone(), None));
        for d in &self.dirs {
            if d.starts_with(&prefix) {
                out.push((d.clone(), None));
            }
        }
        for (f, data) in &self.files {
            if f.starts_with(&prefix) {
                out.push((f.clone(), Some(data.clone())));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A tar archive of `path` (as GNU tar writes it: member names without the leading `/`).
    pub fn tar(&self, path: &str) -> Option<Vec<u8>> {
        let entries = self.walk(path);
        if entries.is_empty() {
            return None;
        }
        let mut builder = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let name = p.trim_start_matches('/');
            let mut h = tar::Header::new_gnu();
            h.set_mtime(MTIME);
            match data {
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    let name = format!("{name}/");
                    builder.append_data(&mut h, name, std::io::empty()).ok()?;
                }
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(d.len() as u64);
                    builder.append_data(&mut h, name, &d[..]).ok()?;
                }
            }
        }
        builder.into_inner().ok()
    }

    /// Extracts a tar archive under `dir`; returns how many entries were taken.
    pub fn untar(&mut self, dir: &str, archive: &[u8]) -> Result<usize, String> {
        let mut ar = tar::Archive::new(archive);
        let mut n = 0;
        for entry in ar.entries().map_err(|e| e.to_string())? {
            let mut entry = entry.map_err(|e| e.to_string())?;
            let name = entry
                .path()
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned();
            let target = normalize(&format!("{dir}/{name}"));
            match entry.header().entry_type() {
                tar::EntryType::Directory => self.mkdir_p(&target),
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut data).map_err(|e| e.to_string())?;
                    self.write(&target, data);
                }
                _ => continue,
            }
            n += 1;
        }
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flags {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn flag(query: &[(String, String)], names: &[&str]) -> bool {
    query
        .iter()
        .any(|(k, v)| names.contains(&k.as_str()) && matches!(v.as_str(), "1" | "true" | "True"))
}

/// Answers `/exec` or `/attach`: validates the query, upgrades, and serves the session.
pub(crate) fn handle(
    registry: Arc<PodRegistry>,
    pod: Pod,
    container: String,
    attach: bool,
    query: &[(String, String)],
    req: Request<Incoming>,
) -> Response<Body> {
    let mut flags = Flags {
        // The kubelet's own names are input/output/error; the API server's stdin/stdout/stderr
        // are accepted too.
        stdin: flag(query, &["input", "stdin"]),
        stdout: flag(query, &["output", "stdout"]),
        stderr: flag(query, &["error", "stderr"]),
        tty: flag(query, &["tty"]),
    };
    if flags.tty {
        flags.stderr = false;
    }
    if !flags.stdin && !flags.stdout && !flags.stderr {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    let command: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if !attach && command.is_empty() {
        return text(StatusCode::BAD_REQUEST, "missing command");
    }
    if !attach && finished(Some(&pod)) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} is not running"),
        );
    }
    let (protocol, resp) = match negotiate_upgrade(&req, PROTOCOLS) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    on_upgrade(req, move |session| async move {
        let ctx = Ctx {
            fs: registry.fs(&uid, &container, &pod_name),
            registry,
            uid,
            pod: pod_name,
            container,
            tty: flags.tty,
            closed: session.closed_watch(),
        };
        serve(session, protocol, flags, command, attach, ctx).await;
    });
    resp
}

struct Ctx {
    registry: Arc<PodRegistry>,
    fs: Arc<Mutex<Fs>>,
    uid: String,
    pod: String,
    container: String,
    tty: bool,
    closed: watch::Receiver<bool>,
}

#[derive(Default)]
struct Streams {
    error: Option<StreamWriter>,
    stdin: Option<StreamReader>,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
    resize: Option<StreamReader>,
}

async fn serve(
    mut session: Session,
    protocol: String,
    flags: Flags,
    command: Vec<String>,
    attach: bool,
    ctx: Ctx,
) {
    let resize_expected =
        flags.tty && matches!(protocol.as_str(), "v3.channel.k8s.io" | "v4.channel.k8s.io");
    let mut s = Streams::default();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    let complete = |s: &Streams| {
        s.error.is_some()
            && (!flags.stdin || s.stdin.is_some())
            && (!flags.stdout || s.stdout.is_some())
            && (!flags.stderr || s.stderr.is_some())
            && (!resize_expected || s.resize.is_some())
    };
    while !complete(&s) {
        let stream: Stream = tokio::select! {
            st = session.accept() => match st {
                Some(st) => st,
                None => return,
            },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!("timed out waiting for the client's streams");
                session.go_away();
                return;
            }
        };
        let kind = stream.header("streamtype").unwrap_or("").to_owned();
        let (reader, writer) = stream.split();
        let slot_taken = match kind.as_str() {
            "error" => s.error.replace(writer.clone()).is_some(),
            "stdin" => s.stdin.replace(reader).is_some(),
            "stdout" => s.stdout.replace(writer.clone()).is_some(),
            "stderr" => s.stderr.replace(writer.clone()).is_some(),
            "resize" => s.resize.replace(reader).is_some(),
            _ => true,
        };
        if slot_taken {
            writer.reset(rst::PROTOCOL_ERROR);
        } else {
            writer.reply(false);
        }
    }
    let out = Output {
        stdout: s.stdout.clone(),
        stderr: s.stderr.clone(),
        tty: flags.tty,
    };
    let resize_task = s.resize.take().map(|mut r| {
        let out = out.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(chunk) = r.recv().await {
                buf.extend_from_slice(&chunk);
                // Messages are concatenated JSON objects.
                let mut consumed = 0;
                let mut it =
                    serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
                while let Some(Ok(v)) = it.next() {
                    consumed = it.byte_offset();
                    let w = v.get("Width").and_then(|x| x.as_u64()).unwrap_or(0);
                    let h = v.get("Height").and_then(|x| x.as_u64()).unwrap_or(0);
                    out.raw(format!("resize {w}x{h}\r\n").as_bytes());
                }
                buf.drain(..consumed);
            }
        })
    });
    let mut stdin = s.stdin.take();
    let code = if attach {
        run_attach(&mut stdin, &out, &ctx).await
    } else {
        run(&command, &mut stdin, &out, &ctx).await
    };
    if let Some(t) = resize_task {
        t.abort();
    }
    if let Some(w) = &s.stdout {
        w.close();
    }
    if let Some(w) = &s.stderr {
        w.close();
    }
    if let Some(e) = &s.error {
        if let Some(msg) = status_message(&protocol, &command, code) {
            e.write(msg.as_bytes());
        }
        e.close();
    }
    let _ = tokio::time::timeout(LINGER, session.closed()).await;
    session.go_away();
}

/// What goes on the error stream for exit `code`.
fn status_message(protocol: &str, command: &[String], code: i32) -> Option<String> {
    if protocol == "v4.channel.k8s.io" {
        let status = if code == 0 {
            json!({"metadata": {}, "status": "Success"})
        } else {
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
        };
        Some(status.to_string())
    } else if code != 0 {
        Some(format!(
            "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
        ))
    } else {
        None
    }
}

/// Where a command writes.
#[derive(Clone)]
struct Output {
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
    tty: bool,
}

impl Output {
    fn cook(&self, data: &[u8]) -> Vec<u8> {
        if !self.tty {
            return data.to_vec();
        }
        let mut out = Vec::with_capacity(data.len() + 8);
        let mut prev = 0u8;
        for &b in data {
            if b == b'\n' && prev != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            prev = b;
        }
        out
    }

    fn raw(&self, data: &[u8]) {
        if let Some(w) = &self.stdout {
            w.write(data);
        }
    }

    fn out(&self, data: &[u8]) {
        self.raw(&self.cook(data));
    }

    fn err(&self, data: &[u8]) {
        match (&self.stderr, self.tty) {
            (Some(w), false) => {
                w.write(data);
            }
            _ => self.out(data),
        }
    }
}

async fn read_all(stdin: &mut Option<StreamReader>) -> Vec<u8> {
    match stdin {
        Some(r) => r.read_to_end().await,
        None => Vec::new(),
    }
}

async fn run_attach(stdin: &mut Option<StreamReader>, out: &Output, ctx: &Ctx) -> i32 {
    out.out(format!("attached to {}/{}\n", ctx.pod, ctx.container).as_bytes());
    match stdin {
        Some(r) => {
            while let Some(b) = r.recv().await {
                out.out(&b);
            }
        }
        None => {
            let mut changes = ctx.registry.subscribe();
            let mut closed = ctx.closed.clone();
            loop {
                if finished(ctx.registry.by_uid(&ctx.uid).as_ref()) || *closed.borrow() {
                    break;
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { break },
                    r = closed.changed() => if r.is_err() { break },
                }
            }
        }
    }
    0
}

/// Splits a `sh -c` script into words (single and double quotes, backslash escapes).
pub fn shell_words(script: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = script.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn run<'a>(
    argv: &'a [String],
    stdin: &'a mut Option<StreamReader>,
    out: &'a Output,
    ctx: &'a Ctx,
) -> futures::future::BoxFuture<'a, i32> {
    Box::pin(run_inner(argv, stdin, out, ctx))
}

async fn run_inner(
    argv: &[String],
    stdin: &mut Option<StreamReader>,
    out: &Output,
    ctx: &Ctx,
) -> i32 {
    let Some(prog) = argv.first() else {
        return 0;
    };
    let name = prog.rsplit('/').next().unwrap_or(prog).to_owned();
    let args = &argv[1..];
    match name.as_str() {
        "echo" => {
            out.out(format!("{}\n", args.join(" ")).as_bytes());
            0
        }
        "true" => 0,
        "false" => 1,
        "hostname" => {
            out.out(format!("{}\n", ctx.pod).as_bytes());
            0
        }
        "exit" => args.first().and_then(|a| a.parse().ok()).unwrap_or(0),
        "env" => {
            let mut env = vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                format!("HOSTNAME={}", ctx.pod),
                "HOME=/root".to_owned(),
            ];
            if ctx.tty {
                env.push("TERM=xterm".into());
            }
            out.out(format!("{}\n", env.join("\n")).as_bytes());
            0
        }
        "sh" | "bash" if args.first().map(String::as_str) == Some("-c") => {
            let script = args.get(1).cloned().unwrap_or_default();
            let words = shell_words(&script);
            run(&words, stdin, out, ctx).await
        }
        "cat" if args.is_empty() || args == ["-"] => {
            if let Some(r) = stdin {
                while let Some(b) = r.recv().await {
                    out.out(&b);
                }
            }
            0
        }
        "cat" => {
            let mut code = 0;
            for a in args {
                let data = ctx.fs.lock().unwrap().read(a).map(<[u8]>::to_vec);
                match data {
                    Some(d) => out.out(&d),
                    None => {
                        out.err(format!("cat: {a}: No such file or directory\n").as_bytes());
                        code = 1;
                    }
                }
            }
            code
        }
        "ls" => {
            let dir = args
                .iter()
                .find(|a| !a.starts_with('-'))
                .cloned()
                .unwrap_or_else(|| "/".into());
            let fs = ctx.fs.lock().unwrap();
            if fs.is_dir(&dir) {
                let names = fs.list(&dir);
                drop(fs);
                for n in names {
                    out.out(format!("{n}\n").as_bytes());
                }
                0
            } else if fs.read(&dir).is_some() {
                drop(fs);
                out.out(format!("{dir}\n").as_bytes());
                0
            } else {
                drop(fs);
                out.err(
                    format!("ls: cannot access '{dir}': No such file or directory\n").as_bytes(),
                );
                2
            }
        }
        "test" | "[" => {
            let args: Vec<&str> = args
                .iter()
                .map(String::as_str)
                .filter(|a| *a != "]")
                .collect();
            let fs = ctx.fs.lock().unwrap();
            let ok = match args.as_slice() {
                ["-d", p] => fs.is_dir(p),
                ["-f", p] => fs.read(p).is_some(),
                ["-e", p] => fs.is_dir(p) || fs.read(p).is_some(),
                _ => false,
            };
            if ok { 0 } else { 1 }
        }
        "mkdir" => {
            let mut fs = ctx.fs.lock().unwrap();
            for a in args.iter().filter(|a| !a.starts_with('-')) {
                fs.mkdir_p(a);
            }
            0
        }
        "rm" => {
            let mut fs = ctx.fs.lock().unwrap();
            let mut code = 0;
            for a in args.iter().filter(|a| !a.starts_with('-')) {
                if !fs.remove(a) {
                    code = 1;
                }
            }
            code
        }
        "sleep" => {
            // Sleeps until stdin closes or the client goes away.
            let mut closed = ctx.closed.clone();
            match stdin {
                Some(r) => {
                    tokio::select! {
                        _ = r.read_to_end() => {}
                        _ = closed.wait_for(|c| *c) => {}
                    }
                }
                None => {
                    let _ = closed.wait_for(|c| *c).await;
                }
            }
            0
        }
        "tar" => tar(args, stdin, out, ctx).await,
        other => {
            out.err(format!("{other}: command not found\n").as_bytes());
            127
        }
    }
}

/// `tar cf - PATH` / `tar xmf - [-C DIR]` (and the `-cf`, `-xf`, `-xmf` spellings).
async fn tar(args: &[String], stdin: &mut Option<StreamReader>, out: &Output, ctx: &Ctx) -> i32 {
    let mode = args
        .first()
        .map(|a| a.trim_start_matches('-'))
        .unwrap_or("");
    let mut dir = "/".to_owned();
    let mut paths = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" => {}
            "-C" => {
                if let Some(d) = it.next() {
                    dir = d.clone();
                }
            }
            a if a.starts_with('-') => {}
            a => paths.push(a.to_owned()),
        }
    }
    if mode.contains('c') {
        let Some(path) = paths.first() else {
            out.err(b"tar: Cowardly refusing to create an empty archive\n");
            return 2;
        };
        let path = if path.starts_with('/') {
            path.clone()
        } else {
            format!("{dir}/{path}")
        };
        let archive = ctx.fs.lock().unwrap().tar(&path);
        match archive {
            Some(a) => {
                out.raw(&a);
                0
            }
            None => {
                out.err(
                    format!("tar: {path}: Cannot stat: No such file or directory\n").as_bytes(),
                );
                2
            }
        }
    } else if mode.contains('x') {
        let data = read_all(stdin).await;
        if !ctx.fs.lock().unwrap().is_dir(&dir) {
            out.err(format!("tar: {dir}: Cannot open: No such file or directory\n").as_bytes());
            return 2;
        }
        let result = ctx.fs.lock().unwrap().untar(&dir, &data);
        match result {
            Ok(_) => 0,
            Err(e) => {
                out.err(format!("tar: {e}\n").as_bytes());
                2
            }
        }
    } else {
        out.err(b"tar: You must specify one of the '-Acdtrux' options\n");
        2
    }
}

/// Decodes what a v4 error stream carried into an exit code: `Ok(0)` for an empty stream or
/// `Success`, `Ok(N)` for `NonZeroExitCode`, otherwise the message (as client-go does).
pub fn decode_v4_status(data: &[u8]) -> Result<i32, String> {
    if data.is_empty() {
        return Ok(0);
    }
    let v: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("error stream protocol error: {e}"))?;
    match v.get("status").and_then(|s| s.as_str()) {
        Some("Success") => Ok(0),
        Some("Failure") if v.get("reason").and_then(|r| r.as_str()) == Some("NonZeroExitCode") => {
            let causes = v
                .pointer("/details/causes")
                .and_then(|c| c.as_array())
                .cloned()
                .unwrap_or_default();
            for c in causes {
                if c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode") {
                    return c
                        .get("message")
                        .and_then(|m| m.as_str())
                        .and_then(|m| m.parse().ok())
                        .ok_or_else(|| "error stream protocol error: invalid exit code".into());
                }
            }
            Err("error stream protocol error: no exit code".into())
        }
        _ => Err(v
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("unknown error")
            .to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_word_splitting() {
        assert_eq!(
            shell_words("echo 'a b' \"c\\\"d\" e\\ f"),
            ["echo", "a b", "c\"d", "e f"]
        );
        assert_eq!(shell_words("  "), Vec::<String>::new());
        assert_eq!(shell_words("echo ''"), ["echo", ""]);
    }

    #[test]
    fn fs_tar_roundtrip() {
        let mut fs = Fs::new("p");
        fs.write("/tmp/d/a.txt", b"A".to_vec());
        fs.write("/tmp/d/b.txt", b"BB".to_vec());
        assert_eq!(fs.list("/tmp"), ["d"]);
        assert_eq!(fs.list("/"), ["etc", "root", "tmp"]);
        let archive = fs.tar("/tmp/d").unwrap();
        let mut other = Fs::new("q");
        other.mkdir_p("/x");
        assert_eq!(other.untar("/x", &archive).unwrap(), 3);
        assert_eq!(other.read("/x/tmp/d/b.txt"), Some(&b"BB"[..]));
        assert!(other.is_dir("/x/tmp/d"));
        assert!(fs.tar("/nope").is_none());
        assert_eq!(normalize("a/./b/../c/"), "/a/c");
    }

    #[test]
    fn v4_status_roundtrip() {
        let cmd = vec!["exit".to_owned(), "3".to_owned()];
        let m = status_message("v4.channel.k8s.io", &cmd, 3).unwrap();
        assert_eq!(decode_v4_status(m.as_bytes()), Ok(3));
        let m = status_message("v4.channel.k8s.io", &cmd, 0).unwrap();
        assert_eq!(decode_v4_status(m.as_bytes()), Ok(0));
        assert_eq!(status_message("v2.channel.k8s.io", &cmd, 0), None);
    }
}
