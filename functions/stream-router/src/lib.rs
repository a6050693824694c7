//! `stream-router` (being written).
