use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// Made by the argon2 reference implementation (the `argon2` CLI of Debian's argon2
/// package, 20171227), not by the crate under test: `echo -n password | argon2 somesalt
/// -t 2 -m 8 -p 1 -e` with -i / -id / -d, then `-m 16 -v 10`, then `-id -p 2`. The same
/// strings are in the reference's src/test.c.
const REFERENCE: &[&str] = &[
    "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
    "$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8",
    "$argon2d$v=19$m=256,t=2,p=1$c29tZXNhbHQ$JcTui6RIBUtJ78gE5Hi52CO+H5vS6Z9R1uxAB6OhUB8",
    "$argon2i$v=16$m=65536,t=2,p=1$c29tZXNhbHQ$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ",
    "$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc",
];

/// The reference implementation with ferry's parameters and a non-ASCII password:
/// `echo -n 'Tr0ub4dor&3 pässwörd' | argon2 ferrysalt0123456 -id -t 5 -k 7168 -p 1 -e`.
const REFERENCE_FERRY_PARAMS: &str = "$argon2id$v=19$m=7168,t=5,p=1$ZmVycnlzYWx0MDEyMzQ1Ng$GkXDCNgpOeAbLObC+Wu9WSh8rFGxBaQualMwUwxhWNc";

fn err(text: &str) -> String {
    match PasswordFile::parse(text, "passwd") {
        Ok(_) => panic!("parsed: {text:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parses_comments_blank_lines_and_crlf() {
    let text = format!(
        "# ferry users\n\n  # indented comment\r\nalice:{}\r\nbob:{}   \n\n",
        REFERENCE[0], REFERENCE[1]
    );
    let file = PasswordFile::parse(&text, "passwd").unwrap();
    assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!((file.len(), file.is_empty()), (2, false));
    assert!(file.contains("bob") && !file.contains("carol"));
    let bom = format!("\u{feff}alice:{}\n", REFERENCE[0]);
    let file = PasswordFile::parse(&bom, "passwd").unwrap();
    assert_eq!(file.verify("alice", b"password"), Verified::Ok);
    assert!(PasswordFile::parse("", "x").unwrap().is_empty());
    assert!(PasswordFile::parse("# only\n", "x").unwrap().is_empty());
}

#[test]
fn every_malformed_line_is_named_with_its_problem() {
    let ok = REFERENCE[0];
    assert_eq!(
        err(&format!("# c\n\nalice:{ok}\nbob {ok}\n")),
        "passwd:4: missing ':' between user name and hash"
    );
    assert_eq!(err(&format!(":{ok}")), "passwd:1: empty user name");
    assert_eq!(
        err(&format!("\n al:{ok}")),
        "passwd:2: user name contains whitespace"
    );
    assert_eq!(
        err(&format!("a\u{1b}l:{ok}")),
        "passwd:1: user name contains a control character"
    );
    assert_eq!(
        err(&format!("a:l:{ok}")),
        "passwd:1: user name contains ':'"
    );
    assert_eq!(
        err("alice:secret\n"),
        "passwd:1: the hash of user \"alice\" is not a PHC string \
         ($argon2id$v=19$m=..,t=..,p=..$salt$hash)"
    );
    assert_eq!(
        err(
            "alice:$pbkdf2-sha256$i=1000$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4\n"
        ),
        "passwd:1: the hash of user \"alice\" uses algorithm 'pbkdf2-sha256', not argon2i, \
         argon2d or argon2id"
    );
    assert_eq!(
        err(&format!("a:{}", ok.replace("v=19", "v=18"))),
        "passwd:1: the hash of user \"a\" has argon2 version 18, not 16 or 19"
    );
    assert!(
        err(&format!("a:{}", ok.replace("m=256", "m=4")))
            .starts_with("passwd:1: the hash of user \"a\" has invalid parameters: ")
    );
    assert_eq!(
        err(&format!("a:{}", ok.replace("m=256", "m=65537"))),
        "passwd:1: the hash of user \"a\" asks for m=65537 KiB, t=2: above the limit of \
         m=65536 KiB, t=10 (every login would allocate m)"
    );
    assert_eq!(
        err(&format!("a:{}", ok.replace("t=2", "t=11"))),
        "passwd:1: the hash of user \"a\" asks for m=256 KiB, t=11: above the limit of \
         m=65536 KiB, t=10 (every login would allocate m)"
    );
    assert_eq!(
        err("a:$argon2id$v=19$m=256,t=2,p=1$c2FsdA$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"),
        "passwd:1: the hash of user \"a\" has no salt, or one shorter than 8 bytes or not in B64"
    );
    assert_eq!(
        err("a:$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ"),
        "passwd:1: the hash of user \"a\" has no hash output after the salt"
    );
    assert_eq!(
        err(&format!(
            "alice:{ok}\nbob:{ok}\n# x\nalice:{}\n",
            REFERENCE[1]
        )),
        "passwd:4: duplicate user \"alice\" (first on line 1)"
    );
}

#[test]
fn errors_never_show_the_hash() {
    for broken in [
        REFERENCE[0].replace("m=256", "m=999999"),
        REFERENCE[0].replace("$c29tZXNhbHQ$", "$c2FsdA$"),
        REFERENCE[0].replace("$argon2id", "$scrypt"),
        REFERENCE[0].replace("v=19", "v=1"),
        format!("{}!", REFERENCE[0]),
    ] {
        let e = err(&format!("alice:{broken}\n"));
        assert!(e.starts_with("passwd:1: the hash of user \"alice\""), "{e}");
        assert!(!e.contains("nf65EO") && !e.contains("c29tZXNhbHQ"), "{e}");
    }
}

#[test]
fn load_names_the_path_and_the_line_of_bad_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(&path, b"# one\n# tw\xff\n").unwrap();
    let e = PasswordFile::load(&path).unwrap_err().to_string();
    assert_eq!(e, format!("{}:2: not valid UTF-8", path.display()));
    let missing = dir.path().join("missing");
    match PasswordFile::load(&missing) {
        Err(PasswdError::Read { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::NotFound)
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, format!("x:{}\nbad line\n", REFERENCE[0])).unwrap();
    let e = PasswordFile::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:2: missing ':' between user name and hash",
            path.display()
        )
    );
}

#[test]
fn hashes_made_by_the_reference_implementation_verify() {
    for (i, phc) in REFERENCE.iter().enumerate() {
        let file = PasswordFile::parse(&format!("u{i}:{phc}\n"), "ref").unwrap();
        let user = format!("u{i}");
        assert_eq!(file.verify(&user, b"password"), Verified::Ok, "{phc}");
        assert_eq!(
            file.verify(&user, b"passwore"),
            Verified::BadPassword,
            "{phc}"
        );
    }
    let file = PasswordFile::parse(&format!("ferry:{REFERENCE_FERRY_PARAMS}"), "ref").unwrap();
    let pw = "Tr0ub4dor&3 pässwörd".as_bytes();
    assert_eq!(file.verify("ferry", pw), Verified::Ok);
    assert_eq!(file.verify("ferry", &pw[1..]), Verified::BadPassword);
}

#[test]
fn a_hash_without_version_is_version_16() {
    // As the reference implementation decodes it.
    let no_v = REFERENCE[3].replace("v=16$", "");
    let file = PasswordFile::parse(&format!("old:{no_v}\n"), "x").unwrap();
    assert_eq!(file.verify("old", b"password"), Verified::Ok);
}

#[test]
fn verify_tells_ok_unknown_user_and_bad_password_apart() {
    let mut file = PasswordFile::new();
    file.set("alice", b"correct horse").unwrap();
    assert_eq!(file.verify("alice", b"correct horse"), Verified::Ok);
    assert_eq!(
        file.verify("alice", b"correct horsE"),
        Verified::BadPassword
    );
    assert_eq!(file.verify("alice", b""), Verified::BadPassword);
    assert_eq!(
        file.verify("Alice", b"correct horse"),
        Verified::UnknownUser
    );
    assert_eq!(file.verify("", b"correct horse"), Verified::UnknownUser);
}

#[test]
fn the_dummy_hash_costs_what_a_new_hash_costs() {
    let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
    let ours = hash_password(b"x").unwrap();
    let ours = PasswordHash::new(&ours).unwrap();
    assert_eq!(dummy.algorithm, ours.algorithm);
    assert_eq!(dummy.version, ours.version);
    assert_eq!(dummy.params, ours.params);
    assert_eq!(dummy.hash.map(|h| h.len()), ours.hash.map(|h| h.len()));
    assert!(check_hash(DUMMY_HASH).is_ok());
}

#[test]
fn new_hashes_are_argon2id_with_ferry_parameters_and_random_salt() {
    let a = hash_password(b"secret").unwrap();
    let b = hash_password(b"secret").unwrap();
    assert!(a.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{a}");
    assert_ne!(a, b, "salts differ");
    let salt = PasswordHash::new(&a).unwrap().salt.unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(salt.decode_b64(&mut buf).unwrap().len(), SALT_LEN);
    assert!(matches(&a, b"secret") && !matches(&a, b"secreT"));
    assert!(matches!(
        hash_password(b""),
        Err(PasswdError::EmptyPassword)
    ));
}

#[test]
fn set_refuses_bad_user_names_and_empty_passwords() {
    let mut file = PasswordFile::new();
    for (user, problem) in [
        ("", UserProblem::Empty),
        ("a b", UserProblem::Whitespace),
        ("a\u{a0}b", UserProblem::Whitespace),
        ("a\tb", UserProblem::Control),
        ("a:b", UserProblem::Colon),
        ("#a", UserProblem::LeadingHash),
    ] {
        match file.set(user, b"pw") {
            Err(PasswdError::InvalidUser { problem: p }) => assert_eq!(p, problem, "{user:?}"),
            other => panic!("{user:?}: {other:?}"),
        }
    }
    assert!(matches!(
        file.set("alice", b""),
        Err(PasswdError::EmptyPassword)
    ));
    assert!(file.is_empty());
    file.set("ä-ø_.@x", b"pw").unwrap(); // non-ASCII, punctuation: fine
    assert_eq!(file.len(), 1);
}

#[test]
fn set_save_load_verify_round_trip_keeps_comments_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    let text = format!(
        "# gateway users\nalice:{}\n\n# sensors\nbob:{}\n",
        REFERENCE[0], REFERENCE[1]
    );
    let mut file = PasswordFile::parse(&text, "x").unwrap();
    file.set("alice", b"new alice").unwrap();
    file.set("carol", b"carol pw").unwrap();
    assert!(file.remove("bob"));
    assert!(!file.remove("bob"));
    file.save(&path).unwrap();

    let loaded = PasswordFile::load(&path).unwrap();
    assert_eq!(loaded.users().collect::<Vec<_>>(), ["alice", "carol"]);
    assert_eq!(loaded.verify("alice", b"new alice"), Verified::Ok);
    assert_eq!(loaded.verify("alice", b"password"), Verified::BadPassword);
    assert_eq!(loaded.verify("carol", b"carol pw"), Verified::Ok);
    assert_eq!(loaded.verify("bob", b"password"), Verified::UnknownUser);
    let saved = std::fs::read_to_string(&path).unwrap();
    let shape: Vec<&str> = saved
        .lines()
        .map(|l| l.split_once(':').map_or(l, |(u, _)| u))
        .collect();
    assert_eq!(
        shape,
        ["# gateway users", "alice", "", "# sensors", "carol"]
    );
    assert_eq!(loaded.to_text(), saved);
}

#[test]
fn save_makes_mode_0640_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    let mut file = PasswordFile::new();
    file.set("alice", b"pw").unwrap();
    file.save(&path).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o640);
    // An existing file with another mode gets 0640 too.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
    file.save(&path).unwrap();
    assert_eq!(mode(&path), 0o640);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["passwd"]);
    // Owner and group are kept (here: ours, the only ones a test can count on).
    let meta = std::fs::metadata(&path).unwrap();
    let mine = std::fs::metadata(dir.path()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (mine.uid(), mine.gid()));
}

#[test]
fn save_through_a_symlink_replaces_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    let link = dir.path().join("link");
    std::fs::write(&real, "").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut file = PasswordFile::new();
    file.set("alice", b"pw").unwrap();
    file.save(&link).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        PasswordFile::load(&real).unwrap().verify("alice", b"pw"),
        Verified::Ok
    );
}

#[test]
fn save_into_a_missing_directory_fails_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope").join("passwd");
    let e = PasswordFile::new().save(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "cannot save {} (create temporary file): ",
            path.display()
        )),
        "{e}"
    );
}

/// A hash made by a third implementation, python's argon2-cffi, when it is installed
/// (skipped otherwise; the reference vectors above always run).
#[test]
fn argon2_cffi_hash_verifies_when_available() {
    let script = "import argon2, sys\n\
        h = argon2.PasswordHasher(time_cost=3, memory_cost=4096, parallelism=2)\n\
        sys.stdout.write(h.hash('s3cr\\u00e9t w0rd'))";
    let out = match std::process::Command::new("python3")
        .args(["-c", script])
        .output()
    {
        Ok(out) if out.status.success() => out,
        _ => {
            eprintln!("argon2-cffi not available: skipped");
            return;
        }
    };
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=4096,t=3,p=2$"), "{phc}");
    let file = PasswordFile::parse(&format!("py:{phc}\n"), "py").unwrap();
    assert_eq!(
        file.verify("py", "s3cr\u{e9}t w0rd".as_bytes()),
        Verified::Ok
    );
    assert_eq!(file.verify("py", b"s3cret w0rd"), Verified::BadPassword);
}

/// `cargo test --release --lib policy::passwd::tests::timing -- --ignored --nocapture`
/// prints what one hash and one verify cost on this machine.
#[test]
#[ignore]
fn timing() {
    let n = 20;
    let start = std::time::Instant::now();
    let mut last = String::new();
    for _ in 0..n {
        last = hash_password(b"timing password").unwrap();
    }
    let hash = start.elapsed() / n;
    let file = PasswordFile::parse(&format!("u:{last}"), "t").unwrap();
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert_eq!(file.verify("u", b"timing password"), Verified::Ok);
    }
    let ok = start.elapsed() / n;
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert_eq!(file.verify("v", b"timing password"), Verified::UnknownUser);
    }
    let unknown = start.elapsed() / n;
    let start = std::time::Instant::now();
    for _ in 0..n {
        assert_eq!(file.verify("u", b"wrong"), Verified::BadPassword);
    }
    let bad = start.elapsed() / n;
    println!(
        "argon2id m={M_COST_KIB} KiB t={T_COST} p={P_COST}: hash {hash:?}, verify ok {ok:?}, \
         unknown user {unknown:?}, bad password {bad:?} (mean of {n})"
    );
}
