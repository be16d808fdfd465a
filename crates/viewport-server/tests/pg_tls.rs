//! TLS to PostgreSQL (`--db postgres://…?sslmode=require`): a private cluster serves TLS
//! with a certificate for `localhost` issued by a CA made here. The store connects only when
//! the certificate is issued by a CA it trusts and names the host it asked for; its pool and
//! its LISTEN connection both use TLS; `admin doctor` says so.

#[path = "../../../tests/support/pg.rs"]
mod pg;

use std::process::Command;
use viewport_server::store::Store;

struct Rig {
    pg: pg::Pg,
    dir: tempfile::TempDir,
    /// `postgres://postgres@localhost:PORT/DB?hostaddr=127.0.0.1`: the name on the certificate.
    url: String,
}

impl Rig {
    fn ca(&self, name: &str) -> String {
        self.dir.path().join(format!("{name}.pem")).display().to_string()
    }
}

/// A CA and a certificate for `localhost` it issued; (CA PEM, certificate PEM, key PEM).
fn certificate() -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "database test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem())
}

fn rig() -> Rig {
    let (ca, cert, key) = certificate();
    let (other_ca, _, _) = certificate();
    let pg = pg::Pg::private(
        &[("ssl", "on"), ("ssl_cert_file", "server.crt"), ("ssl_key_file", "server.key")],
        &[("server.crt", cert.as_bytes()), ("server.key", key.as_bytes())],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    std::fs::write(dir.path().join("other-ca.pem"), other_ca).unwrap();
    let db = pg.database();
    let url = format!("{}?hostaddr=127.0.0.1", db.replace("@127.0.0.1:", "@localhost:"));
    Rig { pg, dir, url }
}

fn connect(url: &str) -> Result<Store, String> {
    Store::connect(url).map_err(|e| e.to_string())
}

/// `viewport-server admin --db URL --json ARGS`: (success, stdout, stderr).
fn admin(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_viewport-server")).args(["admin", "--db", url, "--json"]).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_pool_and_the_listener_use_tls_verified_against_the_named_ca() {
    let r = rig();
    let url = format!("{}&sslmode=verify-full&sslrootcert={}", r.url, r.ca("ca"));
    let store = connect(&url).unwrap_or_else(|e| panic!("{e}\n{}", r.pg.log()));
    store.create_user("a@example.com", "h", 0).unwrap();
    assert!(store.user_by_email("a@example.com").unwrap().is_some());
    let facts: std::collections::BTreeMap<String, String> = store.describe().unwrap().into_iter().collect();
    assert!(facts["tls"].starts_with("TLSv1.") && facts["tls"].ends_with("certificate verified"), "{facts:?}");
    // The LISTEN connection too.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut events = store.subscribe();
    let _listening = rt.block_on(async { store.listen() });
    rt.block_on(async {
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), events.recv()).await;
        assert!(matches!(first, Ok(Ok(viewport_server::store::sql::Event::Resync))), "the listener connected: {first:?}");
    });
    let base = r.url.split('?').next().unwrap().replace("@localhost:", "@127.0.0.1:");
    let over_tls = r
        .pg
        .psql(&base, "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'viewport-server listen'")
        .unwrap();
    assert_eq!(over_tls, "1", "the listener is on TLS");
    // What a person runs to check it.
    let (ok, out, err) = admin(&url, &["doctor"]);
    assert!(ok, "{err}");
    let doctor: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(doctor["tls"].as_str().unwrap().ends_with("certificate verified"), "{doctor}");
    drop(store);
    rt.shutdown_background();
}

#[test]
fn an_untrusted_certificate_or_another_host_name_is_refused_with_what_to_do() {
    let r = rig();
    // Issued by a CA this store was not told to trust.
    let e = connect(&format!("{}&sslmode=require&sslrootcert={}", r.url, r.ca("other-ca"))).err().expect("refused");
    assert!(e.contains("certificate") && e.contains("sslrootcert=FILE"), "{e}");
    // Trusted, but for `localhost`, not for the address asked for.
    let by_address = r.url.replace("@localhost:", "@127.0.0.1:");
    let e = connect(&format!("{by_address}&sslmode=require&sslrootcert={}", r.ca("ca"))).err().expect("refused");
    assert!(e.contains("certificate") && e.contains("host name"), "{e}");
    // The operating system's roots know nothing of this CA.
    let e = connect(&format!("{}&sslmode=require", r.url)).err().expect("refused");
    assert!(e.contains("certificate"), "{e}");
    // A mode that may fall back to plain text is refused before connecting; the CLI says why.
    let (ok, _, err) = admin(&format!("{}&sslmode=prefer", r.url), &["doctor"]);
    assert!(!ok && err.contains("sslmode=prefer") && err.contains("sslmode=require"), "{err}");
    // Without TLS asked for, the same server is reached in plain text, and doctor says it.
    let (ok, out, err) = admin(&r.url, &["doctor"]);
    assert!(ok, "{err}");
    assert!(out.contains("off (sslmode=require"), "{out}");
}

#[test]
fn a_url_without_a_password_takes_it_from_pgpassword() {
    let hba = "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all viewport 127.0.0.1/32 scram-sha-256\n";
    let pg = pg::Pg::private(&[("password_encryption", "scram-sha-256")], &[("pg_hba.conf", hba.as_bytes())]);
    let db = pg.database();
    pg.psql(&db, "CREATE ROLE viewport LOGIN PASSWORD 'correct horse'; GRANT ALL ON SCHEMA public TO viewport").unwrap();
    let url = db.replace("postgres@", "viewport@");
    let doctor = |password: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_viewport-server"));
        c.args(["admin", "--db", &url, "doctor"]).env_remove("PGPASSWORD");
        if let Some(p) = password {
            c.env("PGPASSWORD", p);
        }
        let out = c.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (ok, text) = doctor(None);
    assert!(!ok && text.contains("cannot connect") && text.contains("password"), "{text}");
    let (ok, text) = doctor(Some("wrong"));
    assert!(!ok && text.contains("password authentication failed"), "{text}");
    assert!(!text.contains("wrong"), "the password is never printed: {text}");
    let (ok, text) = doctor(Some("correct horse"));
    assert!(ok && text.contains("schema"), "{text}");
}
