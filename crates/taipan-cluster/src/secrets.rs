//! Secrets at rest: sealed with the operator's key (XChaCha20-Poly1305, a
//! random nonce per value), bound to the worker and secret name so a sealed
//! value copied to another row does not open.

use anyhow::{Result, anyhow, bail};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_BYTES: usize = 24;

pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    pub fn seal(&self, worker: &str, name: &str, value: &str) -> Result<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated(worker, name);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow!("sealing a secret failed"))?;
        Ok([&nonce[..], &sealed].concat())
    }

    pub fn open(&self, worker: &str, name: &str, sealed: &[u8]) -> Result<String> {
        if sealed.len() < NONCE_BYTES {
            bail!("the secret {name:?} of {worker:?} is damaged");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let aad = associated(worker, name);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                anyhow!(
                    "the secret {name:?} of {worker:?} does not open with this node's key\n\
                     hint: every node needs the same --secrets-key (TAIPAN_SECRETS_KEY)"
                )
            })?;
        String::from_utf8(plain).map_err(|_| anyhow!("the secret {name:?} is not UTF-8"))
    }
}

impl SecretBox {
    /// A signature of `data` with the operator's key (a random nonce and
    /// the AEAD tag of nothing, with `data` as the associated data).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let tag = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &[],
                    aad: data,
                },
            )
            .map_err(|_| anyhow!("signing failed"))?;
        Ok([&nonce[..], &tag].concat())
    }

    /// Whether `signature` is [`SecretBox::sign`]'s of `data` with this key.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        if signature.len() < NONCE_BYTES {
            return false;
        }
        let (nonce, tag) = signature.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: tag,
                    aad: data,
                },
            )
            .is_ok_and(|plain| plain.is_empty())
    }
}

fn associated(worker: &str, name: &str) -> Vec<u8> {
    format!("taipan-secret\0{worker}\0{name}").into_bytes()
}

/// A key given as 64 hex digits.
pub fn parse_key(text: &str) -> Result<[u8; 32]> {
    let text = text.trim();
    let bytes: Option<Vec<u8>> = (text.len() == 64)
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                .collect()
        })
        .flatten();
    let Some(bytes) = bytes else {
        bail!(
            "the secrets key must be 64 hex digits (32 bytes)\nhint: make one with `openssl rand -hex 32`"
        );
    };
    Ok(bytes.try_into().expect("32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_where_they_were_sealed() {
        let key = parse_key(&"ab".repeat(32)).unwrap();
        let secrets = SecretBox::new(&key);
        let sealed = secrets.seal("w", "TOKEN", "hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(secrets.open("w", "TOKEN", &sealed).unwrap(), "hunter2");
        assert!(secrets.open("w", "OTHER", &sealed).is_err());
        assert!(secrets.open("x", "TOKEN", &sealed).is_err());
        let other = SecretBox::new(&parse_key(&"cd".repeat(32)).unwrap());
        let e = other.open("w", "TOKEN", &sealed).unwrap_err().to_string();
        assert!(e.contains("--secrets-key"), "{e}");
        assert_ne!(sealed, secrets.seal("w", "TOKEN", "hunter2").unwrap());
    }

    #[test]
    fn signatures_hold_only_for_the_same_data_and_key() {
        let key = parse_key(&"ab".repeat(32)).unwrap();
        let secrets = SecretBox::new(&key);
        let signature = secrets.sign(b"machine code").unwrap();
        assert!(secrets.verify(b"machine code", &signature));
        assert!(!secrets.verify(b"machine codf", &signature));
        assert!(!secrets.verify(b"machine code", &signature[..10]));
        let other = SecretBox::new(&parse_key(&"cd".repeat(32)).unwrap());
        assert!(!other.verify(b"machine code", &signature));
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(parse_key("abc").is_err());
        assert!(parse_key(&"zz".repeat(32)).is_err());
        assert_eq!(parse_key(&"01".repeat(32)).unwrap(), [1u8; 32]);
    }
}
