//! Identifiers and timestamps shaped like the ones API Gateway puts in its events, so code
//! (and people) reading local events see what they will see on AWS.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// A WebSocket connection id: 16 random bytes, URL-safe base64 with padding — it ends with
/// `=`, so clients must URL-encode it in `@connections` paths exactly as on AWS.
pub fn connection_id() -> String {
    URL_SAFE.encode(random_bytes::<16>())
}

/// An API Gateway request / message id (`JKJaXmPLvHcESHA=`: 11 bytes, base64).
pub fn request_id() -> String {
    STANDARD.encode(random_bytes::<11>())
}

/// API Gateway's `requestContext.time` / `requestTime` format: `09/Feb/2024:18:11:43 +0000`.
pub fn clf_time(time: DateTime<Utc>) -> String {
    time.format("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

/// ISO 8601 with milliseconds, as the management API returns timestamps.
pub fn iso_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_url_safe_padded_and_unique() {
        let id = connection_id();
        assert!(id.ends_with('='), "{id}");
        assert!(!id.contains('+') && !id.contains('/'), "{id}");
        assert_ne!(id, connection_id());
    }

    #[test]
    fn times_use_api_gateway_formats() {
        let time = DateTime::parse_from_rfc3339("2024-02-09T18:11:43.250Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(clf_time(time), "09/Feb/2024:18:11:43 +0000");
        assert_eq!(iso_time(time), "2024-02-09T18:11:43.250Z");
    }
}
