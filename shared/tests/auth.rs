//! Access tokens and password hashing, attacked the way a hostile client would: every
//! forged, downgraded, re-signed, expired, mis-addressed or malformed token must be
//! rejected, and only a genuine one accepted. Tokens are EdDSA (Ed25519) with a `kid`; the
//! verifier holds only the JWKS. Key rotation: a token of the previous key verifies while
//! both keys are published and is refused once the old key is removed. The RS256 key in
//! `tests/fixtures/` (see its README) only signs tokens that must be refused.

use argon2::password_hash::{PasswordHasher, SaltString};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::auth::passwords;
use shared::auth::TokenService;
use shared::auth::{Jwks, SigningKey};
use shared::config::Config;
use shared::domain::{new_id, UserId};
use shared::testkit::{test_public_keys, test_signing_key, TEST_KID};
use uuid::Uuid;

const ISSUER: &str = "ripple";
const AUDIENCE: &str = "ripple-clients";

const RSA_PRIVATE: &str = include_str!("fixtures/test-only-rsa-provider-private.pem");

/// A configuration whose JWKS holds `keys`.
fn config_with_keys(keys: &[&SigningKey]) -> Config {
    let jwks = Jwks::new(keys.iter().map(|key| key.public_key()).collect()).unwrap();
    Config::from_vars([
        ("TABLE_NAME", "t".to_owned()),
        ("JWT_PUBLIC_KEYS", jwks.to_json().to_string()),
    ])
    .expect("valid configuration")
}

/// The verifier every function but api-auth holds: the test JWKS, no private key.
fn service() -> TokenService {
    let config = Config::from_vars([
        ("TABLE_NAME", "t".to_owned()),
        ("JWT_PUBLIC_KEYS", test_public_keys()),
    ])
    .expect("valid configuration");
    TokenService::new(&config.jwt).expect("verifier")
}

/// api-auth's service: the same JWKS and the signing key.
fn issuer() -> TokenService {
    service()
        .with_signing_key(test_signing_key())
        .expect("signing service")
}

/// Claims a genuine token for `user` issued at `now` would carry.
fn claims(user: UserId, now: DateTime<Utc>) -> Value {
    json!({
        "sub": user.to_string(),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now.timestamp(),
        "exp": (now + Duration::minutes(15)).timestamp(),
    })
}

fn header(algorithm: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    header
}

fn sign(header: &Header, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(header, claims, key).expect("signing a test token")
}

/// PKCS#8 DER of an Ed25519 key, as jsonwebtoken signs with (RFC 8410).
fn ed_encoding_key(key: &SigningKey) -> EncodingKey {
    let jwk: Value = serde_json::from_str(&key.to_private_jwk_json()).unwrap();
    let seed = URL_SAFE_NO_PAD.decode(jwk["d"].as_str().unwrap()).unwrap();
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    EncodingKey::from_ed_der(&der)
}

/// A token signed by the test key under its kid, with any claims.
fn sign_eddsa(claims: &Value) -> String {
    sign(
        &header(Algorithm::EdDSA, Some(TEST_KID)),
        &ed_encoding_key(test_signing_key()),
        claims,
    )
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// Asserts that verification fails with 401, whatever the reason.
fn assert_rejected(service: &TokenService, token: &str, why: &str) {
    match service.verify(token) {
        Ok(user) => panic!("{why}: token accepted for {user}"),
        Err(error) => assert_eq!(error.status(), 401, "{why}: {error:?}"),
    }
}

// ---- issue and verify ----------------------------------------------------------------------

#[test]
fn a_token_issued_by_api_auth_is_accepted_by_a_verifier_for_its_user() {
    let user = new_id();
    let token = issuer().issue(user, Utc::now()).unwrap();
    assert_eq!(service().verify(&token).unwrap(), user);
    assert_eq!(
        header_of(&token),
        json!({"alg": "EdDSA", "typ": "JWT", "kid": TEST_KID})
    );
    // A hand-built token with exactly the expected claims is accepted too: the helpers
    // below forge nothing the service would refuse for other reasons.
    assert_eq!(
        service()
            .verify(&sign_eddsa(&claims(user, Utc::now())))
            .unwrap(),
        user
    );
}

#[test]
fn issued_tokens_carry_the_configured_claims_and_lifetime() {
    let service = issuer();
    let user = new_id();
    let now = Utc::now();
    let token = service.issue(user, now).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(payload["sub"], user.to_string());
    assert_eq!(payload["iss"], ISSUER);
    assert_eq!(payload["aud"], AUDIENCE);
    assert_eq!(payload["iat"], now.timestamp());
    assert_eq!(payload["exp"], now.timestamp() + 900);
    assert_eq!(service.ttl_seconds(), 900);
}

#[test]
fn a_verifier_cannot_issue_and_a_key_outside_the_jwks_cannot_sign() {
    let error = service().issue(new_id(), Utc::now()).unwrap_err();
    assert_eq!(error.status(), 500, "{error:?}");
    // api-auth refuses to start with a key whose public half is not published.
    let unpublished = SigningKey::generate("unpublished").unwrap();
    assert!(service().with_signing_key(&unpublished).is_err());
    // Nor with another key under a published kid.
    let impostor = SigningKey::generate(TEST_KID).unwrap();
    assert!(service().with_signing_key(&impostor).is_err());
}

#[test]
fn no_key_material_reaches_debug_output() {
    let service = issuer();
    let shown = format!("{service:?} {:?}", test_signing_key());
    let jwk: Value = serde_json::from_str(&test_signing_key().to_private_jwk_json()).unwrap();
    assert!(!shown.contains(jwk["d"].as_str().unwrap()), "{shown}");
    assert!(shown.contains(TEST_KID), "{shown}");
}

// ---- keys: wrong, unknown, missing ---------------------------------------------------------

#[test]
fn a_token_signed_with_another_key_under_the_same_kid_is_rejected() {
    let impostor = SigningKey::generate(TEST_KID).unwrap();
    let token = sign(
        &header(Algorithm::EdDSA, Some(TEST_KID)),
        &ed_encoding_key(&impostor),
        &claims(new_id(), Utc::now()),
    );
    assert_rejected(&service(), &token, "signed by another Ed25519 key");
}

#[test]
fn an_unknown_or_missing_kid_is_rejected() {
    let body = claims(new_id(), Utc::now());
    let key = ed_encoding_key(test_signing_key());
    // The right key and signature, but a kid the JWKS does not have, or none at all.
    for kid in [Some("another-key"), Some(""), Some("test-key "), None] {
        let token = sign(&header(Algorithm::EdDSA, kid), &key, &body);
        assert_rejected(&service(), &token, &format!("kid {kid:?}"));
    }
}

// ---- algorithms ----------------------------------------------------------------------------

#[test]
fn alg_none_is_rejected() {
    let service = service();
    let body = b64(&claims(new_id(), Utc::now()));
    let genuine = sign_eddsa(&claims(new_id(), Utc::now()));
    let signature = genuine.rsplit('.').next().unwrap();
    for header in [
        json!({"alg": "none", "typ": "JWT", "kid": TEST_KID}),
        json!({"alg": "None", "kid": TEST_KID}),
        json!({"alg": "NONE"}),
    ] {
        let unsigned = format!("{}.{body}.", b64(&header));
        assert_rejected(&service, &unsigned, &format!("unsigned token {header}"));
        assert_rejected(
            &service,
            &format!("{}.{body}.{signature}", b64(&header)),
            &format!("{header} with a borrowed signature"),
        );
    }
}

#[test]
fn hmac_signed_with_the_public_key_is_rejected() {
    // Algorithm confusion: an attacker knows the public key (it is served at
    // /.well-known/jwks.json) and signs HS256 with it, as raw bytes or as the JWK's x text.
    let public = test_signing_key().public_key();
    let x = public.x();
    let raw = URL_SAFE_NO_PAD.decode(&x).unwrap();
    let jwks_text = Jwks::new(vec![public]).unwrap().to_json().to_string();
    for secret in [raw.as_slice(), x.as_bytes(), jwks_text.as_bytes()] {
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(
                &header(algorithm, Some(TEST_KID)),
                &EncodingKey::from_secret(secret),
                &claims(new_id(), Utc::now()),
            );
            assert_rejected(
                &service(),
                &token,
                &format!("{algorithm:?} with public bytes"),
            );
        }
    }
}

#[test]
fn rs256_and_es256_headers_are_rejected() {
    let body = claims(new_id(), Utc::now());
    // A real RS256 signature under the published kid.
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let token = sign(&header(Algorithm::RS256, Some(TEST_KID)), &rsa, &body);
    assert_rejected(&service(), &token, "RS256");
    // The EdDSA signature relabelled as ES256 / RS256 / PS256.
    let genuine = sign_eddsa(&body);
    let (_, rest) = genuine.split_once('.').unwrap();
    for alg in ["ES256", "RS256", "PS256", "EdDSA "] {
        let forged = format!("{}.{rest}", b64(&json!({"alg": alg, "kid": TEST_KID})));
        assert_rejected(
            &service(),
            &forged,
            &format!("EdDSA signature labelled {alg}"),
        );
    }
}

// ---- claims --------------------------------------------------------------------------------

#[test]
fn an_expired_token_is_rejected_beyond_the_leeway_only() {
    let service = issuer();
    let user = new_id();
    let now = Utc::now();
    let mut expired = claims(user, now - Duration::minutes(20));
    expired["exp"] = json!((now - Duration::seconds(30)).timestamp());
    assert_rejected(&service, &sign_eddsa(&expired), "expired 30 s ago");

    // A token issued by the service 15 minutes and a few seconds ago is dead too.
    let old = service
        .issue(user, now - Duration::seconds(900 + 10))
        .unwrap();
    assert_rejected(&service, &old, "issued 15 min 10 s ago");

    // Clock skew of a couple of seconds is tolerated (5 s leeway).
    let mut just_expired = claims(user, now - Duration::minutes(15));
    just_expired["exp"] = json!((now - Duration::seconds(2)).timestamp());
    assert_eq!(service.verify(&sign_eddsa(&just_expired)).unwrap(), user);
}

#[test]
fn wrong_issuer_or_audience_is_rejected() {
    let service = service();
    let mut wrong_iss = claims(new_id(), Utc::now());
    wrong_iss["iss"] = json!("evil-issuer");
    assert_rejected(&service, &sign_eddsa(&wrong_iss), "wrong iss");

    let mut wrong_aud = claims(new_id(), Utc::now());
    wrong_aud["aud"] = json!("some-other-api");
    assert_rejected(&service, &sign_eddsa(&wrong_aud), "wrong aud");

    let mut aud_list = claims(new_id(), Utc::now());
    aud_list["aud"] = json!(["some-other-api"]);
    assert_rejected(&service, &sign_eddsa(&aud_list), "aud list without ours");
}

#[test]
fn a_tampered_payload_with_the_original_signature_is_rejected() {
    let service = issuer();
    let victim = new_id();
    let genuine = service.issue(new_id(), Utc::now()).unwrap();
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_payload = b64(&claims(victim, Utc::now()));
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_rejected(&service, &forged, "sub swapped, signature kept");

    // Flipping one character of the signature is rejected as well.
    let mut signature = parts[2].to_owned();
    let last = signature.pop().unwrap();
    signature.push(if last == 'A' { 'B' } else { 'A' });
    assert_rejected(
        &service,
        &format!("{}.{}.{signature}", parts[0], parts[1]),
        "signature altered",
    );
}

#[test]
fn tokens_missing_a_required_claim_are_rejected() {
    let service = service();
    for missing in ["sub", "iss", "aud", "iat", "exp"] {
        let mut partial = claims(new_id(), Utc::now());
        partial.as_object_mut().unwrap().remove(missing);
        assert_rejected(
            &service,
            &sign_eddsa(&partial),
            &format!("without {missing}"),
        );
    }
    assert_rejected(&service, &sign_eddsa(&json!({})), "no claims at all");
}

#[test]
fn a_sub_that_is_not_a_user_id_is_rejected() {
    let service = service();
    for sub in [
        json!("admin"),
        json!(""),
        json!(Uuid::nil().to_string()),
        json!(42),
        json!(null),
    ] {
        let mut bad = claims(new_id(), Utc::now());
        bad["sub"] = sub.clone();
        assert_rejected(&service, &sign_eddsa(&bad), &format!("sub = {sub}"));
    }
}

#[test]
fn garbage_is_rejected() {
    let service = service();
    let long = "a".repeat(10_000);
    for garbage in [
        "",
        "garbage",
        "a.b.c",
        "..",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0",
        "eyJhbGciOiJIUzI1NiJ9.!!!.@@@",
        "\u{0}\u{1}.\u{2}.\u{3}",
        long.as_str(),
    ] {
        assert_rejected(&service, garbage, &format!("{garbage:.40}"));
    }
}

#[test]
fn authenticate_reads_only_a_bearer_authorization_header() {
    let service = issuer();
    let user = new_id();
    let token = service.issue(user, Utc::now()).unwrap();
    let request = |header: Option<String>| {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = header {
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        shared::http::ApiRequest {
            method: http::Method::GET,
            path: "/users/me".into(),
            route: "/users/me",
            params: Default::default(),
            query: Default::default(),
            headers,
            body: Vec::new(),
            request_id: "r".into(),
            source_ip: "203.0.113.7".into(),
        }
    };
    assert_eq!(
        service
            .authenticate(&request(Some(format!("Bearer {token}"))))
            .unwrap(),
        user
    );
    assert_eq!(
        service
            .authenticate(&request(Some(format!("bearer {token}"))))
            .unwrap(),
        user
    );
    for header in [
        None,
        Some(format!("Basic {token}")),
        Some(token.clone()),
        Some("Bearer ".to_owned()),
        Some("Bearer not-a-jwt".to_owned()),
    ] {
        let error = service.authenticate(&request(header.clone())).unwrap_err();
        assert_eq!(error.status(), 401, "{header:?}");
    }
}

// ---- rotation ------------------------------------------------------------------------------

#[test]
fn a_token_of_the_previous_key_verifies_while_both_are_published_only() {
    let old = SigningKey::generate("2026-11").unwrap();
    let new = SigningKey::generate("2026-12").unwrap();
    let user = new_id();
    let now = Utc::now();

    // Before: api-auth signs with the old key, the JWKS has only it.
    let before = config_with_keys(&[&old]);
    let old_token = TokenService::new(&before.jwt)
        .and_then(|s| s.with_signing_key(&old))
        .unwrap()
        .issue(user, now)
        .unwrap();

    // Step 1: both public keys published (api-auth may now switch to the new key).
    let both = config_with_keys(&[&old, &new]);
    let verifier = TokenService::new(&both.jwt).unwrap();
    let new_token = verifier
        .clone()
        .with_signing_key(&new)
        .unwrap()
        .issue(user, now)
        .unwrap();
    assert_eq!(
        verifier.verify(&old_token).unwrap(),
        user,
        "old token, both keys"
    );
    assert_eq!(
        verifier.verify(&new_token).unwrap(),
        user,
        "new token, both keys"
    );
    // A verifier still on the old JWKS refuses the new kid: publish before signing.
    assert_rejected(
        &TokenService::new(&before.jwt).unwrap(),
        &new_token,
        "new kid not yet published",
    );

    // Step 2: one token lifetime later the old key is removed.
    let after = TokenService::new(&config_with_keys(&[&new]).jwt).unwrap();
    assert_eq!(after.verify(&new_token).unwrap(), user);
    assert_rejected(&after, &old_token, "old key removed");
}

#[test]
fn a_jwks_that_is_not_ed25519_is_a_start_up_error() {
    for bad in [
        "not json",
        r#"{"keys":[]}"#,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k"}]}"#,
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k"}]}"#,
    ] {
        let error = Config::from_vars([("TABLE_NAME", "t"), ("JWT_PUBLIC_KEYS", bad)]).unwrap_err();
        assert!(error.to_string().contains("JWT_PUBLIC_KEYS"), "{error}");
    }
}

// ---- passwords -----------------------------------------------------------------------------

#[test]
fn a_password_hash_is_an_argon2id_phc_string_with_the_production_parameters() {
    let hash = passwords::hash_blocking("correct horse battery").unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains("correct horse battery"));
    let again = passwords::hash_blocking("correct horse battery").unwrap();
    assert_ne!(hash, again, "every hash has its own salt");
}

#[test]
fn verify_accepts_the_right_password_and_nothing_else() {
    let hash = passwords::hash_blocking("correct horse battery").unwrap();
    assert!(passwords::verify_blocking("correct horse battery", &hash));
    for wrong in ["correct horse batterY", "correct horse battery ", "", "x"] {
        assert!(!passwords::verify_blocking(wrong, &hash), "{wrong:?}");
    }
    assert!(passwords::verify_login_blocking(
        "correct horse battery",
        Some(&hash)
    ));
    assert!(!passwords::verify_login_blocking(
        "wrong password",
        Some(&hash)
    ));
}

#[test]
fn a_hash_that_is_not_argon2id_never_matches_even_with_the_right_password() {
    let password = "correct horse battery";
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    for algorithm in [argon2::Algorithm::Argon2i, argon2::Algorithm::Argon2d] {
        let params = argon2::Params::new(
            passwords::MEMORY_KIB,
            passwords::ITERATIONS,
            passwords::PARALLELISM,
            None,
        )
        .unwrap();
        let other = argon2::Argon2::new(algorithm, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert!(!other.starts_with("$argon2id$"), "{other}");
        assert!(
            !passwords::verify_blocking(password, &other),
            "{algorithm:?}"
        );
    }
    for not_argon2id in [
        password,
        "",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "$argon2id$garbage",
    ] {
        assert!(
            !passwords::verify_blocking(password, not_argon2id),
            "{not_argon2id}"
        );
    }
}

#[test]
fn login_of_an_unknown_user_never_matches() {
    assert!(!passwords::verify_login_blocking(
        "any password at all",
        None
    ));
}

#[tokio::test]
async fn async_hash_and_verify_run_on_the_blocking_pool_and_agree() {
    let hash = passwords::hash("s3cret-passphrase").await.unwrap();
    assert!(
        passwords::verify_login("s3cret-passphrase", Some(hash.clone()))
            .await
            .unwrap()
    );
    assert!(!passwords::verify_login("other-passphrase", Some(hash))
        .await
        .unwrap());
    assert!(!passwords::verify_login("s3cret-passphrase", None)
        .await
        .unwrap());
}
