//! The parser: which resources of the template become functions, routes, event sources
//! and queues.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_yaml::Value;

use super::values::{plain, properties, references};
use super::{
    invalid, CorsConfiguration, FunctionResource, HttpRoute, Parser, QueueDefinition,
    RedrivePolicy, Template, TemplateError, WebSocketApi, LAMBDA_FUNCTION, SERVERLESS_FUNCTION,
};

impl<'a> Parser<'a> {
    pub(super) fn new(document: &'a Value) -> Result<Self, TemplateError> {
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

    pub(super) fn template(&self) -> Result<Template, TemplateError> {
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

    pub(super) fn resources_of(&self, types: &[&str]) -> Vec<(&'a str, &'a Value)> {
        self.resources
            .iter()
            .filter_map(|(id, resource)| {
                let id = id.as_str()?;
                let kind = resource.get("Type")?.as_str()?;
                types.contains(&kind).then_some((id, resource))
            })
            .collect()
    }

    pub(super) fn resource_type(&self, id: &str) -> Option<&'a str> {
        self.resources.get(id)?.get("Type")?.as_str()
    }

    pub(super) fn global(&self, section: &str, key: &str) -> Option<&'a Value> {
        self.globals?.get(section)?.get(key)
    }

    pub(super) fn function(
        &self,
        id: &str,
        resource: &Value,
    ) -> Result<FunctionResource, TemplateError> {
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

    pub(super) fn function_event(
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

    pub(super) fn event_source_mapping(
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

    pub(super) fn queue(
        &self,
        id: &str,
        resource: &Value,
    ) -> Result<QueueDefinition, TemplateError> {
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

    pub(super) fn http_cors(&self) -> Result<Option<CorsConfiguration>, TemplateError> {
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

    pub(super) fn websocket_api(&self) -> Result<Option<WebSocketApi>, TemplateError> {
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
    pub(super) fn integration_function(&self, integration: &str) -> Option<String> {
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
    pub(super) fn check_references(&self, template: &Template) -> Result<(), TemplateError> {
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
}
