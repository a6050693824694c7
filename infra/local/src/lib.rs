//! Ripple local gateway (under construction).
