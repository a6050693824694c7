//! Request metering: an AWS SDK interceptor that counts what a client sends.
//!
//! Cost and scaling claims are measured, not assumed: a [`RequestMeter`] attached to the
//! DynamoDB, SQS and API Gateway management clients counts every request attempt per
//! (service, operation) — what AWS bills — and, for DynamoDB, asks for and sums the consumed
//! read and write capacity units (on-demand request units). Tests assert request bounds
//! with it; the benchmark turns the counts into dollars.
//!
//! Attach it through [`crate::aws::Endpoints::meter`] (every client
//! [`crate::aws::ClientSet::from_sdk_config`] builds), or to any SDK config builder with
//! `.interceptor(meter.clone())`. Clones share one set of counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_sdk_dynamodb::operation as ddb;
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef, Input, Output,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The service names the SDK records in its operation [`Metadata`].
pub const DYNAMODB: &str = "DynamoDB";
pub const SQS: &str = "SQS";
pub const MANAGEMENT: &str = "ApiGatewayManagementApi";

/// Counts requests and DynamoDB capacity for every client it is attached to. Cheap to
/// clone; clones share their counters.
#[derive(Debug, Clone, Default)]
pub struct RequestMeter {
    counts: Arc<Mutex<MeterSnapshot>>,
}

/// What a [`RequestMeter`] has counted, at one moment (or the difference of two moments,
/// see [`MeterSnapshot::since`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeterSnapshot {
    /// Request attempts (retries included: each one is billed) per (service, operation),
    /// e.g. `("DynamoDB", "Query")`.
    pub requests: BTreeMap<(String, String), u64>,
    /// Attempts that ended in an error response (throttles, failed conditions, 410s…),
    /// per (service, operation). Also counted in `requests`.
    pub errors: BTreeMap<(String, String), u64>,
    /// Read capacity units DynamoDB reported as consumed (= on-demand read request units).
    pub dynamodb_read_units: f64,
    /// Write capacity units DynamoDB reported as consumed (= on-demand write request units).
    /// DynamoDB reports none for a write refused by its condition (AWS bills it 1 unit per
    /// KB); those are in `errors`.
    pub dynamodb_write_units: f64,
}

impl RequestMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything counted so far.
    pub fn snapshot(&self) -> MeterSnapshot {
        self.lock().clone()
    }

    /// Forgets everything counted so far.
    pub fn reset(&self) {
        *self.lock() = MeterSnapshot::default();
    }

    fn lock(&self) -> MutexGuard<'_, MeterSnapshot> {
        // Counters stay meaningful even if a holder panicked mid-update.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MeterSnapshot {
    /// Requests to `service` (one of [`DYNAMODB`], [`SQS`], [`MANAGEMENT`]).
    pub fn service_requests(&self, service: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((name, _), _)| name == service)
            .map(|(_, count)| count)
            .sum()
    }

    /// Requests of one operation, e.g. `operation_requests("DynamoDB", "Query")`.
    pub fn operation_requests(&self, service: &str, operation: &str) -> u64 {
        self.requests
            .get(&(service.to_owned(), operation.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    pub fn dynamodb_requests(&self) -> u64 {
        self.service_requests(DYNAMODB)
    }

    pub fn sqs_requests(&self) -> u64 {
        self.service_requests(SQS)
    }

    /// `@connections` calls (PostToConnection, GetConnection, DeleteConnection).
    pub fn management_requests(&self) -> u64 {
        self.service_requests(MANAGEMENT)
    }

    /// Every request counted, all services.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }

    /// What was counted after `earlier` was taken (`self` − `earlier`), for one meter.
    /// Operations with no new request are left out.
    pub fn since(&self, earlier: &MeterSnapshot) -> MeterSnapshot {
        MeterSnapshot {
            requests: difference(&self.requests, &earlier.requests),
            errors: difference(&self.errors, &earlier.errors),
            dynamodb_read_units: self.dynamodb_read_units - earlier.dynamodb_read_units,
            dynamodb_write_units: self.dynamodb_write_units - earlier.dynamodb_write_units,
        }
    }
}

fn difference(
    later: &BTreeMap<(String, String), u64>,
    earlier: &BTreeMap<(String, String), u64>,
) -> BTreeMap<(String, String), u64> {
    later
        .iter()
        .filter_map(|(key, count)| {
            let delta = count.saturating_sub(earlier.get(key).copied().unwrap_or(0));
            (delta > 0).then(|| (key.clone(), delta))
        })
        .collect()
}

/// The operation an interceptor hook runs for.
fn operation_key(cfg: &ConfigBag) -> Option<(String, String)> {
    cfg.load::<Metadata>()
        .map(|metadata| (metadata.service().to_owned(), metadata.name().to_owned()))
}

impl Intercept for RequestMeter {
    fn name(&self) -> &'static str {
        "RequestMeter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        request_total_capacity(context.input_mut());
        Ok(())
    }

    /// Once per attempt: a retried call is several billed requests.
    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(key) = operation_key(cfg) {
            *self.lock().requests.entry(key).or_insert(0) += 1;
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        match context.output_or_error() {
            Ok(output) => {
                let (read, write) = consumed_units(output);
                if read > 0.0 || write > 0.0 {
                    let mut counts = self.lock();
                    counts.dynamodb_read_units += read;
                    counts.dynamodb_write_units += write;
                }
            }
            Err(_) => {
                if let Some(key) = operation_key(cfg) {
                    *self.lock().errors.entry(key).or_insert(0) += 1;
                }
            }
        }
        Ok(())
    }
}

/// Asks DynamoDB to report consumed capacity (`TOTAL`) on every operation that can; other
/// inputs are left alone.
fn request_total_capacity(input: &mut Input) {
    macro_rules! set_total {
        ($($input:ty),+ $(,)?) => {
            $(if let Some(input) = input.downcast_mut::<$input>() {
                if input.return_consumed_capacity.is_none() {
                    input.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
                }
                return;
            })+
        };
    }
    set_total!(
        ddb::get_item::GetItemInput,
        ddb::batch_get_item::BatchGetItemInput,
        ddb::query::QueryInput,
        ddb::scan::ScanInput,
        ddb::put_item::PutItemInput,
        ddb::update_item::UpdateItemInput,
        ddb::delete_item::DeleteItemInput,
        ddb::batch_write_item::BatchWriteItemInput,
        ddb::transact_write_items::TransactWriteItemsInput,
        ddb::transact_get_items::TransactGetItemsInput,
    );
}

/// Returns (read units, write units) for the first listed type `$output` is: the sum of its
/// `capacity_units` (`one` for outputs holding an `Option<ConsumedCapacity>`, `many` for
/// those holding an `Option<Vec<_>>`), counted as `read` or `write`.
macro_rules! units_of {
    (@one $output:ident) => { total($output.consumed_capacity.iter()) };
    (@many $output:ident) => { total($output.consumed_capacity.iter().flatten()) };
    (@read $units:expr) => { ($units, 0.0) };
    (@write $units:expr) => { (0.0, $units) };
    ($output:ident; $($side:ident $kind:ident $ty:ty),+ $(,)?) => {
        $(if let Some(output) = $output.downcast_ref::<$ty>() {
            return units_of!(@$side units_of!(@$kind output));
        })+
    };
}

fn total<'a>(capacities: impl Iterator<Item = &'a ConsumedCapacity>) -> f64 {
    capacities
        .map(|capacity| capacity.capacity_units.unwrap_or(0.0))
        .sum()
}

/// (read units, write units) a DynamoDB output reports; (0, 0) for anything else.
fn consumed_units(output: &Output) -> (f64, f64) {
    units_of!(output;
        read one ddb::get_item::GetItemOutput,
        read one ddb::query::QueryOutput,
        read one ddb::scan::ScanOutput,
        read many ddb::batch_get_item::BatchGetItemOutput,
        read many ddb::transact_get_items::TransactGetItemsOutput,
        write one ddb::put_item::PutItemOutput,
        write one ddb::update_item::UpdateItemOutput,
        write one ddb::delete_item::DeleteItemOutput,
        write many ddb::batch_write_item::BatchWriteItemOutput,
        write many ddb::transact_write_items::TransactWriteItemsOutput,
    );
    (0.0, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(service: &str, operation: &str) -> (String, String) {
        (service.to_owned(), operation.to_owned())
    }

    #[test]
    fn a_snapshot_difference_keeps_only_what_happened_in_between() {
        let earlier = MeterSnapshot {
            requests: BTreeMap::from([(key(DYNAMODB, "Query"), 2), (key(SQS, "SendMessage"), 1)]),
            errors: BTreeMap::new(),
            dynamodb_read_units: 1.5,
            dynamodb_write_units: 2.0,
        };
        let later = MeterSnapshot {
            requests: BTreeMap::from([
                (key(DYNAMODB, "Query"), 5),
                (key(DYNAMODB, "PutItem"), 1),
                (key(SQS, "SendMessage"), 1),
                (key(MANAGEMENT, "PostToConnection"), 4),
            ]),
            errors: BTreeMap::from([(key(MANAGEMENT, "PostToConnection"), 1)]),
            dynamodb_read_units: 4.0,
            dynamodb_write_units: 3.0,
        };
        let diff = later.since(&earlier);
        assert_eq!(diff.operation_requests(DYNAMODB, "Query"), 3);
        assert_eq!(diff.dynamodb_requests(), 4);
        assert_eq!(diff.sqs_requests(), 0);
        assert!(!diff.requests.contains_key(&key(SQS, "SendMessage")));
        assert_eq!(diff.management_requests(), 4);
        assert_eq!(diff.total_requests(), 8);
        assert_eq!(
            diff.errors.get(&key(MANAGEMENT, "PostToConnection")),
            Some(&1)
        );
        assert_eq!(diff.dynamodb_read_units, 2.5);
        assert_eq!(diff.dynamodb_write_units, 1.0);
    }

    #[test]
    fn clones_share_counters_and_reset_clears_them() {
        let meter = RequestMeter::new();
        let clone = meter.clone();
        clone.lock().requests.insert(key(DYNAMODB, "GetItem"), 7);
        clone.lock().dynamodb_read_units = 3.5;
        assert_eq!(meter.snapshot().dynamodb_requests(), 7);
        assert_eq!(meter.snapshot().dynamodb_read_units, 3.5);
        meter.reset();
        assert_eq!(clone.snapshot(), MeterSnapshot::default());
    }
}
