//! The table definition — one JSON file, `infra/table.json`, used by the tests, the local
//! stack and (checked by a test) `template.yaml`.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The raw definition, embedded at compile time so every binary agrees on it.
pub const TABLE_DEFINITION_JSON: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/table.json"));

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TableDefinition {
    pub time_to_live_attribute: String,
    pub table: CreateTableInput,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CreateTableInput {
    pub table_name: String,
    pub billing_mode: String,
    pub attribute_definitions: Vec<AttributeDef>,
    pub key_schema: Vec<KeyElement>,
    pub global_secondary_indexes: Vec<IndexDef>,
    pub stream_specification: StreamSpec,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDef {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDef {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: ProjectionDef,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionDef {
    pub projection_type: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct StreamSpec {
    pub stream_enabled: bool,
    pub stream_view_type: String,
}

impl TableDefinition {
    /// The definition every Ripple component uses.
    pub fn load() -> Result<Self> {
        serde_json::from_str(TABLE_DEFINITION_JSON)
            .map_err(|e| Error::internal("infra/table.json is not a valid table definition", e))
    }
}

fn key_schema(elements: &[KeyElement]) -> Result<Vec<KeySchemaElement>> {
    elements
        .iter()
        .map(|element| {
            KeySchemaElement::builder()
                .attribute_name(&element.attribute_name)
                .key_type(KeyType::from(element.key_type.as_str()))
                .build()
                .map_err(|e| Error::internal("building key schema", e))
        })
        .collect()
}

impl CreateTableInput {
    fn attribute_definitions(&self) -> Result<Vec<AttributeDefinition>> {
        self.attribute_definitions
            .iter()
            .map(|a| {
                AttributeDefinition::builder()
                    .attribute_name(&a.attribute_name)
                    .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                    .build()
                    .map_err(|e| Error::internal("building attribute definition", e))
            })
            .collect()
    }

    fn secondary_indexes(&self) -> Result<Vec<GlobalSecondaryIndex>> {
        self.global_secondary_indexes
            .iter()
            .map(|index| {
                GlobalSecondaryIndex::builder()
                    .index_name(&index.index_name)
                    .set_key_schema(Some(key_schema(&index.key_schema)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(
                                index.projection.projection_type.as_str(),
                            ))
                            .build(),
                    )
                    .build()
                    .map_err(|e| Error::internal("building index definition", e))
            })
            .collect()
    }

    fn stream_specification(&self) -> Result<StreamSpecification> {
        StreamSpecification::builder()
            .stream_enabled(self.stream_specification.stream_enabled)
            .stream_view_type(StreamViewType::from(
                self.stream_specification.stream_view_type.as_str(),
            ))
            .build()
            .map_err(|e| Error::internal("building stream specification", e))
    }
}

/// Creates `table_name` with the single definition (GSIs, stream, TTL) unless it exists.
pub async fn create_table(client: &Client, table_name: &str) -> Result<()> {
    let definition = TableDefinition::load()?;
    let table = &definition.table;

    let exists = client.describe_table().table_name(table_name).send().await;
    if exists.is_ok() {
        return Ok(());
    }

    let created = client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::from(table.billing_mode.as_str()))
        .set_attribute_definitions(Some(table.attribute_definitions()?))
        .set_key_schema(Some(key_schema(&table.key_schema)?))
        .set_global_secondary_indexes(Some(table.secondary_indexes()?))
        .stream_specification(table.stream_specification()?)
        .send()
        .await;
    if let Err(error) = created {
        // Another process may have created it between describe and create.
        let raced = error
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception());
        if raced {
            // The winner of the race also enables TTL.
            return Ok(());
        }
        return Err(Error::internal(
            format!("creating table {table_name}"),
            error,
        ));
    }
    enable_ttl(client, table_name, &definition.time_to_live_attribute).await
}

async fn enable_ttl(client: &Client, table_name: &str, attribute: &str) -> Result<()> {
    client
        .update_time_to_live()
        .table_name(table_name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(true)
                .build()
                .map_err(|e| Error::internal("building TTL specification", e))?,
        )
        .send()
        .await
        .map_err(|e| Error::internal(format!("enabling TTL on {table_name}"), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_parses_and_has_the_expected_shape() {
        let definition = TableDefinition::load().unwrap();
        assert_eq!(definition.time_to_live_attribute, "expires_at");
        let table = definition.table;
        assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
        assert_eq!(
            table.stream_specification.stream_view_type,
            "NEW_AND_OLD_IMAGES"
        );
        let names: Vec<_> = table
            .global_secondary_indexes
            .iter()
            .map(|i| i.index_name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                super::super::keys::GSI1,
                super::super::keys::GSI2,
                super::super::keys::GSI3
            ]
        );
    }
}
