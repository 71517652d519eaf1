//! `--auth-token jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DURATION`: etcd's JWT tokens. A token is
//! signed by the member that applies the Authenticate entry and carries `username`, `revision` (the auth revision
//! it was issued at) and `exp`; any member holding the public key verifies it, so a token works on every member.
//! A token whose revision is older than the current auth revision is refused as etcd refuses it ("revision of
//! auth store is old"; clients authenticate again). Expiry is exact (no leeway), as etcd's.
//!
//! Keys are PEM files: the private key PKCS#1 or PKCS#8, the public key a `PUBLIC KEY` block or a certificate
//! (etcd's own fixtures give a certificate). Sign methods: RS256/384/512, PS256/384/512, ES256/384.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// etcd's default token lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A JWT signer and verifier.
pub struct Jwt {
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt").field("alg", &self.alg).field("ttl", &self.ttl).finish_non_exhaustive()
    }
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
        let alg: Algorithm = method.parse().map_err(|_| format!("unsupported sign-method {method:?}"))?;
        let read = |what: &str, path: Option<String>| -> Result<Vec<u8>, String> {
            let path = path.ok_or_else(|| format!("{what} is required"))?;
            std::fs::read(&path).map_err(|e| format!("{what} {path}: {e}"))
        };
        let public = public_pem(&read("pub-key", public)?)?;
        let private = read("priv-key", private)?;
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
                EncodingKey::from_ec_pem(&private).map_err(bad("priv-key"))?,
                DecodingKey::from_ec_pem(&public).map_err(bad("pub-key"))?,
            ),
            other => return Err(format!("unsupported sign-method {other:?}")),
        };
        Ok(Jwt { alg, encoding, decoding, ttl })
    }

    /// A token for `username` at auth revision `revision`, expiring after the TTL.
    pub fn sign(&self, username: &str, revision: u64) -> Result<String, String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = Claims { username: username.to_string(), revision, exp: (now + self.ttl).as_secs() };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The user and auth revision a valid, unexpired token of this key and method speaks for.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).ok()?;
        Some((data.claims.username, data.claims.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_the_key_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        let opts = |ttl: &str| {
            format!(
                "pub-key={},priv-key={},sign-method=ES256,ttl={ttl}",
                dir.path().join("c.pem").display(),
                dir.path().join("k.pem").display()
            )
        };
        let jwt = Jwt::parse(&opts("10m")).unwrap();
        let token = jwt.sign("alice", 7).unwrap();
        assert_eq!(jwt.verify(&token), Some(("alice".to_string(), 7)));
        assert_eq!(jwt.verify(&format!("{token}x")), None, "a tampered token");
        let short = Jwt::parse(&opts("1s")).unwrap();
        let token = short.sign("alice", 7).unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(short.verify(&token), None, "an expired token");
        assert!(Jwt::parse("pub-key=x,priv-key=y").unwrap_err().contains("sign-method"));
        assert!(Jwt::parse(&format!("{},bogus=1", opts("1s"))).unwrap_err().contains("bogus"));
    }
}
