//! Reads the routing of the stack from the SAM template — the single source of truth for
//! which function serves which HTTP route, WebSocket route and event source.
//!
//! CloudFormation short-form tags (`!Ref`, `!GetAtt`, `!Sub`, `!Join`…) parse as YAML tagged
//! values; the gateway never evaluates them fully, it only follows the logical ids they
//! reference (a route's target integration, an integration's function, a mapping's queue)
//! and resolves `!Ref` to a template parameter's `Default` where a plain value is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::event_filter::FilterCriteria;

mod event_sources;
mod parser;
mod values;

pub use values::references;

/// A template that cannot drive the gateway.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> TemplateError {
    TemplateError::Invalid(message.into())
}

/// Everything the gateway needs from `template.yaml`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Template {
    /// Functions by logical id.
    pub functions: BTreeMap<String, FunctionResource>,
    pub http_api: HttpApi,
    pub websocket_api: Option<WebSocketApi>,
    pub stream_sources: Vec<StreamEventSource>,
    pub sqs_sources: Vec<SqsEventSource>,
    /// SQS queues by logical id.
    pub queues: BTreeMap<String, QueueDefinition>,
}

/// An `AWS::Serverless::Function` (or `AWS::Lambda::Function`).
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionResource {
    pub logical_id: String,
    /// The handler's name: the cargo binary (`Metadata.BuildProperties.Binary`, else the last
    /// component of `CodeUri`). This is the name the registry and `cargo lambda watch` use.
    pub handler: String,
    /// Environment variables with plain values (Globals merged with the function's own);
    /// values that are intrinsic functions are left to the gateway to fill in locally.
    pub environment: BTreeMap<String, String>,
    /// Every variable the template gives the function (Globals and its own), whatever its
    /// value: the local stack fills some intrinsic-valued ones (the JWT keys) only here.
    pub declared_variables: BTreeSet<String>,
    /// `Timeout` (function, else Globals), if set.
    pub timeout: Option<Duration>,
}

/// The HTTP API: routes and CORS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpApi {
    pub routes: Vec<HttpRoute>,
    pub cors: Option<CorsConfiguration>,
}

/// One HttpApi event: `Method` + `Path` → function.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// Upper-case method, or `ANY`.
    pub method: String,
    /// API Gateway path template (`/posts/{post_id}`, `/files/{proxy+}`), or `$default`.
    pub path: String,
    /// Logical id of the function.
    pub function: String,
}

impl HttpRoute {
    /// The route key API Gateway puts in the event (`GET /posts/{post_id}`, `$default`).
    pub fn route_key(&self) -> String {
        if self.path == "$default" {
            "$default".to_owned()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }
}

/// `CorsConfiguration` of the HTTP API (values lower-cased where API Gateway compares
/// case-insensitively).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorsConfiguration {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
    pub allow_credentials: bool,
}

/// The WebSocket API (`AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketApi {
    pub logical_id: String,
    /// E.g. `$request.body.action`.
    pub route_selection_expression: String,
    /// Route key (`$connect`, `$default`, `subscribe`…) → function logical id.
    pub routes: BTreeMap<String, String>,
    /// Stage name of the API's `AWS::ApiGatewayV2::Stage`, if the template has one.
    pub stage: Option<String>,
}

/// A DynamoDB stream event-source mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEventSource {
    pub function: String,
    pub starting_position: String,
    pub batch_size: u32,
    pub maximum_batching_window: Duration,
    pub bisect_batch_on_function_error: bool,
    /// `None` = retry until the record expires (`-1`, Lambda's default).
    pub maximum_retry_attempts: Option<u32>,
    /// `MaximumRecordAgeInSeconds`; `None` = no limit (`-1`, Lambda's default).
    pub maximum_record_age: Option<Duration>,
    pub report_batch_item_failures: bool,
    /// Logical id of the on-failure destination queue.
    pub on_failure_queue: Option<String>,
    /// `FilterCriteria.Filters[].Pattern`, parsed; `None` delivers every record.
    pub filter: Option<FilterCriteria>,
}

/// An SQS event-source mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsEventSource {
    pub function: String,
    /// Logical id of the queue.
    pub queue: String,
    pub batch_size: u32,
    pub maximum_batching_window: Duration,
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency`, if set.
    pub maximum_concurrency: Option<u32>,
}

/// An `AWS::SQS::Queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDefinition {
    pub logical_id: String,
    /// `QueueName` when it is a plain value, else the logical id.
    pub name: String,
    pub visibility_timeout_seconds: Option<u32>,
    pub redrive: Option<RedrivePolicy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedrivePolicy {
    /// Logical id of the dead-letter queue.
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

const SERVERLESS_FUNCTION: &str = "AWS::Serverless::Function";
const LAMBDA_FUNCTION: &str = "AWS::Lambda::Function";

impl Template {
    pub fn from_file(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let document: Value = serde_yaml::from_str(text)?;
        let parser = Parser::new(&document)?;
        parser.template()
    }

    /// The function serving `logical_id`.
    pub fn function(&self, logical_id: &str) -> Option<&FunctionResource> {
        self.functions.get(logical_id)
    }

    /// Logical ids of every function some route or event source invokes.
    pub fn invoked_functions(&self) -> BTreeSet<&str> {
        let mut ids: BTreeSet<&str> = self
            .http_api
            .routes
            .iter()
            .map(|r| r.function.as_str())
            .collect();
        if let Some(api) = &self.websocket_api {
            ids.extend(api.routes.values().map(String::as_str));
        }
        ids.extend(self.stream_sources.iter().map(|s| s.function.as_str()));
        ids.extend(self.sqs_sources.iter().map(|s| s.function.as_str()));
        ids
    }

    /// Handler names of every invoked function.
    pub fn invoked_handlers(&self) -> BTreeSet<&str> {
        self.invoked_functions()
            .into_iter()
            .filter_map(|id| self.functions.get(id).map(|f| f.handler.as_str()))
            .collect()
    }

    /// Every route or event source whose function has no handler in `available`, as one
    /// start-up error listing, per missing handler, what needs it.
    pub fn check_handlers(&self, available: &BTreeSet<String>) -> Result<(), TemplateError> {
        let mut missing: BTreeMap<&str, (&str, Vec<String>)> = BTreeMap::new();
        let mut check = |what: String, function: &'_ str| {
            let resource = &self.functions[function];
            if !available.contains(&resource.handler) {
                missing
                    .entry(resource.handler.as_str())
                    .or_insert((resource.logical_id.as_str(), Vec::new()))
                    .1
                    .push(what);
            }
        };
        for route in &self.http_api.routes {
            check(format!("HTTP `{}`", route.route_key()), &route.function);
        }
        if let Some(api) = &self.websocket_api {
            for (key, function) in &api.routes {
                check(format!("WebSocket `{key}`"), function);
            }
        }
        for source in &self.stream_sources {
            check("the DynamoDB stream".to_owned(), &source.function);
        }
        for source in &self.sqs_sources {
            check(format!("SQS queue {}", source.queue), &source.function);
        }
        if missing.is_empty() {
            return Ok(());
        }
        let problems = missing
            .iter()
            .map(|(handler, (function, uses))| {
                format!(
                    "  - `{handler}` (function {function}), needed by {}",
                    uses.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let known = available.iter().cloned().collect::<Vec<_>>().join(", ");
        Err(invalid(format!(
            "these handlers are not registered:\n{problems}\nregistered: [{known}]. Add each \
             function to the registry in infra/local/src/functions.rs (one line) or fix the \
             template."
        )))
    }
}

// ---- parsing -----------------------------------------------------------------------------

/// Reads one template document: resources and functions in `parser.rs`, event sources in
/// `event_sources.rs`, values and references in `values.rs`.
struct Parser<'a> {
    resources: &'a Mapping,
    parameters: Option<&'a Mapping>,
    globals: Option<&'a Mapping>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  StageName:
    Type: String
    Default: dev
  CorsOrigins:
    Type: CommaDelimitedList
    Default: "http://localhost:5173, https://app.example"
Globals:
  Function:
    Runtime: provided.al2023
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        MAX_CONNECTIONS_PER_USER: "10"
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  HttpApi:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration:
        AllowOrigins: !Ref CorsOrigins
        AllowMethods: [GET, post]
        AllowHeaders: [Authorization, Content-Type]
        MaxAge: 600
  AuthFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: api-auth
    Properties:
      CodeUri: .
      Environment:
        Variables:
          FANOUT_QUEUE_URL: !Ref FanoutQueue
          FEATURE: on
      Events:
        Health:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Method: get
            Path: /health
  PostsFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/api-posts/
      Events:
        Get:
          Type: HttpApi
          Properties: { Method: GET, Path: "/posts/{post_id}" }
  WsConnectFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/ws-connect
  RouterFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/stream-router
      Events:
        Stream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Table.StreamArn
            StartingPosition: LATEST
            BatchSize: 50
            MaximumBatchingWindowInSeconds: 1
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 3
            FunctionResponseTypes: [ReportBatchItemFailures]
            DestinationConfig:
              OnFailure:
                Destination: !GetAtt StreamDlq.Arn
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/push-worker
      Events:
        Fanout:
          Type: SQS
          Properties:
            Queue: !GetAtt FanoutQueue.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
  FanoutQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-fanout"
      VisibilityTimeout: 180
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt FanoutDlq.Arn
        maxReceiveCount: 4
  FanoutDlq:
    Type: AWS::SQS::Queue
  StreamDlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: ripple-stream-dlq
  WsApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: "$request.body.action"
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref WsApi
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${WsConnectFunction.Arn}/invocations"
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref WsApi
      RouteKey: $connect
      Target: !Join ["/", ["integrations", !Ref ConnectIntegration]]
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref WsApi
      StageName: !Ref StageName
"#;

    #[test]
    fn parses_routes_mappings_queues_and_cors_through_short_form_tags() {
        let template = Template::parse(TEMPLATE).unwrap();
        assert_eq!(template.functions["AuthFunction"].handler, "api-auth");
        assert_eq!(template.functions["PostsFunction"].handler, "api-posts");
        assert_eq!(template.functions["PostsFunction"].timeout, None);
        let env = &template.functions["AuthFunction"].environment;
        assert_eq!(
            env.get("MAX_CONNECTIONS_PER_USER").map(String::as_str),
            Some("10")
        );
        assert_eq!(env.get("FEATURE").map(String::as_str), Some("on"));
        assert!(
            !env.contains_key("TABLE_NAME"),
            "intrinsics are filled in locally"
        );

        let keys: Vec<_> = template
            .http_api
            .routes
            .iter()
            .map(HttpRoute::route_key)
            .collect();
        assert_eq!(keys, ["GET /health", "GET /posts/{post_id}"]);

        let cors = template.http_api.cors.as_ref().unwrap();
        assert_eq!(
            cors.allow_origins,
            ["http://localhost:5173", "https://app.example"]
        );
        assert_eq!(cors.allow_methods, ["GET", "POST"]);
        assert_eq!(cors.allow_headers, ["authorization", "content-type"]);
        assert_eq!(cors.max_age, Some(600));

        let ws = template.websocket_api.as_ref().unwrap();
        assert_eq!(ws.route_selection_expression, "$request.body.action");
        assert_eq!(ws.routes["$connect"], "WsConnectFunction");
        assert_eq!(ws.stage.as_deref(), Some("dev"));

        let stream = &template.stream_sources[0];
        assert_eq!(stream.function, "RouterFunction");
        assert_eq!(stream.batch_size, 50);
        assert_eq!(stream.maximum_batching_window, Duration::from_secs(1));
        assert!(stream.bisect_batch_on_function_error);
        assert_eq!(stream.maximum_retry_attempts, Some(3));
        assert!(stream.report_batch_item_failures);
        assert_eq!(stream.maximum_record_age, None);
        assert_eq!(stream.on_failure_queue.as_deref(), Some("StreamDlq"));

        let sqs = &template.sqs_sources[0];
        assert_eq!((sqs.queue.as_str(), sqs.batch_size), ("FanoutQueue", 5));
        assert!(sqs.report_batch_item_failures);

        let fanout = &template.queues["FanoutQueue"];
        assert_eq!(
            fanout.name, "FanoutQueue",
            "a computed QueueName falls back to the id"
        );
        assert_eq!(fanout.visibility_timeout_seconds, Some(180));
        assert_eq!(
            fanout.redrive,
            Some(RedrivePolicy {
                dead_letter_queue: "FanoutDlq".into(),
                max_receive_count: 4
            })
        );
        assert_eq!(template.queues["StreamDlq"].name, "ripple-stream-dlq");
    }

    #[test]
    fn a_route_without_a_registered_handler_is_a_clear_start_up_error() {
        let template = Template::parse(TEMPLATE).unwrap();
        let available: BTreeSet<String> = ["api-auth", "api-posts", "ws-connect", "stream-router"]
            .map(String::from)
            .into();
        let error = template.check_handlers(&available).unwrap_err().to_string();
        assert!(
            error.contains(
                "`push-worker` (function WorkerFunction), needed by SQS queue FanoutQueue"
            ),
            "{error}"
        );
        assert!(!error.contains("GET /health"), "{error}");
    }

    #[test]
    fn references_follow_every_intrinsic_form() {
        let value: Value = serde_yaml::from_str(
            r#"[!Ref A, !GetAtt B.Arn, !Sub "x-${C.Arn}-${AWS::Region}-${!Lit}", {"Fn::GetAtt": [D, Arn]}, {Ref: E}, !Sub ["${F}-${local}", {local: !Ref G}]]"#,
        )
        .unwrap();
        assert_eq!(references(&value), ["A", "B", "C", "D", "E", "F", "G"]);
    }

    #[test]
    fn the_repository_template_drives_the_gateway() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::from_file(&path).unwrap();
        let health = template
            .http_api
            .routes
            .iter()
            .find(|r| r.route_key() == "GET /health")
            .expect("GET /health is routed");
        assert_eq!(template.functions[&health.function].handler, "api-auth");
        assert!(template.http_api.cors.is_some());
        let websocket = template.websocket_api.as_ref().expect("a WebSocket API");
        for key in ["$connect", "$disconnect", "$default"] {
            assert!(websocket.routes.contains_key(key), "{key}");
        }
        assert!(websocket.stage.is_some());
        let [stream] = template.stream_sources.as_slice() else {
            panic!("exactly one stream mapping: {:?}", template.stream_sources);
        };
        assert!(stream.report_batch_item_failures && stream.bisect_batch_on_function_error);
        assert!(stream.maximum_retry_attempts.is_some() && stream.on_failure_queue.is_some());
        assert!(
            stream.filter.is_some(),
            "the stream mapping filters out records that never produce an event"
        );
        let [sqs] = template.sqs_sources.as_slice() else {
            panic!("exactly one SQS mapping: {:?}", template.sqs_sources);
        };
        assert!(sqs.report_batch_item_failures);
        assert!(template.queues[&sqs.queue].redrive.is_some());
    }

    #[test]
    fn filter_criteria_are_parsed_and_checked_as_lambda_does() {
        let with_filter = |filters: &str| {
            TEMPLATE.replace(
                "            FunctionResponseTypes: [ReportBatchItemFailures]\n            DestinationConfig:",
                &format!(
                    "            FunctionResponseTypes: [ReportBatchItemFailures]\n            FilterCriteria:\n              Filters:\n{filters}\n            DestinationConfig:"
                ),
            )
        };
        let good = with_filter(
            r#"                - Pattern: '{"dynamodb": {"NewImage": {"entity": {"S": ["post"]}}}}'"#,
        );
        assert_ne!(good, TEMPLATE, "the fixture has the anchor");
        let template = Template::parse(&good).unwrap();
        let filter = template.stream_sources[0].filter.as_ref().expect("parsed");
        let post = serde_json::json!({"dynamodb": {"NewImage": {"entity": {"S": "post"}}}});
        let like = serde_json::json!({"dynamodb": {"NewImage": {"entity": {"S": "like"}}}});
        assert!(filter.matches(&post) && !filter.matches(&like));
        assert!(Template::parse(TEMPLATE).unwrap().stream_sources[0]
            .filter
            .is_none());

        let sqs_filter = TEMPLATE.replace(
            "            BatchSize: 5\n",
            "            BatchSize: 5\n            FilterCriteria: { Filters: [{ Pattern: '{\"body\": [\"x\"]}' }] }\n",
        );
        assert_ne!(sqs_filter, TEMPLATE, "the fixture has the SQS anchor");
        let error = Template::parse(&sqs_filter).unwrap_err().to_string();
        assert!(error.contains("not emulated"), "{error}");

        for broken in [
            r#"                - Pattern: '{"dynamodb": {"NewImage": {"entity": {"S": "post"}}}}'"#,
            r#"                - Pattern: 'not json'"#,
            r#"                - Other: x"#,
            &r#"                - Pattern: '{"a": ["b"]}'"#
                .repeat(6)
                .replace("'                ", "'\n                "),
        ] {
            let error = Template::parse(&with_filter(broken))
                .unwrap_err()
                .to_string();
            assert!(error.contains("RouterFunction"), "{error}");
        }
    }

    #[test]
    fn event_sources_pointing_at_missing_resources_are_rejected() {
        let broken = TEMPLATE.replace("!GetAtt FanoutQueue.Arn", "!GetAtt NoSuchQueue.Arn");
        let error = Template::parse(&broken).unwrap_err().to_string();
        assert!(error.contains("NoSuchQueue"), "{error}");
    }
}
