//! `--auth-token jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DURATION`: etcd's JWT tokens. A token is
//! signed by the member that applies the Authenticate entry and carries `username`, `revision` (the auth revision
//! it was issued at) and `exp`; any member holding the public key verifies it, so a token works on every member.
//! A token whose revision is older than the current auth revision is refused as etcd refuses it ("revision of
//! auth store is old"; clients authenticate again). Expiry is exact (no leeway), as etcd's.
//!
//! Keys are PEM files: the private key PKCS#1 or PKCS#8 (RSA), SEC1 or PKCS#8 (EC), the public key a `PUBLIC KEY`
//! block or a certificate (etcd's own fixtures give a certificate). Sign methods: RS256/384/512, PS256/384/512, ES256/384/512.
//!
//! jsonwebtoken signs and verifies all but ES512 (its crypto backend has no P-521). ES512 tokens are put together
//! here in JWS compact form (RFC 7515: base64url header, claims and signature joined by dots) over RustCrypto's
//! p521, the signature `r || s` of 66 bytes each as RFC 7518 and Go's jwt-go give it; the interoperability test
//! with etcd 3.4.23 (`tests/jwt_vs_etcd.rs`) checks both directions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p521::ecdsa::signature::{Signer as _, Verifier as _};

/// etcd's default token lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A JWT signer and verifier.
pub struct Jwt {
    keys: Keys,
    ttl: Duration,
}

/// The key pair, by who does the cryptography.
enum Keys {
    /// jsonwebtoken's methods.
    Lib { alg: Algorithm, encoding: EncodingKey, decoding: DecodingKey },
    /// ES512: ECDSA over P-521 with SHA-512.
    Es512 { signing: Box<p521::ecdsa::SigningKey>, verifying: Box<p521::ecdsa::VerifyingKey> },
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let alg = match &self.keys {
            Keys::Lib { alg, .. } => format!("{alg:?}"),
            Keys::Es512 { .. } => "ES512".to_string(),
        };
        f.debug_struct("Jwt").field("alg", &alg).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// The header of an ES512 token, as jwt-go writes it.
const ES512_HEADER: &str = r#"{"alg":"ES512","typ":"JWT"}"#;

/// The P-521 key pair from a private key (SEC1 `EC PRIVATE KEY` or PKCS#8) and a `PUBLIC KEY` PEM.
fn es512_keys(private: &[u8], public: &[u8]) -> Result<Keys, String> {
    use p521::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
    let private = std::str::from_utf8(private).map_err(|_| "priv-key: not a PEM file".to_string())?;
    let secret = p521::SecretKey::from_sec1_pem(private)
        .or_else(|_| p521::SecretKey::from_pkcs8_pem(private))
        .map_err(|e| format!("priv-key: not a P-521 private key ({e})"))?;
    let signing = p521::ecdsa::SigningKey::from_bytes(&secret.to_bytes()).map_err(|e| format!("priv-key: {e}"))?;
    let public = std::str::from_utf8(public).map_err(|_| "pub-key: not a PEM file".to_string())?;
    let public =
        p521::PublicKey::from_public_key_pem(public).map_err(|e| format!("pub-key: not a P-521 public key ({e})"))?;
    let verifying = p521::ecdsa::VerifyingKey::from_affine(*public.as_affine()).map_err(|e| format!("pub-key: {e}"))?;
    Ok(Keys::Es512 { signing: Box::new(signing), verifying: Box::new(verifying) })
}

/// The claims of an ES512 token whose signature `verifying` accepts, if its header names ES512.
fn es512_verify(verifying: &p521::ecdsa::VerifyingKey, token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let head: serde_json::Value = serde_json::from_slice(&B64.decode(header).ok()?).ok()?;
    if head.get("alg")?.as_str()? != "ES512" {
        return None;
    }
    let signature = p521::ecdsa::Signature::from_slice(&B64.decode(signature).ok()?).ok()?;
    let signed = &token[..header.len() + 1 + claims.len()];
    verifying.verify(signed.as_bytes(), &signature).ok()?;
    serde_json::from_slice(&B64.decode(claims).ok()?).ok()
}

/// An EC private key as PKCS#8 PEM, which is all jsonwebtoken takes: a SEC1 `EC PRIVATE KEY` (what
/// `openssl ecparam -genkey` writes, as etcd's docs make keys) is re-encoded, anything else passed on as it is.
fn ec_pkcs8(private: &[u8], alg: Algorithm) -> Result<Vec<u8>, String> {
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
    let Ok(text) = std::str::from_utf8(private) else { return Ok(private.to_vec()) };
    if !text.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Ok(private.to_vec());
    }
    let bad = |e: p256::elliptic_curve::Error| format!("priv-key: not a key of {alg:?}'s curve ({e})");
    let pkcs8 = match alg {
        Algorithm::ES256 => p256::SecretKey::from_sec1_pem(text).map_err(bad)?.to_pkcs8_pem(LineEnding::LF),
        _ => p384::SecretKey::from_sec1_pem(text).map_err(bad)?.to_pkcs8_pem(LineEnding::LF),
    };
    Ok(pkcs8.map_err(|e| format!("priv-key: {e}"))?.as_bytes().to_vec())
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// A public key PEM: a `PUBLIC KEY` block as it is, or the key of a `CERTIFICATE`.
fn public_pem(text: &[u8]) -> Result<Vec<u8>, String> {
    let block = pem::parse(text).map_err(|e| format!("pub-key: {e}"))?;
    if block.tag() != "CERTIFICATE" {
        return Ok(text.to_vec());
    }
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents()).map_err(|e| format!("pub-key: {e}"))?;
    let spki = cert.public_key().raw.to_vec();
    Ok(pem::encode(&pem::Pem::new("PUBLIC KEY", spki)).into_bytes())
}

impl Jwt {
    /// Parses `--auth-token`'s options after `jwt,`; an error names what is wrong.
    pub fn parse(options: &str) -> Result<Jwt, String> {
        let (mut public, mut private, mut method, mut ttl) = (None, None, None, DEFAULT_TTL);
        for opt in options.split(',').filter(|o| !o.is_empty()) {
            let (k, v) = opt.split_once('=').ok_or_else(|| format!("malformed option {opt:?}"))?;
            match k {
                "pub-key" => public = Some(v.to_string()),
                "priv-key" => private = Some(v.to_string()),
                "sign-method" => method = Some(v.to_string()),
                "ttl" => ttl = crate::config::parse_go_duration(v).ok_or_else(|| format!("ttl: {v:?}"))?,
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        let method = method.ok_or("sign-method is required")?;
        let read = |what: &str, path: Option<String>| -> Result<Vec<u8>, String> {
            let path = path.ok_or_else(|| format!("{what} is required"))?;
            std::fs::read(&path).map_err(|e| format!("{what} {path}: {e}"))
        };
        let public = public_pem(&read("pub-key", public)?)?;
        let private = read("priv-key", private)?;
        if method == "ES512" {
            return Ok(Jwt { keys: es512_keys(&private, &public)?, ttl });
        }
        let alg: Algorithm = method.parse().map_err(|_| format!("unsupported sign-method {method:?}"))?;
        let bad = |what: &'static str| move |e: jsonwebtoken::errors::Error| format!("{what}: {e}");
        let (encoding, decoding) = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (
                EncodingKey::from_rsa_pem(&private).map_err(bad("priv-key"))?,
                DecodingKey::from_rsa_pem(&public).map_err(bad("pub-key"))?,
            ),
            Algorithm::ES256 | Algorithm::ES384 => (
                EncodingKey::from_ec_pem(&ec_pkcs8(&private, alg)?).map_err(bad("priv-key"))?,
                DecodingKey::from_ec_pem(&public).map_err(bad("pub-key"))?,
            ),
            other => return Err(format!("unsupported sign-method {other:?}")),
        };
        Ok(Jwt { keys: Keys::Lib { alg, encoding, decoding }, ttl })
    }

    /// A token for `username` at auth revision `revision`, expiring after the TTL.
    pub fn sign(&self, username: &str, revision: u64) -> Result<String, String> {
        let claims = Claims { username: username.to_string(), revision, exp: (unix_now() + self.ttl).as_secs() };
        match &self.keys {
            Keys::Lib { alg, encoding, .. } => {
                jsonwebtoken::encode(&Header::new(*alg), &claims, encoding).map_err(|e| e.to_string())
            }
            Keys::Es512 { signing, .. } => {
                let claims = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
                let signed = format!("{}.{}", B64.encode(ES512_HEADER), B64.encode(claims));
                let signature: p521::ecdsa::Signature = signing.sign(signed.as_bytes());
                Ok(format!("{signed}.{}", B64.encode(signature.to_bytes())))
            }
        }
    }

    /// The user and auth revision a valid, unexpired token of this key and method speaks for.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let claims = match &self.keys {
            Keys::Lib { alg, decoding, .. } => {
                let mut v = Validation::new(*alg);
                v.leeway = 0;
                v.set_required_spec_claims(&["exp"]);
                jsonwebtoken::decode::<Claims>(token, decoding, &v).ok()?.claims
            }
            Keys::Es512 { verifying, .. } => {
                // As jsonwebtoken's check with no leeway: valid through the second `exp` names.
                Some(es512_verify(verifying, token)?).filter(|c| c.exp >= unix_now().as_secs())?
            }
        };
        Some((claims.username, claims.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a key pair of `method` into `dir` and gives `--auth-token`'s options without the ttl.
    fn keys(dir: &std::path::Path, method: &str) -> String {
        let (private, public) = if method == "ES512" {
            use p521::pkcs8::{EncodePublicKey as _, LineEnding};
            let secret = p521::SecretKey::random(&mut p521::elliptic_curve::rand_core::OsRng);
            let public = secret.public_key().to_public_key_pem(LineEnding::LF).unwrap();
            (secret.to_sec1_pem(LineEnding::LF).unwrap().to_string(), public)
        } else {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
            (key.serialize_pem(), cert.pem())
        };
        std::fs::write(dir.join(format!("{method}.key")), private).unwrap();
        std::fs::write(dir.join(format!("{method}.pub")), public).unwrap();
        format!(
            "pub-key={},priv-key={},sign-method={method}",
            dir.join(format!("{method}.pub")).display(),
            dir.join(format!("{method}.key")).display()
        )
    }

    #[test]
    fn tokens_verify_with_the_key_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        for method in ["ES256", "ES512"] {
            let opts = keys(dir.path(), method);
            let jwt = Jwt::parse(&format!("{opts},ttl=10m")).unwrap();
            let token = jwt.sign("alice", 7).unwrap();
            assert_eq!(jwt.verify(&token), Some(("alice".to_string(), 7)), "{method}");
            assert_eq!(jwt.verify(&format!("{token}x")), None, "{method}: a tampered token");
            let other = Jwt::parse(&format!("{},ttl=10m", keys(dir.path(), method))).unwrap();
            assert_eq!(other.verify(&token), None, "{method}: another key's token");
            let short = Jwt::parse(&format!("{opts},ttl=1s")).unwrap();
            let token = short.sign("alice", 7).unwrap();
            std::thread::sleep(Duration::from_millis(2100));
            assert_eq!(short.verify(&token), None, "{method}: an expired token");
        }
        let es256 = Jwt::parse(&keys(dir.path(), "ES256")).unwrap();
        let es512 = Jwt::parse(&keys(dir.path(), "ES512")).unwrap();
        assert_eq!(es512.verify(&es256.sign("alice", 1).unwrap()), None, "an ES256 token under ES512");
        assert!(Jwt::parse("pub-key=x,priv-key=y").unwrap_err().contains("sign-method"));
        assert!(Jwt::parse(&format!("{},bogus=1", keys(dir.path(), "ES256"))).unwrap_err().contains("bogus"));
        let swapped = keys(dir.path(), "ES512").replace("sign-method=ES512", "sign-method=ES256");
        assert!(Jwt::parse(&swapped).is_err(), "a P-521 key for ES256");
    }
}
