//! API Gateway events, built on the `aws_lambda_events` types the functions deserialise.

pub mod http;
pub mod ws;
