//! The .deb: packages this build's ferry binary with cross/debian/mkdeb.sh (the script
//! cross/build.sh uses for the arm64 and armhf packages) and inspects it with dpkg-deb,
//! so a file dropped from the package fails the normal test run, not an install on a Pi.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (Debian: dpkg, systemd)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn build_deb(out: &Path) -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let printed = run(Command::new("bash")
        .arg(format!("{root}/cross/debian/mkdeb.sh"))
        .args(["--arch", "amd64", "--fast", "--bin"])
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .arg("--out")
        .arg(out));
    let deb = PathBuf::from(printed.trim());
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        format!("ferry_{}_amd64.deb", env!("CARGO_PKG_VERSION"))
    );
    deb
}

#[test]
fn deb_holds_binary_unit_conffile_and_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_deb(dir.path());

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" .{path}")))
            .unwrap_or_else(|| panic!("{path} missing from the package:\n{listing}"))
            .to_string()
    };
    assert!(entry("/usr/bin/ferry").starts_with("-rwxr-xr-x root/root"));
    assert!(entry("/lib/systemd/system/ferry.service").starts_with("-rw-r--r-- root/root"));
    assert!(entry("/etc/ferry/ferry.toml").starts_with("-rw-r----- root/root"));
    assert!(entry("/etc/ferry/passwd").starts_with("-rw-r----- root/root"));
    assert!(entry("/var/lib/ferry/").starts_with("drwxr-xr-x root/root"));
    entry("/usr/share/doc/ferry/copyright");

    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "ferry");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture").trim(), "amd64");
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>= 2."), "{depends}");
    assert!(depends.contains("adduser"), "{depends}");

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "{script} missing:\n{info}");
    }
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/ferry/ferry.toml\n/etc/ferry/passwd\n"
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    assert!(
        postinst.contains("systemctl enable ferry.service"),
        "{postinst}"
    );
    assert!(
        postinst.contains("chown root:ferry \"$f\" && chmod 0640 \"$f\""),
        "{postinst}"
    );

    // The packaged config is valid (with its /etc/ferry paths pointing into the unpacked
    // package), puts the store in the service's StateDirectory and turns authentication
    // on with the empty password file: nobody gets in until a user is added.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let packaged = std::fs::read_to_string(root.join("etc/ferry/ferry.toml")).unwrap();
    let here = packaged.replace("\"/etc/ferry/", &format!("\"{}/etc/ferry/", root.display()));
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, here).unwrap();
    let checked = run(Command::new(root.join("usr/bin/ferry"))
        .arg("check")
        .arg(&config));
    assert!(checked.contains("dir = \"/var/lib/ferry\""), "{checked}");
    assert!(checked.contains("allow_anonymous = false"), "{checked}");
    assert_eq!(
        std::fs::read(root.join("etc/ferry/passwd")).unwrap(),
        b"",
        "the packaged password file is empty"
    );

    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ferry.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/ferry --config /etc/ferry/ferry.toml",
        "ExecReload=/usr/bin/ferry reload --config /etc/ferry/ferry.toml",
        "StateDirectory=ferry",
        "ProtectSystem=strict",
        "WatchdogSec=30",
        "Restart=on-failure",
        "RestartPreventExitStatus=2 3",
        "User=ferry",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
}

/// systemd's own check of the unit (unknown keys, bad values), where systemd is installed.
#[test]
fn unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/cross/debian/ferry.service"
    ))
    .unwrap();
    // verify insists that ExecStart and ExecReload exist: point them at this build's binary.
    let unit = unit.replace(
        "=/usr/bin/ferry ",
        &format!("={} ", env!("CARGO_BIN_EXE_ferry")),
    );
    let path = dir.path().join("ferry.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
