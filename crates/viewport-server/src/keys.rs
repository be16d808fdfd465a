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

pub struct Keys {
    /// Keys the known-device cookies' MACs (derived from the signing key, so it survives
    /// restarts and needs no storage of its own).
    device_secret: [u8; 32],
    kid: String,
    public_key: [u8; 32],
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Why a relay token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Well signed, but past `exp` (plus the leeway).
    Expired,
    /// Anything else: bad signature, unknown `kid`, wrong `aud`, malformed.
    Invalid,
}

impl Keys {
    /// Loads the key from the store, creating and persisting one on first start.
    pub fn load_or_create(store: &Store) -> anyhow::Result<Keys> {
        let row = match store.signing_key()? {
            Some(row) => row,
            None => {
                let sk = SigningKey::from_bytes(&util::random_bytes::<32>());
                let der = sk.to_pkcs8_der().map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
                let candidate = SigningKeyRow { kid: kid_for(sk.verifying_key().as_bytes()), pkcs8_der: der.as_bytes().to_vec() };
                store.ensure_signing_key(&candidate, util::now())?
            }
        };
        let sk = SigningKey::from_pkcs8_der(&row.pkcs8_der).map_err(|e| anyhow::anyhow!("the signing key in the database is unreadable: {e}"))?;
        let public_key = sk.verifying_key().to_bytes();
        let decoding =
            DecodingKey::from_ed_components(&util::b64url(&public_key)).map_err(|e| anyhow::anyhow!("building the verification key: {e}"))?;
        let device_secret = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(b"viewport known-device cookie v1\n");
            h.update(&row.pkcs8_der);
            h.finalize().into()
        };
        Ok(Keys { device_secret, kid: row.kid, public_key, encoding: EncodingKey::from_ed_der(&row.pkcs8_der), decoding })
    }

    /// The MAC of `message` under the known-device secret (hex).
    pub fn device_mac(&self, message: &str) -> String {
        use hmac::{Mac, SimpleHmac};
        let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(&self.device_secret).expect("any key length");
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": util::b64url(&self.public_key),
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }

    pub fn sign(&self, claims: &RelayClaims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

impl Keys {
    /// Verifies a relay token: EdDSA under this server's key (the `kid` must be ours), `aud`
    /// = `viewport-relay`, `exp` with at most [`RELAY_LEEWAY_SECS`] of leeway.
    pub fn verify_relay_token(&self, token: &str) -> Result<RelayClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::Invalid);
        }
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[RELAY_AUDIENCE]);
        v.leeway = RELAY_LEEWAY_SECS;
        v.validate_exp = true;
        v.set_required_spec_claims(&["exp", "aud", "sub"]);
        match jsonwebtoken::decode::<RelayClaims>(token, &self.decoding, &v) {
            Ok(d) => Ok(d.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

/// First 16 characters of the base64url SHA-256 of the public key.
fn kid_for(public_key: &[u8]) -> String {
    util::b64url(&util::sha256(public_key))[..16].to_string()
}
