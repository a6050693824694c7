//! `ws-disconnect`: the WebSocket API's `$disconnect` route.
//!
//! Removes the connection, its entry in the user's connection set and its room memberships
//! (`DynamoStore::remove_connection`, one transaction). Always answers 200: API Gateway
//! ignores the result of `$disconnect` and never retries it, so a failure is logged and the
//! leftovers are cleaned up later — by the connection's TTL (the stream router then releases
//! its set entry and memberships) or by the push tier the first time a post to it is answered
//! `410 Gone`. A repeated or unknown connection id is simply nothing to do.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use lambda_runtime::LambdaEvent;
use shared::aws::DynamoClients;
use shared::config::Config;
use shared::error::{cause_chain, Error, Result};
use shared::function::{BoxError, FunctionState, LambdaFunction, TypedFunction};
use shared::store::DynamoStore;

/// Everything the handler needs, built once per cold start.
pub struct State {
    /// Where the connection and its room memberships are removed.
    store: Arc<DynamoStore>,
}

impl FunctionState for State {
    type Clients = DynamoClients;

    /// The DynamoDB store.
    fn build(config: Config, clients: &DynamoClients) -> Result<Self> {
        let store = DynamoStore::new(clients.dynamodb.clone(), &config.table_name);
        Ok(Self {
            store: Arc::new(store),
        })
    }
}

/// The function as the local gateway and the tests invoke it.
pub fn lambda_function(state: Arc<State>) -> Arc<dyn LambdaFunction> {
    TypedFunction::serving(state, handle)
}

/// Handles one `$disconnect`; always 200 (see the module docs).
#[tracing::instrument(
    skip(state, event),
    fields(request_id = %event.payload.request_context.request_id.as_deref().unwrap_or_default())
)]
pub async fn handle(
    state: Arc<State>,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> std::result::Result<ApiGatewayProxyResponse, BoxError> {
    let state = state.as_ref();
    let context = &event.payload.request_context;
    match disconnect(state, context.connection_id.as_deref()).await {
        Ok(Some(user)) => tracing::info!(
            %user,
            connection_id = ?context.connection_id,
            status = ?context.disconnect_status_code,
            reason = ?context.disconnect_reason,
            "disconnected"
        ),
        Ok(None) => {
            tracing::debug!(connection_id = ?context.connection_id, "connection already gone")
        }
        Err(error) => tracing::error!(
            connection_id = ?context.connection_id,
            error = %error,
            causes = %cause_chain(&error),
            "removing the connection failed; its TTL will clean up"
        ),
    }
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = 200;
    Ok(response)
}

/// The user whose connection was removed; `None` if it was already gone.
async fn disconnect(
    state: &State,
    connection_id: Option<&str>,
) -> Result<Option<shared::domain::UserId>> {
    let connection_id = connection_id
        .ok_or_else(|| Error::invariant("$disconnect event without requestContext.connectionId"))?;
    Ok(state
        .store
        .remove_connection(connection_id)
        .await?
        .map(|connection| connection.user_id))
}
