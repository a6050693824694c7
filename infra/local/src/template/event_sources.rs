//! Event-source mappings: a function's DynamoDB and SQS events, or an
//! `AWS::Lambda::EventSourceMapping`, with Lambda's defaults.

use std::time::Duration;

use serde_yaml::Value;

use super::values::references;
use super::{invalid, Parser, SqsEventSource, StreamEventSource, TemplateError};
use crate::event_filter::FilterCriteria;

impl Parser<'_> {
    pub(super) fn stream_source(
        &self,
        function: &str,
        props: &Value,
    ) -> Result<StreamEventSource, TemplateError> {
        let retries = self.integer(props, "MaximumRetryAttempts")?;
        let record_age = self.integer(props, "MaximumRecordAgeInSeconds")?;
        let on_failure_queue = props
            .get("DestinationConfig")
            .and_then(|d| d.get("OnFailure"))
            .and_then(|o| o.get("Destination"))
            .and_then(|d| references(d).into_iter().next());
        Ok(StreamEventSource {
            function: function.to_owned(),
            starting_position: props
                .get("StartingPosition")
                .and_then(|s| self.scalar(s))
                .unwrap_or_else(|| "LATEST".to_owned()),
            batch_size: self.unsigned(props, "BatchSize")?.unwrap_or(100),
            maximum_batching_window: Duration::from_secs(
                self.unsigned(props, "MaximumBatchingWindowInSeconds")?
                    .unwrap_or(0)
                    .into(),
            ),
            bisect_batch_on_function_error: self.boolean(props, "BisectBatchOnFunctionError"),
            maximum_retry_attempts: match retries {
                None | Some(-1) => None,
                Some(n) => Some(u32::try_from(n).map_err(|_| {
                    invalid(format!(
                        "{function}: MaximumRetryAttempts {n} is out of range"
                    ))
                })?),
            },
            maximum_record_age: match record_age {
                None | Some(-1) => None,
                Some(seconds) => Some(Duration::from_secs(u64::try_from(seconds).map_err(
                    |_| {
                        invalid(format!(
                            "{function}: MaximumRecordAgeInSeconds {seconds} is out of range"
                        ))
                    },
                )?)),
            },
            report_batch_item_failures: reports_item_failures(props),
            on_failure_queue,
            filter: filter_criteria(function, props)?,
        })
    }

    pub(super) fn sqs_source(
        &self,
        function: &str,
        queue: &str,
        props: &Value,
    ) -> Result<SqsEventSource, TemplateError> {
        // Lambda deletes SQS messages no filter matches; the local SQS poller does not
        // emulate that, and silently delivering them would differ from AWS.
        if props.get("FilterCriteria").is_some() {
            return Err(invalid(format!(
                "{function}: FilterCriteria on an SQS mapping is not emulated by ripple-local"
            )));
        }
        Ok(SqsEventSource {
            function: function.to_owned(),
            queue: queue.to_owned(),
            batch_size: self.unsigned(props, "BatchSize")?.unwrap_or(10),
            maximum_batching_window: Duration::from_secs(
                self.unsigned(props, "MaximumBatchingWindowInSeconds")?
                    .unwrap_or(0)
                    .into(),
            ),
            report_batch_item_failures: reports_item_failures(props),
            maximum_concurrency: match props.get("ScalingConfig") {
                Some(scaling) => self.unsigned(scaling, "MaximumConcurrency")?,
                None => None,
            },
        })
    }
}

/// A mapping's `FilterCriteria: {Filters: [{Pattern: '<json>'}, …]}`, parsed and checked
/// as Lambda checks it.
pub(super) fn filter_criteria(
    function: &str,
    props: &Value,
) -> Result<Option<FilterCriteria>, TemplateError> {
    let Some(criteria) = props.get("FilterCriteria") else {
        return Ok(None);
    };
    let filters = criteria
        .get("Filters")
        .and_then(Value::as_sequence)
        .ok_or_else(|| invalid(format!("{function}: FilterCriteria needs a Filters list")))?;
    let patterns = filters
        .iter()
        .map(|filter| {
            filter
                .get("Pattern")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    invalid(format!(
                        "{function}: every FilterCriteria filter needs a Pattern string"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    FilterCriteria::parse(&patterns)
        .map(Some)
        .map_err(|error| invalid(format!("{function}: {error}")))
}

pub(super) fn reports_item_failures(props: &Value) -> bool {
    props
        .get("FunctionResponseTypes")
        .and_then(Value::as_sequence)
        .is_some_and(|types| {
            types
                .iter()
                .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
        })
}
