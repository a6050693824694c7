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

struct Parser<'a> {
    resources: &'a Mapping,
    parameters: Option<&'a Mapping>,
    globals: Option<&'a Mapping>,
}

impl<'a> Parser<'a> {
    fn new(document: &'a Value) -> Result<Self, TemplateError> {
        let resources = document
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| invalid("no Resources section"))?;
        Ok(Self {
            resources,
            parameters: document.get("Parameters").and_then(Value::as_mapping),
            globals: document.get("Globals").and_then(Value::as_mapping),
        })
    }

    fn template(&self) -> Result<Template, TemplateError> {
        let mut template = Template::default();
        for (id, resource) in self.resources_of(&[SERVERLESS_FUNCTION, LAMBDA_FUNCTION]) {
            template
                .functions
                .insert(id.to_owned(), self.function(id, resource)?);
            if let Some(events) = properties(resource)
                .get("Events")
                .and_then(Value::as_mapping)
            {
                for (name, event) in events {
                    let name = name.as_str().unwrap_or_default();
                    self.function_event(&mut template, id, name, event)?;
                }
            }
        }
        for (_, resource) in self.resources_of(&["AWS::Lambda::EventSourceMapping"]) {
            self.event_source_mapping(&mut template, resource)?;
        }
        for (id, resource) in self.resources_of(&["AWS::SQS::Queue"]) {
            template
                .queues
                .insert(id.to_owned(), self.queue(id, resource)?);
        }
        template.http_api.cors = self.http_cors()?;
        template.websocket_api = self.websocket_api()?;
        self.check_references(&template)?;
        Ok(template)
    }

    fn resources_of(&self, types: &[&str]) -> Vec<(&'a str, &'a Value)> {
        self.resources
            .iter()
            .filter_map(|(id, resource)| {
                let id = id.as_str()?;
                let kind = resource.get("Type")?.as_str()?;
                types.contains(&kind).then_some((id, resource))
            })
            .collect()
    }

    fn resource_type(&self, id: &str) -> Option<&'a str> {
        self.resources.get(id)?.get("Type")?.as_str()
    }

    fn global(&self, section: &str, key: &str) -> Option<&'a Value> {
        self.globals?.get(section)?.get(key)
    }

    fn function(&self, id: &str, resource: &Value) -> Result<FunctionResource, TemplateError> {
        let props = properties(resource);
        let binary = resource
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(|b| self.scalar(b));
        let code_uri = props
            .get("CodeUri")
            .or_else(|| self.global("Function", "CodeUri"))
            .and_then(|c| self.scalar(c))
            .and_then(|uri| {
                let last = uri.trim_end_matches('/').rsplit('/').next()?.to_owned();
                (!last.is_empty() && last != ".").then_some(last)
            });
        let handler = binary.or(code_uri).ok_or_else(|| {
            invalid(format!(
                "cannot tell which handler function {id} is: set Metadata.BuildProperties.Binary \
                 or a CodeUri ending in the crate directory"
            ))
        })?;
        let mut environment = BTreeMap::new();
        let mut declared_variables = BTreeSet::new();
        let env_sources = [
            self.global("Function", "Environment"),
            props.get("Environment"),
        ];
        for variables in env_sources
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("Variables").and_then(Value::as_mapping))
        {
            for (name, value) in variables {
                let Some(name) = name.as_str() else { continue };
                declared_variables.insert(name.to_owned());
                if let Some(value) = plain(value) {
                    environment.insert(name.to_owned(), value);
                }
            }
        }
        let timeout = match props.get("Timeout") {
            Some(_) => self.unsigned(props, "Timeout")?,
            None => match self.globals.and_then(|g| g.get("Function")) {
                Some(globals) => self.unsigned(globals, "Timeout")?,
                None => None,
            },
        };
        Ok(FunctionResource {
            logical_id: id.to_owned(),
            handler,
            environment,
            declared_variables,
            timeout: timeout.map(|seconds| Duration::from_secs(seconds.into())),
        })
    }

    fn function_event(
        &self,
        template: &mut Template,
        function: &str,
        name: &str,
        event: &Value,
    ) -> Result<(), TemplateError> {
        let props = properties(event);
        match event.get("Type").and_then(Value::as_str) {
            Some("HttpApi") => {
                let method = props
                    .get("Method")
                    .and_then(|m| self.scalar(m))
                    .map(|m| m.to_ascii_uppercase())
                    .unwrap_or_else(|| "ANY".to_owned());
                let path = props
                    .get("Path")
                    .and_then(|p| self.scalar(p))
                    .unwrap_or_else(|| "$default".to_owned());
                if path != "$default" && !path.starts_with('/') {
                    return Err(invalid(format!(
                        "{function}.Events.{name}: Path `{path}` must start with `/`"
                    )));
                }
                let method = if method == "*" {
                    "ANY".to_owned()
                } else {
                    method
                };
                template.http_api.routes.push(HttpRoute {
                    method,
                    path,
                    function: function.to_owned(),
                });
            }
            Some("DynamoDB") => {
                let source = self.stream_source(function, props)?;
                template.stream_sources.push(source);
            }
            Some("SQS") => {
                let queue = props
                    .get("Queue")
                    .and_then(|q| references(q).into_iter().next())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{function}.Events.{name}: Queue must reference a queue resource"
                        ))
                    })?;
                let source = self.sqs_source(function, &queue, props)?;
                template.sqs_sources.push(source);
            }
            // Other event types (Schedule, Api…) are not emulated.
            _ => {}
        }
        Ok(())
    }

    fn event_source_mapping(
        &self,
        template: &mut Template,
        resource: &Value,
    ) -> Result<(), TemplateError> {
        let props = properties(resource);
        let function = props
            .get("FunctionName")
            .and_then(|f| references(f).into_iter().next())
            .ok_or_else(|| invalid("an EventSourceMapping has no FunctionName reference"))?;
        let source = props
            .get("EventSourceArn")
            .and_then(|s| references(s).into_iter().next())
            .ok_or_else(|| invalid("an EventSourceMapping has no EventSourceArn reference"))?;
        match self.resource_type(&source) {
            Some("AWS::SQS::Queue") => {
                let mapping = self.sqs_source(&function, &source, props)?;
                template.sqs_sources.push(mapping);
            }
            Some("AWS::DynamoDB::Table") => {
                let mapping = self.stream_source(&function, props)?;
                template.stream_sources.push(mapping);
            }
            _ => {}
        }
        Ok(())
    }

    fn stream_source(
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

    fn sqs_source(
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

    fn queue(&self, id: &str, resource: &Value) -> Result<QueueDefinition, TemplateError> {
        let props = properties(resource);
        let name = props
            .get("QueueName")
            .and_then(plain)
            .unwrap_or_else(|| id.to_owned());
        let redrive = match props.get("RedrivePolicy") {
            None => None,
            Some(policy) => {
                let dead_letter_queue = policy
                    .get("deadLetterTargetArn")
                    .and_then(|t| references(t).into_iter().next())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{id}.RedrivePolicy.deadLetterTargetArn must reference a queue"
                        ))
                    })?;
                let max_receive_count = self
                    .unsigned(policy, "maxReceiveCount")?
                    .ok_or_else(|| invalid(format!("{id}.RedrivePolicy needs maxReceiveCount")))?;
                Some(RedrivePolicy {
                    dead_letter_queue,
                    max_receive_count,
                })
            }
        };
        Ok(QueueDefinition {
            logical_id: id.to_owned(),
            name,
            visibility_timeout_seconds: self.unsigned(props, "VisibilityTimeout")?,
            redrive,
        })
    }

    fn http_cors(&self) -> Result<Option<CorsConfiguration>, TemplateError> {
        let configured = self
            .resources_of(&["AWS::Serverless::HttpApi"])
            .into_iter()
            .find_map(|(_, api)| properties(api).get("CorsConfiguration"))
            .or_else(|| self.global("HttpApi", "CorsConfiguration"));
        let Some(cors) = configured else {
            return Ok(None);
        };
        if let Some(enabled) = cors.as_bool() {
            // `CorsConfiguration: true` allows every origin, method and header.
            return Ok(enabled.then(|| CorsConfiguration {
                allow_origins: vec!["*".into()],
                allow_methods: vec!["*".into()],
                allow_headers: vec!["*".into()],
                ..CorsConfiguration::default()
            }));
        }
        let list = |key: &str| cors.get(key).map(|v| self.list(v)).unwrap_or_default();
        let lower = |values: Vec<String>| values.into_iter().map(|v| v.to_ascii_lowercase());
        Ok(Some(CorsConfiguration {
            allow_origins: list("AllowOrigins"),
            allow_methods: list("AllowMethods")
                .into_iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            allow_headers: lower(list("AllowHeaders")).collect(),
            expose_headers: lower(list("ExposeHeaders")).collect(),
            max_age: self.unsigned(cors, "MaxAge")?.map(u64::from),
            allow_credentials: self.boolean(cors, "AllowCredentials"),
        }))
    }

    fn websocket_api(&self) -> Result<Option<WebSocketApi>, TemplateError> {
        let Some((api_id, api)) = self
            .resources_of(&["AWS::ApiGatewayV2::Api"])
            .into_iter()
            .find(|(_, api)| {
                properties(api).get("ProtocolType").and_then(Value::as_str) == Some("WEBSOCKET")
            })
        else {
            return Ok(None);
        };
        let route_selection_expression = properties(api)
            .get("RouteSelectionExpression")
            .and_then(|e| self.scalar(e))
            .unwrap_or_else(|| "$request.body.action".to_owned());
        let belongs_to_api = |resource: &Value| {
            properties(resource)
                .get("ApiId")
                .is_some_and(|a| references(a).iter().any(|r| r == api_id))
        };
        let mut routes = BTreeMap::new();
        for (route_id, route) in self.resources_of(&["AWS::ApiGatewayV2::Route"]) {
            if !belongs_to_api(route) {
                continue;
            }
            let props = properties(route);
            let key = props
                .get("RouteKey")
                .and_then(|k| self.scalar(k))
                .ok_or_else(|| invalid(format!("{route_id} has no RouteKey")))?;
            let function = props
                .get("Target")
                .map(references)
                .unwrap_or_default()
                .into_iter()
                .find_map(|target| self.integration_function(&target))
                .ok_or_else(|| {
                    invalid(format!(
                        "WebSocket route `{key}` ({route_id}): Target must reference an \
                         AWS::ApiGatewayV2::Integration whose IntegrationUri references a function"
                    ))
                })?;
            routes.insert(key, function);
        }
        let stage = self
            .resources_of(&["AWS::ApiGatewayV2::Stage"])
            .into_iter()
            .find(|(_, stage)| belongs_to_api(stage))
            .and_then(|(_, stage)| properties(stage).get("StageName"))
            .and_then(|name| self.scalar(name));
        Ok(Some(WebSocketApi {
            logical_id: api_id.to_owned(),
            route_selection_expression,
            routes,
            stage,
        }))
    }

    /// The function an integration invokes.
    fn integration_function(&self, integration: &str) -> Option<String> {
        if self.resource_type(integration) != Some("AWS::ApiGatewayV2::Integration") {
            return None;
        }
        let uri = properties(self.resources.get(integration)?).get("IntegrationUri")?;
        references(uri).into_iter().find(|id| {
            matches!(
                self.resource_type(id),
                Some(SERVERLESS_FUNCTION) | Some(LAMBDA_FUNCTION)
            )
        })
    }

    /// Every function and queue an event source names must exist in the template.
    fn check_references(&self, template: &Template) -> Result<(), TemplateError> {
        for function in template.invoked_functions() {
            if !template.functions.contains_key(function) {
                return Err(invalid(format!(
                    "a route or event source invokes `{function}`, which is not a function \
                     resource of the template"
                )));
            }
        }
        let queue_refs = template
            .sqs_sources
            .iter()
            .map(|s| &s.queue)
            .chain(
                template
                    .stream_sources
                    .iter()
                    .flat_map(|s| &s.on_failure_queue),
            )
            .chain(
                template
                    .queues
                    .values()
                    .flat_map(|q| q.redrive.as_ref().map(|r| &r.dead_letter_queue)),
            );
        for queue in queue_refs {
            if !template.queues.contains_key(queue) {
                return Err(invalid(format!(
                    "`{queue}` is used as a queue but is not an AWS::SQS::Queue resource"
                )));
            }
        }
        Ok(())
    }

    // ---- values ----

    /// A plain value, or a `!Ref` to a parameter with a `Default`.
    fn scalar(&self, value: &Value) -> Option<String> {
        if let Some(text) = plain(value) {
            return Some(text);
        }
        let name = ref_target(value)?;
        plain(self.parameters?.get(name.as_str())?.get("Default")?)
    }

    /// A list: a sequence of scalars, a comma-separated scalar (`CommaDelimitedList`
    /// parameter defaults) or `!Split [delimiter, value]`.
    fn list(&self, value: &Value) -> Vec<String> {
        if let Value::Sequence(items) = value {
            return items.iter().flat_map(|item| self.list(item)).collect();
        }
        if let Value::Tagged(tagged) = value {
            if tagged.tag == "Split" {
                if let Some([delimiter, source]) = tagged.value.as_sequence().map(Vec::as_slice) {
                    let delimiter = plain(delimiter).unwrap_or_else(|| ",".to_owned());
                    return self
                        .scalar(source)
                        .map(|s| split(&s, &delimiter))
                        .unwrap_or_default();
                }
                return Vec::new();
            }
        }
        self.scalar(value)
            .map(|s| split(&s, ","))
            .unwrap_or_default()
    }

    fn integer(&self, props: &Value, key: &str) -> Result<Option<i64>, TemplateError> {
        let Some(value) = props.get(key) else {
            return Ok(None);
        };
        let text = self
            .scalar(value)
            .ok_or_else(|| invalid(format!("{key} must be a number")))?;
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("{key} must be a number, got `{text}`")))
    }

    fn unsigned(&self, props: &Value, key: &str) -> Result<Option<u32>, TemplateError> {
        self.integer(props, key)?
            .map(|n| {
                u32::try_from(n)
                    .map_err(|_| invalid(format!("{key} must be non-negative, got {n}")))
            })
            .transpose()
    }

    fn boolean(&self, props: &Value, key: &str) -> bool {
        props
            .get(key)
            .and_then(|v| self.scalar(v))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

fn properties(resource: &Value) -> &Value {
    static EMPTY: Value = Value::Null;
    resource.get("Properties").unwrap_or(&EMPTY)
}

/// A mapping's `FilterCriteria: {Filters: [{Pattern: '<json>'}, …]}`, parsed and checked
/// as Lambda checks it.
fn filter_criteria(function: &str, props: &Value) -> Result<Option<FilterCriteria>, TemplateError> {
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

fn reports_item_failures(props: &Value) -> bool {
    props
        .get("FunctionResponseTypes")
        .and_then(Value::as_sequence)
        .is_some_and(|types| {
            types
                .iter()
                .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
        })
}

fn split(text: &str, delimiter: &str) -> Vec<String> {
    text.split(delimiter)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A literal string, number or boolean as text.
fn plain(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The target of `!Ref X` / `{Ref: X}`.
fn ref_target(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().map(str::to_owned),
        Value::Mapping(map) if map.len() == 1 => map.get("Ref")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Logical ids an expression references, in order of appearance (pseudo parameters such as
/// `AWS::Region` excluded): `!Ref X`, `!GetAtt X.Arn`, `${X}` / `${X.Arn}` in `!Sub`, and
/// their long forms, at any depth (`!Join`, `!If`…).
pub fn references(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_references(value, &mut found);
    found
}

fn push_reference(found: &mut Vec<String>, id: &str) {
    if !id.starts_with("AWS::") && !id.is_empty() && !found.iter().any(|f| f == id) {
        found.push(id.to_owned());
    }
}

fn collect_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            match (tag.trim_start_matches('!'), &tagged.value) {
                ("Ref", Value::String(id)) => push_reference(found, id),
                ("GetAtt", Value::String(path)) => {
                    push_reference(found, path.split('.').next().unwrap_or_default())
                }
                ("GetAtt", Value::Sequence(parts)) => {
                    if let Some(id) = parts.first().and_then(Value::as_str) {
                        push_reference(found, id);
                    }
                }
                ("Sub", inner) => sub_references(inner, found),
                (_, inner) => collect_references(inner, found),
            }
        }
        Value::Mapping(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    (Some("Ref"), Value::String(id)) => push_reference(found, id),
                    (Some("Fn::GetAtt"), Value::Sequence(parts)) => {
                        if let Some(id) = parts.first().and_then(Value::as_str) {
                            push_reference(found, id);
                        }
                    }
                    (Some("Fn::GetAtt"), Value::String(path)) => {
                        push_reference(found, path.split('.').next().unwrap_or_default())
                    }
                    (Some("Fn::Sub"), inner) => sub_references(inner, found),
                    _ => collect_references(inner, found),
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                collect_references(item, found);
            }
        }
        _ => {}
    }
}

/// `${X}` / `${X.Attr}` variables of a `!Sub` string (or `[string, {locals}]` form, whose
/// locals are not resource references but whose values may contain some).
fn sub_references(value: &Value, found: &mut Vec<String>) {
    let (text, locals) = match value {
        Value::String(text) => (text.as_str(), None),
        Value::Sequence(parts) => match (parts.first().and_then(Value::as_str), parts.get(1)) {
            (Some(text), locals) => (text, locals.and_then(Value::as_mapping)),
            _ => return,
        },
        _ => return,
    };
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let variable = &after[..end];
        rest = &after[end + 1..];
        // `${!Literal}` is an escaped literal, not a reference.
        if variable.starts_with('!') {
            continue;
        }
        let id = variable.split('.').next().unwrap_or_default();
        if !locals.is_some_and(|l| l.contains_key(id)) {
            push_reference(found, id);
        }
    }
    if let Some(locals) = locals {
        for inner in locals.values() {
            collect_references(inner, found);
        }
    }
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
