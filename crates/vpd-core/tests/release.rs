//! Signed releases (issue 13 item 2): a release signed as `viewport-server release sign`
//! signs it is accepted; every refusal the issue lists has its case here.

use std::io::Cursor;
use vpd_core::release::{verify, Expect, Release, ReleaseError, Version};

struct Key {
    public: String,
    secret: minisign::SecretKey,
}

fn key() -> Key {
    let minisign::KeyPair { pk, sk } = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    Key { public: pk.to_box().unwrap().to_string(), secret: sk }
}

fn sign(k: &Key, file: &[u8], comment: &str) -> String {
    minisign::sign(None, &k.secret, Cursor::new(file), Some(comment), Some("signature from viewport-server release sign")).unwrap().to_string()
}

const HERE: Expect<'static> = Expect { os: "linux", arch: "x86_64", installed: Version(0, 1, 0) };

#[test]
fn a_newer_release_for_this_machine_signed_by_the_trusted_key_is_accepted() {
    let k = key();
    let file = b"the new vpd".to_vec();
    let r = Release::of(&file, Version(0, 2, 0), "linux", "x86_64");
    let sig = sign(&k, &file, &r.trusted_comment());
    assert_eq!(verify(&file, &sig, &k.public, &HERE), Ok(r));
}

#[test]
fn every_refusal() {
    let (k, other) = (key(), key());
    let file = b"the new vpd".to_vec();
    let good = Release::of(&file, Version(0, 2, 0), "linux", "x86_64");
    let sig = sign(&k, &file, &good.trusted_comment());

    // Signed by another key.
    let by_other = sign(&other, &file, &good.trusted_comment());
    assert!(matches!(verify(&file, &by_other, &k.public, &HERE), Err(ReleaseError::NotSigned(_))));
    // A tampered file, and a file cut short.
    let mut tampered = file.clone();
    tampered[0] ^= 1;
    assert!(matches!(verify(&tampered, &sig, &k.public, &HERE), Err(ReleaseError::NotSigned(_))));
    assert!(matches!(verify(&file[..5], &sig, &k.public, &HERE), Err(ReleaseError::NotSigned(_))));
    // The trusted comment edited after signing (a higher version claimed).
    let edited = sig.replace("version=0.2.0", "version=9.9.9");
    assert!(matches!(verify(&file, &edited, &k.public, &HERE), Err(ReleaseError::NotSigned(_))));
    // A lower or equal version: a downgrade, or an older release replayed.
    for v in [Version(0, 1, 0), Version(0, 0, 9)] {
        let r = Release::of(&file, v, "linux", "x86_64");
        let s = sign(&k, &file, &r.trusted_comment());
        assert!(matches!(verify(&file, &s, &k.public, &HERE), Err(ReleaseError::NotNewer { .. })), "{v}");
    }
    // Another OS or architecture.
    for (os, arch) in [("linux", "aarch64"), ("windows", "x86_64")] {
        let r = Release::of(&file, Version(0, 2, 0), os, arch);
        let s = sign(&k, &file, &r.trusted_comment());
        let e = verify(&file, &s, &k.public, &HERE).unwrap_err();
        assert!(matches!(e, ReleaseError::WrongPlatform { .. }) && e.to_string().contains(arch), "{e}");
    }
    // Signed, but describing another file (size or digest).
    let mut lie = good.clone();
    lie.size += 1;
    let s = sign(&k, &file, &lie.trusted_comment());
    assert!(matches!(verify(&file, &s, &k.public, &HERE), Err(ReleaseError::WrongFile(_))));
    let lie = Release::of(b"another file", Version(0, 2, 0), "linux", "x86_64");
    let mut lie = lie;
    lie.size = file.len() as u64;
    let s = sign(&k, &file, &lie.trusted_comment());
    assert!(matches!(verify(&file, &s, &k.public, &HERE), Err(ReleaseError::WrongFile(_))));
    // A signature without the release's description, an HTML page, a broken key.
    let s = sign(&k, &file, "timestamp:1700000000");
    assert!(matches!(verify(&file, &s, &k.public, &HERE), Err(ReleaseError::BadComment(_))));
    assert!(matches!(verify(&file, "<html>Not found</html>", &k.public, &HERE), Err(ReleaseError::BadSignature(_))));
    assert!(matches!(verify(&file, &sig, "untrusted comment: x\nnot a key", &HERE), Err(ReleaseError::BadKey(_))));
}

mod manifest {
    use super::*;
    use vpd_core::release::{check_manifest, describe, key_fingerprint, Manifest, Offer, MANIFEST_FORMAT};

    fn manifest(k: &Key, v: Version, os: &str, arch: &str) -> (Vec<u8>, Release) {
        let file = format!("vpd {v}").into_bytes();
        let r = Release::of(&file, v, os, arch);
        let m = Manifest {
            format: MANIFEST_FORMAT,
            version: v.to_string(),
            os: os.into(),
            arch: arch.into(),
            url: format!("{v}/file"),
            signature: sign(k, &file, &r.trusted_comment()),
        };
        (serde_json::to_vec(&m).unwrap(), r)
    }

    #[test]
    fn a_signature_describes_its_file_with_the_key_alone() {
        let (k, other) = (key(), key());
        let file = b"x".to_vec();
        let r = Release::of(&file, Version(1, 0, 0), "linux", "x86_64");
        let sig = sign(&k, &file, &r.trusted_comment());
        assert_eq!(describe(&sig, &k.public), Ok(r));
        assert!(matches!(describe(&sig, &other.public), Err(ReleaseError::NotSigned(_))));
        assert!(matches!(describe(&sig.replace("version=1.0.0", "version=2.0.0"), &k.public), Err(ReleaseError::NotSigned(_))));
        assert!(matches!(describe("garbage", &k.public), Err(ReleaseError::BadSignature(_))));
        assert!(matches!(describe(&sig, "not a key"), Err(ReleaseError::BadKey(_))));
        let fp = key_fingerprint(&k.public).unwrap();
        assert!(fp.starts_with("key ID ") && fp.contains("SHA-256 "), "{fp}");
        assert_ne!(fp, key_fingerprint(&other.public).unwrap());
        // The key id is the one minisign prints in the .pub file's comment.
        let comment_id = k.public.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
        assert!(fp.contains(&comment_id), "{fp} vs {}", k.public);
    }

    #[test]
    fn a_manifest_offers_a_newer_release_or_says_up_to_date() {
        let k = key();
        let (m, r) = manifest(&k, Version(0, 2, 0), "linux", "x86_64");
        assert!(matches!(check_manifest(&m, &k.public, &HERE), Ok((_, Offer::Newer(x))) if x == r));
        let (m, _) = manifest(&k, Version(0, 1, 0), "linux", "x86_64");
        assert!(matches!(check_manifest(&m, &k.public, &HERE), Ok((_, Offer::UpToDate(_)))));
    }

    #[test]
    fn every_manifest_refusal() {
        let (k, other) = (key(), key());
        let (m, _) = manifest(&k, Version(0, 0, 9), "linux", "x86_64");
        assert!(matches!(check_manifest(&m, &k.public, &HERE), Err(ReleaseError::NotNewer { .. })));
        let (m, _) = manifest(&k, Version(0, 2, 0), "linux", "aarch64");
        assert!(matches!(check_manifest(&m, &k.public, &HERE), Err(ReleaseError::WrongPlatform { .. })));
        let (m, _) = manifest(&other, Version(0, 2, 0), "linux", "x86_64");
        assert!(matches!(check_manifest(&m, &k.public, &HERE), Err(ReleaseError::NotSigned(_))));
        // An unsigned field that disagrees with the signed description.
        let (m, _) = manifest(&k, Version(0, 2, 0), "linux", "x86_64");
        let lied = String::from_utf8(m.clone()).unwrap().replace("\"version\":\"0.2.0\"", "\"version\":\"0.3.0\"");
        assert!(matches!(check_manifest(lied.as_bytes(), &k.public, &HERE), Err(ReleaseError::BadManifest(_))));
        // A web page, another format, extra fields, truncated JSON.
        let e = check_manifest(b"<!doctype html><html>", &k.public, &HERE).unwrap_err();
        assert!(e.to_string().contains("web page"), "{e}");
        let other_format = String::from_utf8(m.clone()).unwrap().replace("\"format\":1", "\"format\":2");
        assert!(check_manifest(other_format.as_bytes(), &k.public, &HERE).unwrap_err().to_string().contains("format 2"));
        let extra = String::from_utf8(m.clone()).unwrap().replacen('{', "{\"key\":\"x\",", 1);
        assert!(matches!(check_manifest(extra.as_bytes(), &k.public, &HERE), Err(ReleaseError::BadManifest(_))));
        assert!(matches!(check_manifest(&m[..m.len() / 2], &k.public, &HERE), Err(ReleaseError::BadManifest(_))));
    }
}
