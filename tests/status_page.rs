//! The status page (issue 14) in a real headless browser (Debian's chromium): `GET /` on
//! the metrics endpoint loads, fetches `/status.json` with its script and shows each
//! upstream with its state and backlog. The page has no external assets.

mod common;

use common::raw::Raw;
use common::{Ferry, dead_port, wait_until};
use rumqttc::QoS;
use std::process::Command;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(10);

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_status_page_shows_each_upstream_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (cloud, _held) = dead_port();
    let (backup, _held2) = dead_port();
    let config = format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"cloud\"\nurl = \"mqtt://127.0.0.1:{cloud}\"\nbackoff_max = \"200ms\"\n\
         [[upstream]]\nname = \"backup\"\nurl = \"mqtt://127.0.0.1:{backup}\"\nbackoff_max = \"200ms\"\n\
         [[forward]]\nupstream = \"cloud\"\nfilter = \"sensors/#\"\nqos = 1\n\
         [[forward]]\nupstream = \"backup\"\nfilter = \"sensors/#\"\nqos = 1\n",
        common::base_config(dir.path())
    );
    let f = Ferry::start(dir.path(), &config);
    let (mut device, _) = Raw::connect(f.mqtt, "dev-page", true, 30);
    for i in 0..7u16 {
        device.publish("sensors/t", QoS::AtLeastOnce, i + 1, false, b"1");
        assert!(matches!(device.recv(SECS), Ok(rumqttc::Packet::PubAck(_))));
    }
    wait_until(SECS, "the backlog counted", || {
        f.metric("ferry_upstream_backlog_events{upstream=\"cloud\"}") == 7
    });
    let addr = f.addr_of("metrics endpoint ready").unwrap();
    let page = get(addr, "/");
    assert!(
        page.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/html"),
        "{page}"
    );
    let html = page.split("\r\n\r\n").nth(1).unwrap();
    assert!(html.len() < 8 * 1024, "a few KiB: {}", html.len());
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(external), "no external assets: {external}");
    }
    let json = get(addr, "/status.json");
    let v: serde_json::Value =
        serde_json::from_str(json.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(v["upstreams"][0]["name"], "cloud");
    assert_eq!(v["upstreams"][0]["backlog_events"], 7);

    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("http://{addr}/"))
        .output()
        .expect("chromium (Debian's chromium package; tests/run.sh installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains(&format!(
            "<span id=\"version\">{}</span>",
            env!("CARGO_PKG_VERSION")
        )),
        "{dom}"
    );
    for (name, backlog) in [("cloud", 7), ("backup", 7)] {
        let at = dom
            .find(&format!("<tr data-upstream=\"{name}\">"))
            .unwrap_or_else(|| panic!("no row for {name}:\n{dom}"));
        let row = &dom[at..at + dom[at..].find("</tr>").unwrap()];
        assert!(
            row.contains(&format!(
                "<td>{name}</td><td class=\"down\">down</td><td>{backlog} ("
            )),
            "{row}"
        );
        assert!(row.contains("<polyline"), "the backlog chart: {row}");
    }
    assert!(dom.contains("connections: MQTT 1 (tcp 1"), "{dom}");
    assert!(
        dom.contains("<div id=\"err\"></div>"),
        "no error shown: {dom}"
    );
}
