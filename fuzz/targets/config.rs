//! `ferry::config::parse` on arbitrary text (bytes read as lossy UTF-8).
//!
//! Checks: no panic, whatever the text (the error messages, with their line:column
//! positions, are formatted too); and a text that parses gives a `Config` whose
//! `to_toml()` parses back to an equal `Config` and prints the same text again.

use ferry::config::parse;

pub const DICT: &[&[u8]] = &[
    b"[mqtt]\n",
    b"[nats]\n",
    b"[store]\n",
    b"[[upstream]]\n",
    b"[[forward]]\n",
    b"[[acl]]\n",
    b"[metrics]\n",
    b"[log]\n",
    b"[limits]\n",
    b"[gateway]\n",
    b"[tls]\n",
    b"[auth]\n",
    b"tls_listen = ",
    b"ws_path = ",
    b"identity_from_cert = ",
    b"acl_default = ",
    b"user = ",
    b"\"sensors/%u/%c/#\"",
    b"board = ",
    b"\"rpi-4\"",
    b"\"1KiB\"",
    b"\"256MiB\"",
    b"\"4GiB\"",
    b"\"1.5MiB\"",
    b"\"0B\"",
    b"\"1s\"",
    b"\"0ms\"",
    b"\"18h\"",
    b"\"1d\"",
    b"\"100ns\"",
    b"\"1.5s\"",
    b"true",
    b"false",
    b"\"\"",
    b"\"mqtt://h\"",
    b"\"mqtts://[::1]:8883\"",
    b"\"127.0.0.1:0\"",
    b"\"[::]:65535\"",
    b"\"{topic}\"",
    b"\"#\"",
    b"\"+\"",
    b"\"$share/g/#\"",
    b"\"a\\u0000b\"",
    b"\"\\u00e9\"",
    b"'''",
    b"\"\"\"",
    b"1979-05-27T07:32:00Z",
    b"{ }",
    b"[ ]",
    b"nan",
    b"inf",
    b"-0",
    b"0x10",
    b"1_000",
];

pub fn run(data: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(data);
    let cfg = match parse(&text, "fuzz.toml") {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = e.to_string();
            return Ok(false);
        }
    };
    let written = cfg.to_toml();
    let back = parse(&written, "to_toml.toml")
        .map_err(|e| format!("to_toml output does not parse: {e}\n--- output ---\n{written}"))?;
    if back != cfg {
        return Err(format!(
            "to_toml output parses to another Config\n--- parsed ---\n{cfg:#?}\n\
             --- output ---\n{written}\n--- parsed back ---\n{back:#?}"
        ));
    }
    let again = back.to_toml();
    if again != written {
        return Err(format!(
            "to_toml is not stable\n--- first ---\n{written}\n--- second ---\n{again}"
        ));
    }
    Ok(true)
}
