//! The platform's JWT signing key (Ed25519), created once and kept in the database.

use crate::store::{SigningKeyRow, Store};
use crate::util;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use vpd_proto::runtime::{RelayClaims, RELAY_AUDIENCE};

/// Clock skew tolerated on a relay token's `exp`, in seconds.
pub const RELAY_LEEWAY_SECS: u64 = 60;

/// How long a retired key still verifies: a token signed just before the rotation lives
/// this long at most.
pub const RETIRED_KEY_VALID_SECS: i64 = vpd_proto::runtime::RELAY_TOKEN_MAX_SECS + RELAY_LEEWAY_SECS as i64;

/// The signing keys in the database: the newest signs, every key still valid verifies.
/// Instances on one database share them (and reload after a rotation, see
/// [`Keys::reload`]).
pub struct Keys {
    set: std::sync::RwLock<std::sync::Arc<KeySet>>,
}

struct KeySet {
    /// Keys the known-device cookies' MACs (derived from the signing key, so it survives
    /// restarts and needs no storage of its own; a rotation makes devices known again).
    device_secret: [u8; 32],
    signing: Key,
    /// The signing key and the retired keys that still verify.
    verifying: Vec<Key>,
}

struct Key {
    kid: String,
    public_key: [u8; 32],
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn from_row(row: &SigningKeyRow) -> anyhow::Result<Key> {
        let sk = SigningKey::from_pkcs8_der(&row.pkcs8_der)
            .map_err(|e| anyhow::anyhow!("the signing key {} in the database is unreadable: {e}", row.kid))?;
        let public_key = sk.verifying_key().to_bytes();
        let decoding =
            DecodingKey::from_ed_components(&util::b64url(&public_key)).map_err(|e| anyhow::anyhow!("building the verification key: {e}"))?;
        Ok(Key { kid: row.kid.clone(), public_key, encoding: EncodingKey::from_ed_der(&row.pkcs8_der), decoding })
    }
}

/// Why a relay token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Well signed, but past `exp` (plus the leeway).
    Expired,
    /// Anything else: bad signature, unknown `kid`, wrong `aud`, malformed.
    Invalid,
}

/// A fresh key, not stored yet.
pub fn new_key_row(now: i64) -> anyhow::Result<SigningKeyRow> {
    let sk = SigningKey::from_bytes(&util::random_bytes::<32>());
    let der = sk.to_pkcs8_der().map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
    Ok(SigningKeyRow { kid: kid_for(sk.verifying_key().as_bytes()), pkcs8_der: der.as_bytes().to_vec(), created_at: now, retired_at: None })
}

impl Keys {
    /// Loads the keys from the store, creating and persisting one on first start.
    pub fn load_or_create(store: &Store) -> anyhow::Result<Keys> {
        if store.signing_key()?.is_none() {
            store.ensure_signing_key(&new_key_row(util::now())?, util::now())?;
        }
        Ok(Keys { set: std::sync::RwLock::new(std::sync::Arc::new(load(store)?)) })
    }

    /// Reads the keys again (after a rotation, or a token signed by a key this instance has
    /// not seen yet).
    pub fn reload(&self, store: &Store) -> anyhow::Result<()> {
        let set = load(store)?;
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(set);
        Ok(())
    }

    fn get(&self) -> std::sync::Arc<KeySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The MAC of `message` under the known-device secret (hex).
    pub fn device_mac(&self, message: &str) -> String {
        use hmac::{Mac, SimpleHmac};
        let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(&self.get().device_secret).expect("any key length");
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The `kid` of the key that signs.
    pub fn kid(&self) -> String {
        self.get().signing.kid.clone()
    }

    /// Whether `kid` is one of the keys this instance verifies with.
    pub fn knows(&self, kid: &str) -> bool {
        self.get().verifying.iter().any(|k| k.kid == kid)
    }

    /// The JWKS document: every key that verifies, the signing key first.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .get()
            .verifying
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": util::b64url(&k.public_key),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    pub fn sign(&self, claims: &RelayClaims) -> anyhow::Result<String> {
        let set = self.get();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(set.signing.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &set.signing.encoding)?)
    }

    /// Verifies a relay token: EdDSA under one of this server's keys (the `kid` must be one of
    /// ours), `aud` = `viewport-relay`, `exp` with at most [`RELAY_LEEWAY_SECS`] of leeway.
    pub fn verify_relay_token(&self, token: &str) -> Result<RelayClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let set = self.get();
        let key = set.verifying.iter().find(|k| header.kid.as_deref() == Some(k.kid.as_str()));
        let (Algorithm::EdDSA, Some(key)) = (header.alg, key) else {
            return Err(TokenError::Invalid);
        };
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[RELAY_AUDIENCE]);
        v.leeway = RELAY_LEEWAY_SECS;
        v.validate_exp = true;
        v.set_required_spec_claims(&["exp", "aud", "sub"]);
        match jsonwebtoken::decode::<RelayClaims>(token, &key.decoding, &v) {
            Ok(d) => Ok(d.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

/// The token's `kid`, unverified (to decide whether to reload the keys).
pub fn token_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

fn load(store: &Store) -> anyhow::Result<KeySet> {
    let rows = store.signing_keys(util::now(), RETIRED_KEY_VALID_SECS)?;
    let signing_row = rows.iter().find(|r| r.retired_at.is_none()).ok_or_else(|| anyhow::anyhow!("the database has no signing key"))?;
    let device_secret = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"viewport known-device cookie v1\n");
        h.update(&signing_row.pkcs8_der);
        h.finalize().into()
    };
    let signing = Key::from_row(signing_row)?;
    let verifying = rows.iter().map(Key::from_row).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(KeySet { device_secret, signing, verifying })
}

/// Makes a new signing key for every instance on this database; the previous one verifies
/// for [`RETIRED_KEY_VALID_SECS`] more. Returns the new `kid`.
pub fn rotate(store: &Store) -> anyhow::Result<String> {
    let now = util::now();
    let row = new_key_row(now)?;
    store.rotate_signing_key(&row, now, 2 * RETIRED_KEY_VALID_SECS)?;
    Ok(row.kid)
}

/// First 16 characters of the base64url SHA-256 of the public key.
fn kid_for(public_key: &[u8]) -> String {
    util::b64url(&util::sha256(public_key))[..16].to_string()
}
