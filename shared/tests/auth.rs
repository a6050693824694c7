//! Access tokens and password hashing, attacked the way a hostile client would: every
//! forged, downgraded, re-signed, expired, mis-addressed or malformed token must be
//! rejected, and only a genuine one accepted. Covers the HS256 default and the RS256 mode
//! for an external identity provider (keys in `tests/fixtures/`, see its README).

use argon2::password_hash::{PasswordHasher, SaltString};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::auth::passwords;
use shared::auth::TokenService;
use shared::config::Config;
use shared::domain::new_id;
use shared::testkit::TEST_JWT_SECRET;
use uuid::Uuid;

const ISSUER: &str = "ripple";
const AUDIENCE: &str = "ripple-clients";

const PROVIDER_PRIVATE: &str = include_str!("fixtures/test-only-rsa-provider-private.pem");
const PROVIDER_PUBLIC: &str = include_str!("fixtures/test-only-rsa-provider-public.pem");
const OTHER_PRIVATE: &str = include_str!("fixtures/test-only-rsa-other-private.pem");

fn hs256_service() -> TokenService {
    let config = Config::from_vars([("TABLE_NAME", "t"), ("JWT_SECRET", TEST_JWT_SECRET)])
        .expect("valid HS256 configuration");
    TokenService::new(&config.jwt).expect("HS256 token service")
}

fn rs256_service() -> TokenService {
    let config = Config::from_vars([("TABLE_NAME", "t"), ("JWT_PUBLIC_KEY_PEM", PROVIDER_PUBLIC)])
        .expect("valid RS256 configuration");
    TokenService::new(&config.jwt).expect("RS256 token service")
}

/// Claims a genuine token for `user` issued at `now` would carry.
fn claims(user: Uuid, now: DateTime<Utc>) -> Value {
    json!({
        "sub": user.to_string(),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now.timestamp(),
        "exp": (now + Duration::minutes(15)).timestamp(),
    })
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).expect("signing a test token")
}

fn sign_hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
        claims,
    )
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Asserts that verification fails with 401, whatever the reason.
fn assert_rejected(service: &TokenService, token: &str, why: &str) {
    match service.verify(token) {
        Ok(user) => panic!("{why}: token accepted for {user}"),
        Err(error) => assert_eq!(error.status(), 401, "{why}: {error:?}"),
    }
}

// ---- HS256 (the default) -------------------------------------------------------------------

#[test]
fn a_token_issued_by_the_service_is_accepted_for_its_user() {
    let service = hs256_service();
    let user = new_id();
    let token = service.issue(user, Utc::now()).unwrap();
    assert_eq!(service.verify(&token).unwrap(), user);
    // A hand-built token with exactly the expected claims is accepted too: the test
    // helpers below forge nothing the service would refuse for other reasons.
    assert_eq!(
        service
            .verify(&sign_hs256(&claims(user, Utc::now())))
            .unwrap(),
        user
    );
}

#[test]
fn issued_tokens_carry_the_configured_claims_and_lifetime() {
    let service = hs256_service();
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
fn alg_none_is_rejected() {
    let service = hs256_service();
    let body = b64(&claims(new_id(), Utc::now()));
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None", "typ": "JWT"}),
        json!({"alg": "NONE"}),
    ] {
        let unsigned = format!("{}.{body}.", b64(&header));
        assert_rejected(&service, &unsigned, &format!("unsigned token {header}"));
        // The same with a copied HS256 signature does not help either.
        let genuine = sign_hs256(&claims(new_id(), Utc::now()));
        let signature = genuine.rsplit('.').next().unwrap();
        assert_rejected(
            &service,
            &format!("{}.{body}.{signature}", b64(&header)),
            &format!("{header} with a borrowed signature"),
        );
    }
}

#[test]
fn hs512_is_rejected_when_hs256_is_pinned() {
    let service = hs256_service();
    for algorithm in [Algorithm::HS384, Algorithm::HS512] {
        // Same secret, valid claims: only the algorithm differs.
        let token = sign(
            algorithm,
            &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
            &claims(new_id(), Utc::now()),
        );
        assert_rejected(&service, &token, &format!("{algorithm:?}"));
    }
}

#[test]
fn a_token_signed_with_another_secret_is_rejected() {
    let service = hs256_service();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-0123456789abcdef0123456789"),
        &claims(new_id(), Utc::now()),
    );
    assert_rejected(&service, &token, "foreign secret");
}

#[test]
fn an_expired_token_is_rejected_beyond_the_leeway_only() {
    let service = hs256_service();
    let user = new_id();
    let now = Utc::now();
    let mut expired = claims(user, now - Duration::minutes(20));
    expired["exp"] = json!((now - Duration::seconds(30)).timestamp());
    assert_rejected(&service, &sign_hs256(&expired), "expired 30 s ago");

    // A token issued by the service 15 minutes and a few seconds ago is dead too.
    let old = service
        .issue(user, now - Duration::seconds(900 + 10))
        .unwrap();
    assert_rejected(&service, &old, "issued 15 min 10 s ago");

    // Clock skew of a couple of seconds is tolerated (5 s leeway).
    let mut just_expired = claims(user, now - Duration::minutes(15));
    just_expired["exp"] = json!((now - Duration::seconds(2)).timestamp());
    assert_eq!(service.verify(&sign_hs256(&just_expired)).unwrap(), user);
}

#[test]
fn wrong_issuer_or_audience_is_rejected() {
    let service = hs256_service();
    let mut wrong_iss = claims(new_id(), Utc::now());
    wrong_iss["iss"] = json!("evil-issuer");
    assert_rejected(&service, &sign_hs256(&wrong_iss), "wrong iss");

    let mut wrong_aud = claims(new_id(), Utc::now());
    wrong_aud["aud"] = json!("some-other-api");
    assert_rejected(&service, &sign_hs256(&wrong_aud), "wrong aud");

    let mut aud_list = claims(new_id(), Utc::now());
    aud_list["aud"] = json!(["some-other-api"]);
    assert_rejected(&service, &sign_hs256(&aud_list), "aud list without ours");
}

#[test]
fn a_tampered_payload_with_the_original_signature_is_rejected() {
    let service = hs256_service();
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
    let service = hs256_service();
    for missing in ["sub", "iss", "aud", "iat", "exp"] {
        let mut partial = claims(new_id(), Utc::now());
        partial.as_object_mut().unwrap().remove(missing);
        assert_rejected(
            &service,
            &sign_hs256(&partial),
            &format!("without {missing}"),
        );
    }
    assert_rejected(&service, &sign_hs256(&json!({})), "no claims at all");
}

#[test]
fn a_sub_that_is_not_a_user_id_is_rejected() {
    let service = hs256_service();
    for sub in [
        json!("admin"),
        json!(""),
        json!(Uuid::nil().to_string()),
        json!(42),
        json!(null),
    ] {
        let mut bad = claims(new_id(), Utc::now());
        bad["sub"] = sub.clone();
        assert_rejected(&service, &sign_hs256(&bad), &format!("sub = {sub}"));
    }
}

#[test]
fn garbage_is_rejected() {
    let service = hs256_service();
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
    let service = hs256_service();
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

// ---- RS256 (external identity provider) ----------------------------------------------------

#[test]
fn rs256_accepts_a_token_from_the_provider_key() {
    let service = rs256_service();
    let user = new_id();
    let token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(PROVIDER_PRIVATE.as_bytes()).unwrap(),
        &claims(user, Utc::now()),
    );
    assert_eq!(service.verify(&token).unwrap(), user);
}

#[test]
fn rs256_rejects_a_token_signed_by_another_rsa_key() {
    let service = rs256_service();
    let token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(OTHER_PRIVATE.as_bytes()).unwrap(),
        &claims(new_id(), Utc::now()),
    );
    assert_rejected(&service, &token, "RS256 by a foreign key");
}

#[test]
fn rs256_rejects_hs256_signed_with_the_public_key_as_secret() {
    // Algorithm confusion: a verifier that trusts the header's `alg` would check this HMAC
    // with the public key bytes as the secret, which every attacker knows.
    let service = rs256_service();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(PROVIDER_PUBLIC.as_bytes()),
        &claims(new_id(), Utc::now()),
    );
    assert_rejected(&service, &token, "HS256 keyed with the RSA public key");
    // Other RSA-family algorithms with the provider key are not accepted either: RS256 is
    // pinned.
    let ps256 = sign(
        Algorithm::PS256,
        &EncodingKey::from_rsa_pem(PROVIDER_PRIVATE.as_bytes()).unwrap(),
        &claims(new_id(), Utc::now()),
    );
    assert_rejected(&service, &ps256, "PS256 with the provider key");
}

#[test]
fn rs256_still_checks_expiry_issuer_and_audience() {
    let service = rs256_service();
    let key = EncodingKey::from_rsa_pem(PROVIDER_PRIVATE.as_bytes()).unwrap();
    let mut expired = claims(new_id(), Utc::now() - Duration::hours(1));
    expired["exp"] = json!((Utc::now() - Duration::minutes(1)).timestamp());
    assert_rejected(&service, &sign(Algorithm::RS256, &key, &expired), "expired");
    let mut wrong_aud = claims(new_id(), Utc::now());
    wrong_aud["aud"] = json!("elsewhere");
    assert_rejected(
        &service,
        &sign(Algorithm::RS256, &key, &wrong_aud),
        "wrong aud",
    );
}

#[test]
fn rs256_mode_cannot_issue_tokens() {
    let error = rs256_service().issue(new_id(), Utc::now()).unwrap_err();
    assert_eq!(error.status(), 500);
}

#[test]
fn a_public_key_that_is_not_rsa_is_a_start_up_error() {
    let error =
        Config::from_vars([("TABLE_NAME", "t"), ("JWT_PUBLIC_KEY_PEM", "not a key")]).unwrap_err();
    assert!(error.to_string().contains("JWT_PUBLIC_KEY_PEM"), "{error}");
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
