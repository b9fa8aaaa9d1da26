//! Certificates made at test time with the openssl CLI: a private CA, a server
//! certificate for localhost/127.0.0.1, and client certificates with a chosen CN and SAN.

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA in `dir`, named `name`.
pub struct Ca {
    dir: PathBuf,
    name: String,
    pub cert: PathBuf,
    key: PathBuf,
}

/// A certificate and its key.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let (cert, key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
        let subj = format!("/CN={name} test CA");
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subj];
        args.extend(EC);
        args.extend([
            "-keyout",
            &key,
            "-out",
            &cert,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &args);
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    fn issue(&self, file: &str, cn: &str, ext: &str) -> Issued {
        let dir = &self.dir;
        let (key, csr, cert) = (
            format!("{}-{file}.key", self.name),
            format!("{}-{file}.csr", self.name),
            format!("{}-{file}.pem", self.name),
        );
        let subj = format!("/CN={cn}");
        let mut args = vec!["req", "-subj", &subj, "-keyout", &key, "-out", &csr];
        args.extend(EC);
        openssl(dir, &args);
        let ext_file = format!("{}-{file}-ext.cnf", self.name);
        std::fs::write(dir.join(&ext_file), ext).unwrap();
        let (ca, ca_key) = (
            self.cert.display().to_string(),
            self.key.display().to_string(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-extfile",
                &ext_file,
            ],
        );
        Issued {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    /// A server certificate for localhost and 127.0.0.1.
    pub fn server(&self) -> Issued {
        self.issue(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// A client certificate with common name `cn` and DNS SAN `san`.
    pub fn client(&self, cn: &str, san: &str) -> Issued {
        self.issue(
            &format!("client-{cn}"),
            cn,
            &format!(
                "subjectAltName=DNS:{san}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
            ),
        )
    }
}
