//! Compile-time proof that no REST function can be handed an SQS client, and that
//! `api-auth` / `api-notifications` cannot be handed a management-API client either (with
//! `tests/footprint.rs`, which checks the states' client sets and the linked crates).
//!
//! `api-notifications` takes [`shared::aws::DynamoClients`], `api-auth` the same DynamoDB
//! clients (its production set, `AuthClients`, adds only Secrets Manager for its signing
//! key); `api-posts`,
//! `api-messages` and `api-users` take [`shared::aws::WriterClients`] (DynamoDB and the
//! optional management client of the writer push). Neither set has an SQS client, and the
//! sets that do are other types, so handing one over does not compile:
//!
//! ```compile_fail
//! use shared::http::RestState;
//! fn build(config: shared::config::Config, clients: &shared::aws::RouterClients) {
//!     let _state = api_posts::State::new(config, clients);
//! }
//! ```
//!
//! ```compile_fail
//! use shared::function::FunctionState;
//! fn build(config: shared::config::Config, clients: &shared::aws::RouterClients) {
//!     let _state = <api_messages::State as FunctionState>::build(config, clients);
//! }
//! ```
//!
//! nor does reaching for SQS through a writer's set:
//!
//! ```compile_fail
//! fn reach(clients: &shared::aws::WriterClients) {
//!     let _sqs = &clients.sqs;
//! }
//! ```
//!
//! nor giving `api-auth` a set with a management client, or reaching for one through its set:
//!
//! ```compile_fail
//! fn build(
//!     config: shared::config::Config,
//!     clients: &shared::aws::WriterClients,
//!     key: &shared::auth::SigningKey,
//! ) {
//!     let _state = api_auth::State::new(config, clients, key);
//! }
//! ```
//!
//! ```compile_fail
//! fn reach(clients: &shared::aws::DynamoClients) {
//!     let _management = &clients.management;
//! }
//! ```
//!
//! nor claiming a REST state is built from the fan-out tier's set:
//!
//! ```compile_fail
//! use shared::function::FunctionState;
//! fn reaches_sqs<S: FunctionState<Clients = shared::aws::RouterClients>>() {}
//! fn check() {
//!     reaches_sqs::<api_users::State>();
//! }
//! ```
//!
//! while the same code with each function's own set compiles (so the blocks above fail for
//! the reason they claim, not a typo):
//!
//! ```
//! use shared::function::FunctionState;
//! use shared::http::RestState;
//! fn build(
//!     config: shared::config::Config,
//!     writer: &shared::aws::WriterClients,
//!     dynamo: &shared::aws::DynamoClients,
//!     router: &shared::aws::RouterClients,
//!     key: &shared::auth::SigningKey,
//! ) {
//!     let _state = api_posts::State::new(config.clone(), writer);
//!     let _state = <api_messages::State as FunctionState>::build(config.clone(), writer);
//!     let _state = api_auth::State::new(config, dynamo, key);
//!     let _management = &writer.management;
//!     let _sqs = &router.sqs;
//! }
//! fn writer<S: FunctionState<Clients = shared::aws::WriterClients>>() {}
//! fn check() {
//!     writer::<api_users::State>();
//! }
//! ```
