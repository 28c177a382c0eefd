//! WebDriver helpers shared by the browser tests: ChromeDriver driven with
//! plain JSON over HTTP (no client crate), headless Chromium at 1366x768.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver request. ChromeDriver keeps connections open whatever the
/// request says, so the body is read by its Content-Length.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut bytes = vec![0u8; length];
    reader.read_exact(&mut bytes)?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn find_program(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

pub struct Driver {
    child: Child,
    addr: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = request(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    pub fn start(chromedriver: &Path, chromium: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, body)) = request(&addr, "GET", "/status", None) {
                if body.contains("\"ready\":true") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1366,768", "--lang=en-GB"]
            }
        }}});
        let (status, body) =
            request(&addr, "POST", "/session", Some(&capabilities.to_string())).unwrap();
        assert_eq!(status, 200, "new session: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let session = body["value"]["sessionId"].as_str().unwrap().to_string();
        let driver = Driver {
            child,
            addr,
            session,
        };
        // The viewport itself at 1366x768 (the window size includes none of
        // it in headless mode, but be exact), so screenshots are that size.
        driver.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Emulation.setDeviceMetricsOverride",
                "params": { "width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": false } })),
        );
        driver
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = body.map(|b| b.to_string());
        let (status, text) = request(&self.addr, method, &path, body.as_deref()).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{method} {path}: {text}");
        value["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Waits until `script` returns something truthy; returns it. A script
    /// that throws (an element it reads is not there yet, mid-render) is
    /// tried again; the last error is in the timeout's message.
    pub fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        let guarded = format!(
            "try {{ return (function () {{ {script} }})(); }} catch (e) {{ return {{ thrown: String(e) }}; }}"
        );
        let mut last_error = None;
        loop {
            let value = self.script(&guarded);
            let value = match value.get("thrown") {
                Some(error) => {
                    last_error = Some(error.to_string());
                    Value::Null
                }
                None => value,
            };
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (last script error: {last_error:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT].as_str().unwrap().to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        // Into the middle of the viewport, clear of the fixed status bar.
        self.script_with(
            "arguments[0].scrollIntoView({ block: 'center' })",
            json!([{ ELEMENT: id }]),
        );
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Runs `script` with `args` (`arguments[0]`…).
    pub fn script_with(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs an asynchronous script: it calls `arguments[arguments.length - 1]`
    /// with its result.
    pub fn script_async(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Sets a field's value as a user would leave it (date inputs and
    /// selects included) and fires `input` and `change`.
    pub fn set_value(&self, css: &str, value: &str) {
        let found = self.script_with(
            "const el = document.querySelector(arguments[0]);
             if (!el) return false;
             el.value = arguments[1];
             el.dispatchEvent(new Event('input', { bubbles: true }));
             el.dispatchEvent(new Event('change', { bubbles: true }));
             return el.value === arguments[1];",
            json!([css, value]),
        );
        assert_eq!(found, json!(true), "set {css} to {value}");
    }

    /// Sends keys to whatever has the focus (WebDriver actions).
    pub fn keys(&self, text: &str) {
        let mut actions = Vec::new();
        for c in text.chars() {
            actions.push(json!({ "type": "keyDown", "value": c.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": c.to_string() }));
        }
        self.call(
            "POST",
            "/actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        );
    }

    /// Runs axe-core (its source given) on the page; returns the violations
    /// of impact `serious` or `critical`, as "rule: target" lines.
    pub fn axe_serious(&self, axe_source: &str) -> Vec<String> {
        self.script_with(axe_source, json!([]));
        // The page's timeouts for scripts default to 30 s: axe takes well under it.
        let result = self.script_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done({ passes: r.passes.length, violations: r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', ')) }))
               .catch(e => done({ passes: 0, violations: ['axe failed: ' + e] }));",
            json!([]),
        );
        let passes = result["passes"].as_u64().unwrap_or(0);
        assert!(passes > 0, "axe-core checked nothing: {result}");
        eprintln!("axe-core: {passes} rules passed");
        result["violations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_else(|| vec![format!("axe answered {result}")])
    }

    /// Opens `url` signed out, and signs in at the form it shows with
    /// `secret` (a token, or the demo login).
    pub fn sign_in_at(&self, url: &str, secret: &str) {
        self.goto(url);
        self.wait_for(
            "the sign-in form",
            "return document.getElementById('token') !== null",
        );
        self.type_into("#token", secret);
        self.click("#sign-in-submit");
    }

    /// Fails naming the page when axe-core (`axe`, its source, when
    /// installed) finds a serious or critical violation on it.
    pub fn check_axe(&self, axe: Option<&str>, page: &str) {
        if let Some(axe) = axe {
            let violations = self.axe_serious(axe);
            assert!(violations.is_empty(), "axe on {page}: {violations:#?}");
            eprintln!("axe-core: no serious or critical violation on {page}");
        }
    }

    pub fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call("GET", "/screenshot", None);
        let bytes = base64_decode(data.as_str().unwrap());
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// axe-core's source (`tests/axe`, installed by `npm ci`), or `None`,
/// said loudly (a skip, which fails under `CI=true`).
pub fn axe_source() -> Option<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/axe/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&path).ok();
    if source.is_none() {
        openptl_testkit::skip(
            "axe-core is not installed (cd tests/axe && npm ci); the accessibility checks did not run",
        );
    }
    source
}

/// Standard base64 (the screenshot encoding), without a dependency.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64"),
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let n = chunk.iter().take_while(|c| **c != b'=').count();
        let mut acc = 0u32;
        for (i, c) in chunk[..n].iter().enumerate() {
            acc |= u32::from(value(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..n.max(1)]);
    }
    out
}

/// Chromium and ChromeDriver, where Debian puts them (or `CHROMIUM` and
/// `CHROMEDRIVER`); `None` when either is missing.
pub fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromedriver = find_program(
        "CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    );
    let chromium = find_program(
        "CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    Some((chromedriver?, chromium?))
}
