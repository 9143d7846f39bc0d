//! A headless Chromium driven over WebDriver (the W3C protocol that
//! Debian's `chromedriver` speaks, as JSON over HTTP on loopback): enough
//! of it to open pages, fill and submit forms, read what a page shows and
//! take screenshots, as the console's browser tests need.
//!
//! Chromium and chromedriver come from Debian (`scripts/install-browser.sh`).
//! Where they are missing, [`required`] fails the test, or with
//! `RANVIER_SKIP_BROWSER_TESTS=1` says loudly that it is skipped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where chromedriver and Chromium are, from Debian's packages.
const DRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether a browser test can run: true with chromedriver and Chromium;
/// false (said loudly) when `RANVIER_SKIP_BROWSER_TESTS=1` allows
/// skipping; otherwise the test fails, saying what is missing.
pub fn required() -> bool {
    crate::present_or_skipped(
        Path::new(DRIVER).exists() && Path::new(CHROMIUM).exists(),
        "RANVIER_SKIP_BROWSER_TESTS",
        "browser test (no chromium or chromedriver: scripts/install-browser.sh)",
        "chromium and chromedriver are required (scripts/install-browser.sh)",
    )
}

/// One browser session, with its chromedriver process.
pub struct Browser {
    driver: Child,
    address: String,
    session: String,
    /// Where screenshots go.
    shots: PathBuf,
}

/// One element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a 1280×800 window;
    /// screenshots go to `shots`.
    pub async fn start(shots: &Path) -> anyhow::Result<Browser> {
        std::fs::create_dir_all(shots)?;
        let port = crate::free_port()?;
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start chromedriver")?;
        let address = format!("127.0.0.1:{port}");
        let mut browser = Browser { driver, address, session: String::new(), shots: shots.to_owned() };
        crate::eventually(Duration::from_secs(20), "chromedriver answers", || async {
            call(&browser.address, "GET", "/status", None).is_ok_and(|v| v["value"]["ready"] == true)
        })
        .await?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1280,800", "--hide-scrollbars"],
            },
        }}});
        let answer = call(&browser.address, "POST", "/session", Some(&capabilities))?;
        browser.session = answer["value"]["sessionId"].as_str().context("no session id from chromedriver")?.to_owned();
        Ok(browser)
    }

    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let answer = call(&self.address, method, &format!("/session/{}{path}", self.session), body)?;
        if let Some(error) = answer["value"]["error"].as_str() {
            bail!("WebDriver {method} {path}: {error}: {}", answer["value"]["message"]);
        }
        Ok(answer["value"].clone())
    }

    /// Opens `url` and waits for it to load.
    pub fn open(&self, url: &str) -> anyhow::Result<()> {
        self.command("POST", "/url", Some(&json!({ "url": url }))).map(drop)
    }

    /// The current page's address.
    pub fn url(&self) -> anyhow::Result<String> {
        self.command("GET", "/url", None)?.as_str().map(str::to_owned).context("no url")
    }

    /// The first element matching CSS `selector`.
    pub fn find(&self, selector: &str) -> anyhow::Result<Element> {
        let found = self.command("POST", "/element", Some(&json!({"using": "css selector", "value": selector})));
        let id = found.ok().and_then(|found| found[ELEMENT].as_str().map(str::to_owned));
        id.map(Element).with_context(|| {
            let url = self.url().unwrap_or_default();
            let shown = self.execute("return document.body.innerText").unwrap_or_default();
            format!("no element {selector} on {url}, which shows: {}", shown.as_str().unwrap_or_default())
        })
    }

    /// Clicks `element`, on the page as it is (a check-box, an option).
    pub fn click(&self, element: &Element) -> anyhow::Result<()> {
        self.command("POST", &format!("/element/{}/click", element.0), Some(&json!({}))).map(drop)
    }

    /// Clicks the first element matching `selector`, on the page as it is.
    pub fn click_on(&self, selector: &str) -> anyhow::Result<()> {
        self.click(&self.find(selector)?)
    }

    /// Clicks the link or submit button matching `selector` and waits until
    /// the page it leads to has loaded (a click answers once the click is
    /// done, which may be before a form's answer has arrived).
    pub async fn follow(&self, selector: &str) -> anyhow::Result<()> {
        let element = self.find(selector)?;
        self.execute("window.__ranvierLeft = true")?;
        self.click(&element)?;
        crate::eventually(Duration::from_secs(20), &format!("the page after {selector} loads"), || async {
            self.execute("return window.__ranvierLeft === undefined && document.readyState === 'complete'")
                .is_ok_and(|loaded| loaded == Value::Bool(true))
        })
        .await
    }

    /// Types `text` into the field matching `selector`.
    pub fn type_into(&self, selector: &str, text: &str) -> anyhow::Result<()> {
        let field = self.find(selector)?;
        self.command("POST", &format!("/element/{}/value", field.0), Some(&json!({ "text": text }))).map(drop)
    }

    /// Chooses `value` in the select matching `selector`.
    pub fn choose(&self, selector: &str, value: &str) -> anyhow::Result<()> {
        self.click_on(&format!("{selector} option[value=\"{value}\"]"))
    }

    /// The visible text of the first element matching `selector`, with
    /// runs of whitespace made one space.
    pub fn text(&self, selector: &str) -> anyhow::Result<String> {
        let element = self.find(selector)?;
        let text = self.command("GET", &format!("/element/{}/text", element.0), None)?;
        Ok(text.as_str().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// Whether the element matching `selector` is enabled.
    pub fn enabled(&self, selector: &str) -> anyhow::Result<bool> {
        let element = self.find(selector)?;
        Ok(self.command("GET", &format!("/element/{}/enabled", element.0), None)? == Value::Bool(true))
    }

    /// The visible text of the whole page.
    pub fn page_text(&self) -> anyhow::Result<String> {
        self.text("body")
    }

    /// Runs `script` (a function body) in the page; answers what it returns.
    pub fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.command("POST", "/execute/sync", Some(&json!({"script": script, "args": []})))
    }

    /// Sets the window's size (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.command("POST", "/window/rect", Some(&json!({"width": width, "height": height}))).map(drop)
    }

    /// Saves a screenshot of the window as `<name>.png`; answers its path.
    pub fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let encoded = self.command("GET", "/screenshot", None)?;
        let png = base64_decode(encoded.as_str().context("no screenshot")?)?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = call(&self.address, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver call: `method path` with a JSON body, answered as JSON.
fn call(address: &str, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // chromedriver keeps the connection open whatever the request asks:
    // the answer ends where its Content-Length says.
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .context("chromedriver's answer has no Content-Length")?;
            if raw.len() >= split + 4 + length {
                return serde_json::from_slice(&raw[split + 4..split + 4 + length])
                    .with_context(|| format!("{method} {path}: not JSON"));
            }
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            bail!("{method} {path}: chromedriver closed the connection mid-answer");
        }
        raw.extend_from_slice(&buffer[..read]);
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {}", c as char),
        }
        .into())
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|c| *c != b'=').collect();
        let mut bits = 0u32;
        for (i, c) in data.iter().enumerate() {
            bits |= value(*c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..data.len().max(1)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_every_padding() {
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert!(base64_decode("T*==").is_err());
    }
}
