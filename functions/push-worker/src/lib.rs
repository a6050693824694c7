//! `push-worker` (being written).
