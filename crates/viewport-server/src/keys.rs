//! The platform's JWT signing key (Ed25519), created once and kept in the database.

use crate::store::{SigningKeyRow, Store};
use crate::util;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use vpd_proto::runtime::RelayClaims;

pub struct Keys {
    kid: String,
    public_key: [u8; 32],
    encoding: EncodingKey,
}

impl Keys {
    /// Loads the key from the store, creating and persisting one on first start.
    pub fn load_or_create(store: &Store) -> anyhow::Result<Keys> {
        let row = match store.signing_key()? {
            Some(row) => row,
            None => {
                let sk = SigningKey::from_bytes(&util::random_bytes::<32>());
                let der = sk.to_pkcs8_der().map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
                let candidate = SigningKeyRow {
                    kid: kid_for(sk.verifying_key().as_bytes()),
                    pkcs8_der: der.as_bytes().to_vec(),
                };
                store.ensure_signing_key(&candidate, util::now())?
            }
        };
        let sk = SigningKey::from_pkcs8_der(&row.pkcs8_der)
            .map_err(|e| anyhow::anyhow!("the signing key in the database is unreadable: {e}"))?;
        Ok(Keys {
            kid: row.kid,
            public_key: sk.verifying_key().to_bytes(),
            encoding: EncodingKey::from_ed_der(&row.pkcs8_der),
        })
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

/// First 16 characters of the base64url SHA-256 of the public key.
fn kid_for(public_key: &[u8]) -> String {
    util::b64url(&util::sha256(public_key))[..16].to_string()
}
