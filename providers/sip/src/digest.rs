//! Digest authentication of phones (RFC 3261 §22, RFC 7616, RFC 8760): the challenge tapir sends,
//! the nonces it mints, and checking a phone's answer.
//!
//! Nonces carry their own issue time and a keyed hash of it, so tapir keeps no table of them: a
//! nonce it did not mint fails the hash, an old one is *stale* (the phone answers the new challenge
//! without asking its user again, RFC 7616 §3.3).

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

/// A phone's answer to a challenge (the `Authorization` header's parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DigestResponse {
    pub(crate) username: String,
    pub(crate) realm: String,
    pub(crate) nonce: String,
    /// The `uri` parameter exactly as the phone wrote it (the hash covers its text).
    pub(crate) uri: String,
    pub(crate) response: String,
    pub(crate) algorithm: Option<String>,
    pub(crate) qop: Option<String>,
    pub(crate) nc: Option<String>,
    pub(crate) cnonce: Option<String>,
}

impl DigestResponse {
    /// Reads the parameters of a `Digest` credential; `None` for another scheme or a credential
    /// without the parameters every answer has.
    pub(crate) fn from_params<'a>(
        scheme: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<Self> {
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let mut r = Self::default();
        for (k, v) in params {
            let v = v.to_owned();
            match k.to_ascii_lowercase().as_str() {
                "username" => r.username = v,
                "realm" => r.realm = v,
                "nonce" => r.nonce = v,
                "uri" => r.uri = v,
                "response" => r.response = v,
                "algorithm" => r.algorithm = Some(v),
                "qop" => r.qop = Some(v),
                "nc" => r.nc = Some(v),
                "cnonce" => r.cnonce = Some(v),
                _ => {}
            }
        }
        (!r.username.is_empty() && !r.nonce.is_empty() && !r.response.is_empty()).then_some(r)
    }

    /// Whether the answer proves knowledge of `password` for a request with `method`.
    pub(crate) fn verify(&self, method: &str, password: &str) -> bool {
        let hash: fn(&str) -> String = match self.algorithm.as_deref() {
            None => md5_hex,
            Some(a) if a.eq_ignore_ascii_case("md5") => md5_hex,
            Some(a) if a.eq_ignore_ascii_case("sha-256") || a.eq_ignore_ascii_case("sha256") => {
                sha256_hex
            }
            // MD5-sess and friends need the first nonce of a session; tapir does not offer them.
            Some(_) => return false,
        };
        let ha1 = hash(&format!("{}:{}:{password}", self.username, self.realm));
        let ha2 = hash(&format!("{method}:{}", self.uri));
        let expected = match self.qop.as_deref() {
            None => hash(&format!("{ha1}:{}:{ha2}", self.nonce)),
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (&self.nc, &self.cnonce) else {
                    return false;
                };
                hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
            }
            // auth-int would need the body's hash; tapir offers qop=auth only.
            Some(_) => return false,
        };
        constant_time_eq(
            expected.as_bytes(),
            self.response.to_ascii_lowercase().as_bytes(),
        )
    }
}

fn md5_hex(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a nonce turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NonceState {
    /// Minted here and young enough.
    Fresh,
    /// Minted here, but too old: challenge again with `stale=true`.
    Stale,
    /// Not minted here.
    Forged,
}

/// Mints and checks nonces.
#[derive(Clone, Debug)]
pub(crate) struct Nonces {
    key: std::collections::hash_map::RandomState,
    epoch: Instant,
    lifetime: Duration,
}

impl Nonces {
    /// Nonces that stay fresh for `lifetime`, with a key of this process's own.
    pub(crate) fn new(epoch: Instant, lifetime: Duration) -> Self {
        Self {
            key: std::collections::hash_map::RandomState::new(),
            epoch,
            lifetime,
        }
    }

    fn mac(&self, issued: u64) -> u64 {
        self.key.hash_one(("tapir-nonce", issued))
    }

    /// A new nonce.
    pub(crate) fn mint(&self, now: Instant) -> String {
        let issued = now.saturating_duration_since(self.epoch).as_millis() as u64;
        format!("{issued:x}.{:016x}", self.mac(issued))
    }

    /// Checks a nonce a phone returned.
    pub(crate) fn check(&self, nonce: &str, now: Instant) -> NonceState {
        let Some((issued, mac)) = nonce.split_once('.') else {
            return NonceState::Forged;
        };
        let (Ok(issued), Ok(mac)) = (
            u64::from_str_radix(issued, 16),
            u64::from_str_radix(mac, 16),
        ) else {
            return NonceState::Forged;
        };
        if mac != self.mac(issued) {
            return NonceState::Forged;
        }
        let age = now
            .saturating_duration_since(self.epoch)
            .saturating_sub(Duration::from_millis(issued));
        if age > self.lifetime {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }
}

/// The `WWW-Authenticate` value of a challenge.
pub(crate) fn challenge(realm: &str, nonce: &str, stale: bool) -> String {
    format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{}",
        if stale { ", stale=true" } else { "" }
    )
}

/// What a phone answers to `challenge` (tests of the switch and the fuzzing harness play the
/// phone).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn answer_to(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> DigestResponse {
    let param = |name: &str| {
        let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
        let len = challenge[start..].find('"')?;
        Some(challenge[start..start + len].to_owned())
    };
    let realm = param("realm").unwrap_or_default();
    let nonce = param("nonce").unwrap_or_default();
    let (nc, cnonce) = ("00000001".to_owned(), "c0ffee".to_owned());
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    DigestResponse {
        username: user.into(),
        realm,
        nonce,
        uri: uri.into(),
        response,
        algorithm: Some("MD5".into()),
        qop: Some("auth".into()),
        nc: Some(nc),
        cnonce: Some(cnonce),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 2617 §3.5 (qop=auth, MD5): the response is known.
    #[test]
    fn the_rfc_example_verifies() {
        let r = DigestResponse {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            response: "6629fae49393a05397450978507c4ef1".into(),
            algorithm: None,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("0a4f113b".into()),
        };
        assert!(r.verify("GET", "Circle Of Life"));
        assert!(!r.verify("GET", "circle of life"));
        assert!(!r.verify("POST", "Circle Of Life"));
    }

    #[test]
    fn sha256_answers_verify_and_unknown_algorithms_do_not() {
        let mut r = DigestResponse {
            username: "2001".into(),
            realm: "tapir".into(),
            nonce: "n".into(),
            uri: "sip:127.0.0.1:5060".into(),
            algorithm: Some("SHA-256".into()),
            ..Default::default()
        };
        let ha1 = sha256_hex("2001:tapir:pw");
        let ha2 = sha256_hex("REGISTER:sip:127.0.0.1:5060");
        r.response = sha256_hex(&format!("{ha1}:n:{ha2}"));
        assert!(r.verify("REGISTER", "pw"));
        r.algorithm = Some("MD5-sess".into());
        assert!(!r.verify("REGISTER", "pw"));
    }

    #[test]
    fn nonces_are_fresh_then_stale_and_forgeries_fail() {
        let t0 = Instant::now();
        let n = Nonces::new(t0, Duration::from_secs(300));
        let nonce = n.mint(t0);
        assert_eq!(
            n.check(&nonce, t0 + Duration::from_secs(10)),
            NonceState::Fresh
        );
        assert_eq!(
            n.check(&nonce, t0 + Duration::from_secs(301)),
            NonceState::Stale
        );
        let forged = format!(
            "{}.0000000000000000",
            nonce.split('.').next().unwrap_or("0")
        );
        assert_eq!(n.check(&forged, t0), NonceState::Forged);
        assert_eq!(n.check("garbage", t0), NonceState::Forged);
        // Another process's nonces are not ours.
        let other = Nonces::new(t0, Duration::from_secs(300));
        assert_eq!(other.check(&nonce, t0), NonceState::Forged);
    }

    #[test]
    fn only_digest_credentials_with_their_parameters_are_read() {
        assert!(DigestResponse::from_params("Basic", [("username", "a")]).is_none());
        assert!(DigestResponse::from_params("Digest", [("username", "a")]).is_none());
        let r = DigestResponse::from_params(
            "Digest",
            [("Username", "2001"), ("nonce", "x"), ("response", "y")],
        )
        .expect("read");
        assert_eq!(r.username, "2001");
    }
}
