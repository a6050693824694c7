#!/usr/bin/env python3
"""Ripple's own invariants on the SAM template (run by `make check-template`).

cfn-lint and `sam validate --lint` check that template.yaml is valid CloudFormation. This script
checks what they cannot know: that the template deploys Ripple *correctly*.

    check_template.py TEMPLATE TABLE_JSON [--root DIR]

Rules (each failure prints `<rule>: <what is wrong>`; exit status 1 if any failed):
  table        the DynamoDB table equals TABLE_JSON (attributes, key schema, GSIs + projections,
               billing mode, stream view type, TTL attribute) and has PITR and SSE on.
  functions    every function is one of Ripple's ten, with `BuildMethod: rust-cargolambda` and a
               CodeUri (and BuildProperties.Binary, if given) naming its crate.
  stream       exactly one event-source mapping reads the table's stream; it reports batch item
               failures, bisects failing batches, has finite MaximumRetryAttempts and
               MaximumRecordAgeInSeconds (never -1) and an OnFailure destination; its FilterCriteria
               holds 1..5 patterns (Lambda's quota), each a JSON object of at most 4096 characters
               on the `dynamodb` key only (all a DynamoDB mapping may filter on) that allow-lists
               `entity` values, and together they keep every entity in ROUTED_ENTITIES.
  queue        every SQS mapping reports batch item failures and caps its concurrency; its queue
               has a RedrivePolicy to a DLQ and VisibilityTimeout >= 6 x the consumer's Timeout.
  iam          no statement grants a wildcard action (`*`, `dynamodb:*`, `dynamodb:Get*`),
               `Resource: "*"` or NotAction/NotResource unless the line just before it is a
               `# justification: ...` comment; execute-api:ManageConnections only for the functions
               that push, sqs:SendMessage only for the stream router, queue
               consumption only for the push worker.
  websocket    every WebSocket route targets an AWS_PROXY integration of a function that has an
               AWS::Lambda::Permission for API Gateway; the deployment waits for every route.
  grants       each function's identity policy grants exactly EXPECTED_GRANTS (the IAM audit of
               what its code calls): no action more, none missing, each on exactly the listed
               resource kinds (table, its indexes, its stream, a queue, the stage's @connections);
               ManageConnections only as POST on `${WebSocketApi}/${WebSocketStageName}/POST/@connections/*`.
  keys         no signing material outside api-auth: neither Globals nor any other function has
               JWT_SECRET (retired), JWT_SIGNING_KEY_SECRET, a private key (PEM or a JWK with
               "d") or a {{resolve:secretsmanager}} value in its environment, nor any
               secretsmanager: action; api-auth names its secret and never has the key resolved
               into its environment; the functions that verify nothing get no JWT_* key variable.
  environment  every function has the variables its Config/State require, or (the writer push)
               needs to meet the latency target (REQUIRED_ENV); the
               management endpoint names this WebSocket API and stage, FANOUT_QUEUE_URL names a
               queue the function may send to.
  http         every HttpApi event uses this template's HttpApi, payload format 2.0, and no
               method + path is served twice.

Only PyYAML is needed. CloudFormation short tags (!Ref, !GetAtt, !Sub, !If, ...) are read as
their long forms ({"Ref": ...}, {"Fn::GetAtt": [...]}, ...).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml

# Logical id -> crate (directory under functions/ and binary name). The single list of Ripple's
# functions; adding a function to the template means adding it here.
EXPECTED_FUNCTIONS = {
    "ApiAuthFunction": "api-auth",
    "ApiUsersFunction": "api-users",
    "ApiPostsFunction": "api-posts",
    "ApiMessagesFunction": "api-messages",
    "ApiNotificationsFunction": "api-notifications",
    "WsConnectFunction": "ws-connect",
    "WsDisconnectFunction": "ws-disconnect",
    "WsMessageFunction": "ws-message",
    "StreamRouterFunction": "stream-router",
    "PushWorkerFunction": "push-worker",
}
BUILD_METHOD = "rust-cargolambda"
# Functions that post to WebSocket connections (execute-api:ManageConnections). The three REST
# functions whose writes cause realtime events push them to small audiences themselves right
# after the commit (the writer push, docs/realtime.md): the stream alone is p50 213 ms on AWS.
# api-auth and api-notifications cause no pushed event (a notification read is the stream's).
WRITER_PUSH_FUNCTIONS = {"ApiUsersFunction", "ApiPostsFunction", "ApiMessagesFunction"}
PUSHING_FUNCTIONS = {"WsMessageFunction", "StreamRouterFunction", "PushWorkerFunction"} | WRITER_PUSH_FUNCTIONS
# Which functions may perform which (lower-cased) SQS actions: the router sends work items,
# chunks and presence checks; the worker sends chunks of the audiences it resolves and
# re-enqueues the connections that still failed (only those, with a short delay).
SQS_ACTION_OWNERS = {
    "sqs:sendmessage": {"StreamRouterFunction", "PushWorkerFunction"},
    "sqs:receivemessage": {"PushWorkerFunction"},
    "sqs:deletemessage": {"PushWorkerFunction"},
}

# ---- the IAM audit: what each function's code really calls ----------------------------------
# Resource kinds a grant is classified into (see `resource_kind`).
TABLE, INDEX, STREAM, CONNECTIONS = "table", "index/*", "stream", "@connections"
FANOUT_QUEUE, STREAM_DLQ = "queue:FanoutQueue", "queue:StreamDeadLetterQueue"
SIGNING_KEY_SECRET = "secret:JwtSigningKeySecretName"


def _dynamodb(items: list[str], query: set[str] | None = None) -> dict[str, set[str]]:
    grants = {f"dynamodb:{action}": {TABLE} for action in items}
    if query:
        grants["dynamodb:Query"] = set(query)
    return grants


# Function -> (action -> resource kinds): EXACTLY what its code and the shared modules it calls
# perform (docs/deploy.md, "IAM"). A grant not listed is over-privilege; a listed one missing is
# an AccessDenied in production. Update both together when code starts using a new operation.
EXPECTED_GRANTS: dict[str, dict[str, set[str]]] = {
    "ApiAuthFunction": {
        **_dynamodb(
            ["GetItem", "BatchGetItem", "PutItem", "UpdateItem", "TransactWriteItems"], {TABLE}
        ),
        # Its access-token signing key, once per cold start.
        "secretsmanager:GetSecretValue": {SIGNING_KEY_SECRET},
    },
    # The writer push (all three) reads connections (BatchGetItem), a post's followers and block
    # set (Query, GSI 1), writes delivery markers (PutItem), posts to @connections and removes a
    # gone connection (GetItem + TransactWriteItems) — all within the grants below.
    "ApiUsersFunction": {
        **_dynamodb(
            ["GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "TransactWriteItems"],
            {TABLE, INDEX},
        ),
        "execute-api:ManageConnections": {CONNECTIONS},
    },
    "ApiPostsFunction": {
        **_dynamodb(
            ["GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "BatchWriteItem", "TransactWriteItems"],
            {TABLE, INDEX},
        ),
        "execute-api:ManageConnections": {CONNECTIONS},
    },
    "ApiMessagesFunction": {
        **_dynamodb(
            ["GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "BatchWriteItem", "TransactWriteItems"],
            {TABLE, INDEX},
        ),
        "execute-api:ManageConnections": {CONNECTIONS},
    },
    "ApiNotificationsFunction": _dynamodb(["GetItem", "BatchGetItem", "UpdateItem", "TransactWriteItems"], {TABLE, INDEX}),
    "WsConnectFunction": _dynamodb(["GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"]),
    "WsDisconnectFunction": _dynamodb(["GetItem", "UpdateItem", "DeleteItem", "TransactWriteItems"]),
    "WsMessageFunction": {
        **_dynamodb(["GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"], {TABLE, INDEX}),
        "execute-api:ManageConnections": {CONNECTIONS},
    },
    "StreamRouterFunction": {
        **_dynamodb(["GetItem", "BatchGetItem", "UpdateItem", "DeleteItem", "TransactWriteItems"], {TABLE, INDEX}),
        "dynamodb:DescribeStream": {STREAM},
        "dynamodb:GetRecords": {STREAM},
        "dynamodb:GetShardIterator": {STREAM},
        "dynamodb:ListStreams": {STREAM},
        # The fan-out queue (code) and the stream mapping's on-failure destination (Lambda).
        "sqs:SendMessage": {FANOUT_QUEUE, STREAM_DLQ},
        "execute-api:ManageConnections": {CONNECTIONS},
    },
    "PushWorkerFunction": {
        **_dynamodb(
            ["GetItem", "BatchGetItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "TransactWriteItems"],
            {TABLE, INDEX},
        ),
        # Chunks of a resolved audience and re-enqueued failed connections.
        "sqs:SendMessage": {FANOUT_QUEUE},
        "sqs:ReceiveMessage": {FANOUT_QUEUE},
        "sqs:DeleteMessage": {FANOUT_QUEUE},
        "sqs:GetQueueAttributes": {FANOUT_QUEUE},
        "execute-api:ManageConnections": {CONNECTIONS},
    },
}

# Environment each function's `State::new` / `Config::from_vars` refuses to start without
# (shared/src/config.rs; TABLE_NAME for everyone, from Globals; the JWKS for every function
# that verifies access tokens, the signing key's secret name for api-auth).
REQUIRED_ENV_ALL = {"TABLE_NAME"}
# The one function that signs access tokens, and the ones that verify them.
SIGNING_FUNCTION = "ApiAuthFunction"
VERIFYING_FUNCTIONS = {
    "ApiAuthFunction",
    "ApiUsersFunction",
    "ApiPostsFunction",
    "ApiMessagesFunction",
    "ApiNotificationsFunction",
    "WsConnectFunction",
}
# Variables that carry or point at signing material: only the signing function may have them
# (JWT_SECRET and JWT_PUBLIC_KEY_PEM are retired: Config refuses them everywhere).
SIGNING_VARIABLES = {"JWT_SIGNING_KEY_SECRET"}
RETIRED_VARIABLES = {"JWT_SECRET", "JWT_PUBLIC_KEY_PEM"}
# The writer-push functions start without WS_MANAGEMENT_ENDPOINT (the writer push is then off
# and every event waits for the stream), but a deployment without it misses the latency target,
# so the template must give it to them.
REQUIRED_ENV = {
    **{function: {"JWT_PUBLIC_KEYS"} for function in VERIFYING_FUNCTIONS - WRITER_PUSH_FUNCTIONS - {SIGNING_FUNCTION}},
    **{function: {"WS_MANAGEMENT_ENDPOINT", "JWT_PUBLIC_KEYS"} for function in WRITER_PUSH_FUNCTIONS},
    SIGNING_FUNCTION: {"JWT_PUBLIC_KEYS", "JWT_SIGNING_KEY_SECRET"},
    "WsMessageFunction": {"WS_MANAGEMENT_ENDPOINT"},
    "StreamRouterFunction": {"WS_MANAGEMENT_ENDPOINT", "FANOUT_QUEUE_URL"},
    "PushWorkerFunction": {"WS_MANAGEMENT_ENDPOINT", "FANOUT_QUEUE_URL"},
}
JUSTIFICATION = "# justification:"
VISIBILITY_TIMEOUT_FACTOR = 6
LAMBDA_DEFAULT_TIMEOUT = 3
SQS_DEFAULT_VISIBILITY_TIMEOUT = 30
MAX_RECORD_AGE_RANGE = (60, 604800)
MAX_RETRY_ATTEMPTS_RANGE = (0, 10000)
# FilterCriteria of the stream mapping: Lambda's default quota of filters per mapping and its
# longest pattern. The entities the router has always acted on must stay allow-listed (a floor:
# new kinds are added in template.yaml; the exact contract with the router's decide table is
# tested in Rust, infra/local/tests/stream_filter.rs).
MAX_FILTERS = 5
MAX_PATTERN_CHARS = 4096
ROUTED_ENTITIES = {"post", "comment", "notification", "message", "connection", "presence"}


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class LineStr(str):
    """A YAML string that remembers its 1-based line, for the justification-comment rule."""

    line: int = 0


class TemplateLoader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation short tags and records string lines."""


def _construct_str(loader: TemplateLoader, node: yaml.ScalarNode) -> LineStr:
    value = LineStr(loader.construct_scalar(node))
    value.line = node.start_mark.line + 1
    return value


def _construct_cfn_tag(loader: TemplateLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = _construct_str(loader, node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


TemplateLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)
TemplateLoader.add_multi_constructor("!", _construct_cfn_tag)


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=TemplateLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise SystemExit(f"{path}: not a CloudFormation template (no Resources mapping)")
    return document


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.notes: list[str] = []

    def error(self, rule: str, message: str) -> None:
        self.errors.append(f"{rule}: {message}")

    def note(self, rule: str, message: str) -> None:
        self.notes.append(f"{rule}: {message}")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource.get("Type") == resource_type
    }


def properties(resource: dict[str, Any]) -> dict[str, Any]:
    value = resource.get("Properties")
    return value if isinstance(value, dict) else {}


def referenced_id(value: Any) -> str | None:
    """Logical id named by `!Ref X`, `!GetAtt X.Attr` or `!Sub "${X}"` / `!Sub "${X.Arn}"`."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return str(target[0]) if isinstance(target, list) and target else None
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            text = text[0] if isinstance(text, list) and text else text
            found = re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", str(text))
            return found[0] if len(found) == 1 else None
    return None


def getatt_attribute(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("Fn::GetAtt"), list):
        target = value["Fn::GetAtt"]
        return str(target[1]) if len(target) > 1 else None
    return None


def resolve_number(template: dict[str, Any], value: Any) -> float | None:
    """A literal number, a numeric string, or `!Ref Parameter` with a numeric Default."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, dict) and "Ref" in value:
        parameter = template.get("Parameters", {}).get(value["Ref"])
        if isinstance(parameter, dict) and "Default" in parameter:
            return resolve_number(template, parameter["Default"])
    return None


def function_setting(template: dict[str, Any], function: dict[str, Any], key: str) -> Any:
    """A function property, falling back to Globals.Function like SAM does."""
    local = properties(function).get(key)
    if local is not None:
        return local
    return template.get("Globals", {}).get("Function", {}).get(key)


def plain(value: Any) -> Any:
    """Drop LineStr so values compare and print like JSON."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------
# Rule: table
# ---------------------------------------------------------------------------------------------


def _by_name(items: Any, name_key: str) -> dict[str, Any]:
    return {str(item.get(name_key)): plain(item) for item in as_list(items) if isinstance(item, dict)}


def check_table(template: dict[str, Any], table_definition: dict[str, Any], report: Report) -> None:
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    if len(tables) != 1:
        report.error("table", f"expected exactly one AWS::DynamoDB::Table, found {sorted(tables) or 'none'}")
        return
    (table_id, table), = tables.items()
    actual = properties(table)
    expected = table_definition["table"]

    for key, want in expected.items():
        have = actual.get(key)
        if key == "TableName":
            # CloudFormation generates a per-stack name (functions receive it in TABLE_NAME), so
            # several stacks fit in one account; the name is the only field allowed to differ.
            continue
        if key == "AttributeDefinitions":
            same = _by_name(have, "AttributeName") == _by_name(want, "AttributeName")
        elif key == "GlobalSecondaryIndexes" or key == "LocalSecondaryIndexes":
            same = _by_name(have, "IndexName") == _by_name(want, "IndexName")
        elif key == "StreamSpecification":
            # CloudFormation has no StreamEnabled: a StreamSpecification enables the stream.
            wanted_view = want.get("StreamViewType") if want.get("StreamEnabled", True) else None
            have_view = have.get("StreamViewType") if isinstance(have, dict) else None
            same = have_view == wanted_view
            have, want = have_view, wanted_view
        else:
            same = plain(have) == want
        if not same:
            report.error(
                "table",
                f"{table_id}.{key} differs from infra/table.json:\n"
                f"    template:   {json.dumps(plain(have), sort_keys=True)}\n"
                f"    table.json: {json.dumps(want, sort_keys=True)}",
            )
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
        if key in actual and key not in expected:
            report.error("table", f"{table_id}.{key} is in the template but not in infra/table.json")

    ttl = actual.get("TimeToLiveSpecification") or {}
    want_ttl = table_definition.get("time_to_live_attribute")
    if want_ttl and (ttl.get("AttributeName") != want_ttl or ttl.get("Enabled") is not True):
        report.error(
            "table",
            f"{table_id}.TimeToLiveSpecification must enable TTL on '{want_ttl}' "
            f"(found {json.dumps(plain(ttl))})",
        )
    if not (actual.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled") is True:
        report.error("table", f"{table_id} must enable point-in-time recovery")
    if not (actual.get("SSESpecification") or {}).get("SSEEnabled") is True:
        report.error("table", f"{table_id} must enable server-side encryption (SSESpecification.SSEEnabled)")


# ---------------------------------------------------------------------------------------------
# Rule: functions
# ---------------------------------------------------------------------------------------------


def _cargo_package_name(cargo_toml: Path) -> str | None:
    in_package = False
    for line in cargo_toml.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_package = stripped == "[package]"
        elif in_package:
            match = re.match(r'name\s*=\s*"([^"]+)"', stripped)
            if match:
                return match.group(1)
    return None


def check_functions(template: dict[str, Any], root: Path, report: Report) -> None:
    functions = resources_of_type(template, "AWS::Serverless::Function")
    for raw_id in resources_of_type(template, "AWS::Lambda::Function"):
        report.error("functions", f"{raw_id} is a raw AWS::Lambda::Function; use AWS::Serverless::Function + cargo-lambda")
    for missing in sorted(set(EXPECTED_FUNCTIONS) - set(functions)):
        report.error("functions", f"{missing} (crate {EXPECTED_FUNCTIONS[missing]}) is missing from the template")
    for logical_id, function in sorted(functions.items()):
        crate = EXPECTED_FUNCTIONS.get(logical_id)
        if crate is None:
            report.error(
                "functions",
                f"{logical_id} is not one of Ripple's functions; add it to EXPECTED_FUNCTIONS in {Path(__file__).name}",
            )
            continue
        metadata = function.get("Metadata") or {}
        if metadata.get("BuildMethod") != BUILD_METHOD:
            report.error(
                "functions",
                f"{logical_id} needs Metadata.BuildMethod: {BUILD_METHOD} (found {plain(metadata.get('BuildMethod'))!r})",
            )
        binary = (metadata.get("BuildProperties") or {}).get("Binary")
        if binary is not None and binary != crate:
            report.error("functions", f"{logical_id} BuildProperties.Binary is {binary!r}, expected {crate!r}")
        code_uri = properties(function).get("CodeUri")
        if not isinstance(code_uri, str):
            report.error("functions", f"{logical_id} needs CodeUri: functions/{crate}")
            continue
        code_dir = Path(code_uri.rstrip("/"))
        if code_dir.name != crate:
            report.error("functions", f"{logical_id} CodeUri is {code_uri!r}; its directory must be the crate {crate!r}")
            continue
        cargo_toml = root / code_dir / "Cargo.toml"
        if not cargo_toml.is_file():
            report.note("functions", f"{logical_id}: {code_dir}/Cargo.toml does not exist yet")
        elif _cargo_package_name(cargo_toml) != crate:
            report.error("functions", f"{logical_id}: {cargo_toml} does not declare package {crate!r}")


# ---------------------------------------------------------------------------------------------
# Rules: stream and queue event-source mappings
# ---------------------------------------------------------------------------------------------


def event_source_mappings(template: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(label, function logical id, ESM-shaped properties) for raw mappings and SAM pull events."""
    mappings = []
    for logical_id, resource in resources_of_type(template, "AWS::Lambda::EventSourceMapping").items():
        props = properties(resource)
        mappings.append((logical_id, referenced_id(props.get("FunctionName")), props))
    for function_id, function in resources_of_type(template, "AWS::Serverless::Function").items():
        for event_id, event in (properties(function).get("Events") or {}).items():
            if not isinstance(event, dict) or event.get("Type") not in ("DynamoDB", "Kinesis", "SQS"):
                continue
            props = dict(event.get("Properties") or {})
            props["EventSourceArn"] = props.get("Stream", props.get("Queue"))
            mappings.append((f"{function_id}.Events.{event_id}", function_id, props))
    return mappings


def _reads_table_stream(template: dict[str, Any], source: Any) -> bool:
    target = referenced_id(source)
    if target in resources_of_type(template, "AWS::DynamoDB::Table"):
        return getatt_attribute(source) in ("StreamArn", "LatestStreamArn")
    return isinstance(source, str) and ":dynamodb:" in source and "/stream/" in source


def _queue_id(template: dict[str, Any], source: Any) -> str | None:
    target = referenced_id(source)
    return target if target in resources_of_type(template, "AWS::SQS::Queue") else None


def _reports_item_failures(props: dict[str, Any]) -> bool:
    return "ReportBatchItemFailures" in as_list(props.get("FunctionResponseTypes"))


def check_stream_mapping(template: dict[str, Any], report: Report) -> None:
    readers = [m for m in event_source_mappings(template) if _reads_table_stream(template, m[2].get("EventSourceArn"))]
    if len(readers) != 1:
        report.error(
            "stream",
            f"exactly one event-source mapping may read the table's stream (DynamoDB Streams throttles "
            f"beyond ~2 readers per shard); found {len(readers)}: {[label for label, _, _ in readers]}",
        )
    for label, _function_id, props in readers:
        if not _reports_item_failures(props):
            report.error("stream", f"{label} must set FunctionResponseTypes: [ReportBatchItemFailures]")
        if props.get("BisectBatchOnFunctionError") is not True:
            report.error("stream", f"{label} must set BisectBatchOnFunctionError: true")
        if props.get("StartingPosition") != "LATEST":
            report.error("stream", f"{label} must start at LATEST (found {plain(props.get('StartingPosition'))!r})")
        for key, (low, high) in (
            ("MaximumRetryAttempts", MAX_RETRY_ATTEMPTS_RANGE),
            ("MaximumRecordAgeInSeconds", MAX_RECORD_AGE_RANGE),
        ):
            value = resolve_number(template, props.get(key))
            if key not in props:
                report.error("stream", f"{label} must set {key} (the default -1 retries a poison record until it expires)")
            elif value is None or not low <= value <= high:
                report.error("stream", f"{label}.{key} must be finite, {low}..{high} (found {plain(props.get(key))!r}; -1 means infinite)")
        on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        destination = referenced_id(on_failure)
        if destination is None:
            report.error("stream", f"{label} needs DestinationConfig.OnFailure.Destination (the stream DLQ)")
        elif template["Resources"].get(destination, {}).get("Type") not in ("AWS::SQS::Queue", "AWS::SNS::Topic"):
            report.error("stream", f"{label} OnFailure destination {destination} is not an SQS queue or SNS topic of this template")
        check_stream_filter(label, props, report)


def _allowed_entities(pattern: dict[str, Any]) -> set[str]:
    """The plain `entity` strings a pattern allow-lists in NewImage / OldImage."""
    found: set[str] = set()
    for image in ("NewImage", "OldImage"):
        rules = (((pattern.get("dynamodb") or {}).get(image) or {}).get("entity") or {}).get("S")
        if isinstance(rules, list):
            found.update(rule for rule in rules if isinstance(rule, str))
    return found


def check_stream_filter(label: str, props: dict[str, Any], report: Report) -> None:
    filters = (props.get("FilterCriteria") or {}).get("Filters")
    if not isinstance(filters, list) or not filters:
        report.error(
            "stream",
            f"{label} must set FilterCriteria.Filters (an allow-list of the `entity` values the router "
            f"acts on) so that records which never produce an event do not invoke it",
        )
        return
    if len(filters) > MAX_FILTERS:
        report.error("stream", f"{label}.FilterCriteria has {len(filters)} filters; Lambda allows at most {MAX_FILTERS}")
    allowed: set[str] = set()
    for index, entry in enumerate(filters):
        text = plain((entry or {}).get("Pattern")) if isinstance(entry, dict) else None
        where = f"{label}.FilterCriteria.Filters[{index}].Pattern"
        if not isinstance(text, str):
            report.error("stream", f"{where} must be a string")
            continue
        if len(text) > MAX_PATTERN_CHARS:
            report.error("stream", f"{where} is longer than {MAX_PATTERN_CHARS} characters")
        try:
            pattern = json.loads(text)
        except json.JSONDecodeError as error:
            report.error("stream", f"{where} is not a JSON object: {error}")
            continue
        if not isinstance(pattern, dict) or not pattern:
            report.error("stream", f"{where} is not a JSON object")
            continue
        if set(pattern) != {"dynamodb"}:
            report.error("stream", f"{where}: a DynamoDB mapping may only filter on the `dynamodb` key (found {sorted(pattern)})")
        entities = _allowed_entities(pattern)
        if not entities:
            report.error("stream", f"{where} must allow-list `entity` values (dynamodb.NewImage/OldImage.entity.S: [...])")
        allowed |= entities
    missing = ROUTED_ENTITIES - allowed
    if missing:
        report.error("stream", f"{label}.FilterCriteria drops every record of {sorted(missing)}, which the router turns into events")


def check_queue_mappings(template: dict[str, Any], report: Report) -> None:
    queue_readers = [
        (label, function_id, props, _queue_id(template, props.get("EventSourceArn")))
        for label, function_id, props in event_source_mappings(template)
        if _queue_id(template, props.get("EventSourceArn"))
    ]
    if not queue_readers:
        report.error("queue", "no event-source mapping reads an SQS queue of this template (push worker missing?)")
    queues = resources_of_type(template, "AWS::SQS::Queue")
    functions = resources_of_type(template, "AWS::Serverless::Function")
    for label, function_id, props, queue_id in queue_readers:
        if not _reports_item_failures(props):
            report.error("queue", f"{label} must set FunctionResponseTypes: [ReportBatchItemFailures]")
        concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
        if concurrency is None:
            report.error("queue", f"{label} must set ScalingConfig.MaximumConcurrency")
        queue = properties(queues[queue_id])
        redrive = queue.get("RedrivePolicy") or {}
        dead_letter = referenced_id(redrive.get("deadLetterTargetArn"))
        if dead_letter not in queues:
            report.error("queue", f"{queue_id} (read by {label}) needs a RedrivePolicy.deadLetterTargetArn to a DLQ in this template")
        receives = resolve_number(template, redrive.get("maxReceiveCount"))
        if receives is None or not 1 <= receives <= 1000:
            report.error("queue", f"{queue_id}.RedrivePolicy.maxReceiveCount must be 1..1000 (found {plain(redrive.get('maxReceiveCount'))!r})")
        function = functions.get(function_id or "")
        if function is None:
            report.error("queue", f"{label} does not name a function of this template")
            continue
        timeout = resolve_number(template, function_setting(template, function, "Timeout")) or LAMBDA_DEFAULT_TIMEOUT
        visibility = resolve_number(template, queue.get("VisibilityTimeout", SQS_DEFAULT_VISIBILITY_TIMEOUT))
        if visibility is None or visibility < VISIBILITY_TIMEOUT_FACTOR * timeout:
            report.error(
                "queue",
                f"{queue_id}.VisibilityTimeout ({plain(queue.get('VisibilityTimeout', SQS_DEFAULT_VISIBILITY_TIMEOUT))}) "
                f"must be >= {VISIBILITY_TIMEOUT_FACTOR} x {function_id} Timeout ({timeout:g} s)",
            )


# ---------------------------------------------------------------------------------------------
# Rule: iam
# ---------------------------------------------------------------------------------------------


def _statements(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    return [s for s in as_list(document.get("Statement")) if isinstance(s, dict)]


def iam_statements(template: dict[str, Any]) -> Iterable[tuple[str, str | None, dict[str, Any]]]:
    """(where, owning function or None, statement) for every identity-policy statement."""
    globals_policies = template.get("Globals", {}).get("Function", {}).get("Policies")
    sources: list[tuple[str, str | None, Any]] = [("Globals.Function", None, globals_policies)]
    for function_id, function in resources_of_type(template, "AWS::Serverless::Function").items():
        sources.append((function_id, function_id, properties(function).get("Policies")))
    for source_id, owner, policies in sources:
        for policy in as_list(policies):
            for statement in _statements(policy):
                yield source_id, owner, statement
    for role_id, role in resources_of_type(template, "AWS::IAM::Role").items():
        for policy in as_list(properties(role).get("Policies")):
            for statement in _statements((policy or {}).get("PolicyDocument")):
                yield role_id, None, statement
    for resource_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy_id, policy in resources_of_type(template, resource_type).items():
            for statement in _statements(properties(policy).get("PolicyDocument")):
                yield policy_id, None, statement


def _justified(value: Any, lines: list[str]) -> bool:
    line = getattr(value, "line", 0)
    return line >= 2 and lines[line - 2].strip().lower().startswith(JUSTIFICATION)


def check_iam(template: dict[str, Any], lines: list[str], report: Report) -> None:
    for where, owner, statement in iam_statements(template):
        if statement.get("Effect", "Allow") != "Allow":
            continue
        for inverse in ("NotAction", "NotResource"):
            values = as_list(statement.get(inverse))
            if values and not _justified(values[0], lines):
                report.error("iam", f"{where}: {inverse} grants everything else (line {getattr(values[0], 'line', '?')}); put '{JUSTIFICATION} ...' on the line before")
        actions = [a for a in as_list(statement.get("Action")) if isinstance(a, str)]
        for action in actions:
            if "*" in action and not _justified(action, lines):
                report.error("iam", f"{where}: wildcard action {action!r} (line {action.line}); list the actions, or put '{JUSTIFICATION} ...' on the line before")
        for resource in as_list(statement.get("Resource")):
            if isinstance(resource, str) and resource.strip() == "*" and not _justified(resource, lines):
                report.error("iam", f'{where}: Resource: "*" (line {resource.line}); scope it, or put \'{JUSTIFICATION} ...\' on the line before (only where AWS requires "*")')
        lowered = {a.lower() for a in actions}
        if "execute-api:manageconnections" in lowered:
            if owner not in PUSHING_FUNCTIONS:
                report.error("iam", f"{where}: execute-api:ManageConnections is only for the pushing functions {sorted(PUSHING_FUNCTIONS)}")
            for resource in as_list(statement.get("Resource")):
                text = json.dumps(plain(resource))
                if "/@connections/" not in text:
                    report.error("iam", f"{where}: execute-api:ManageConnections must be scoped to the stage's @connections ARN, not {text}")
        for action, owners in SQS_ACTION_OWNERS.items():
            if action in lowered and owner not in owners:
                report.error("iam", f"{where}: {action} is only for {sorted(owners)}")


def resource_kind(template: dict[str, Any], resource: Any) -> str:
    """Classifies one policy resource into the kinds EXPECTED_GRANTS uses (else its JSON)."""
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    queues = resources_of_type(template, "AWS::SQS::Queue")
    target = referenced_id(resource)
    attribute = getatt_attribute(resource)
    if target in tables and attribute == "Arn":
        return TABLE
    if target in tables and attribute in ("StreamArn", "LatestStreamArn"):
        return STREAM
    if target in queues and attribute == "Arn":
        return f"queue:{target}"
    text = plain(resource.get("Fn::Sub")) if isinstance(resource, dict) else None
    if isinstance(text, str) and target in tables:
        if text.endswith(".Arn}/index/*"):
            return INDEX
        if text.endswith(".Arn}/stream/*"):
            return STREAM
    if isinstance(text, str) and "/@connections/" in text:
        return CONNECTIONS
    if isinstance(text, str) and re.fullmatch(
        r"arn:\$\{AWS::Partition\}:secretsmanager:\$\{AWS::Region\}:\$\{AWS::AccountId\}:secret:\$\{JwtSigningKeySecretName\}-\?{6}",
        text,
    ):
        return SIGNING_KEY_SECRET
    return json.dumps(plain(resource), sort_keys=True)


MANAGE_CONNECTIONS_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
    r"\$\{(?P<api>[A-Za-z0-9]+)\}/\$\{(?P<stage>[A-Za-z0-9]+)\}/POST/@connections/\*$"
)


def _websocket_api_and_stage_parameter(template: dict[str, Any]) -> tuple[set[str], set[str]]:
    apis = {
        api_id
        for api_id, api in resources_of_type(template, "AWS::ApiGatewayV2::Api").items()
        if properties(api).get("ProtocolType") == "WEBSOCKET"
    }
    stage_parameters = {
        str(properties(stage)["StageName"]["Ref"])
        for stage in resources_of_type(template, "AWS::ApiGatewayV2::Stage").values()
        if referenced_id(properties(stage).get("ApiId")) in apis
        and isinstance(properties(stage).get("StageName"), dict)
        and "Ref" in properties(stage)["StageName"]
    }
    return apis, stage_parameters


def function_grants(template: dict[str, Any], function_id: str) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for _where, owner, statement in iam_statements(template):
        if owner != function_id or statement.get("Effect", "Allow") != "Allow":
            continue
        kinds = {resource_kind(template, r) for r in as_list(statement.get("Resource"))}
        for action in as_list(statement.get("Action")):
            grants.setdefault(str(action).lower(), set()).update(kinds)
    return grants


def check_grants(template: dict[str, Any], report: Report) -> None:
    apis, stage_parameters = _websocket_api_and_stage_parameter(template)
    for function_id in sorted(resources_of_type(template, "AWS::Serverless::Function")):
        expected = EXPECTED_GRANTS.get(function_id)
        if expected is None:
            continue  # reported by the functions rule
        wanted = {action.lower(): kinds for action, kinds in expected.items()}
        have = function_grants(template, function_id)
        for action in sorted(set(have) - set(wanted)):
            report.error("grants", f"{function_id} is granted {action} on {sorted(have[action])}, which its code never calls")
        for action in sorted(set(wanted) - set(have)):
            report.error("grants", f"{function_id} lacks {action} on {sorted(wanted[action])}, which its code calls (AccessDenied at run time)")
        for action in sorted(set(wanted) & set(have)):
            if have[action] != wanted[action]:
                extra, missing = sorted(have[action] - wanted[action]), sorted(wanted[action] - have[action])
                report.error(
                    "grants",
                    f"{function_id} {action}: resources must be exactly {sorted(wanted[action])}"
                    + (f"; not {extra}" if extra else "")
                    + (f"; missing {missing}" if missing else ""),
                )
        for _where, owner, statement in iam_statements(template):
            if owner != function_id:
                continue
            actions = {str(a).lower() for a in as_list(statement.get("Action"))}
            if "execute-api:manageconnections" not in actions:
                continue
            for resource in as_list(statement.get("Resource")):
                text = plain(resource.get("Fn::Sub")) if isinstance(resource, dict) else None
                match = MANAGE_CONNECTIONS_ARN.match(text) if isinstance(text, str) else None
                if not match or match["api"] not in apis or match["stage"] not in stage_parameters:
                    report.error(
                        "grants",
                        f"{function_id}: execute-api:ManageConnections must be exactly "
                        f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{<WebSocketApi>}}/${{<stage parameter>}}/POST/@connections/* "
                        f"(the code only posts), not {json.dumps(plain(resource))}",
                    )


def function_environment(template: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for source in (template.get("Globals", {}).get("Function", {}), properties(function)):
        variables = (source.get("Environment") or {}).get("Variables") or {}
        merged.update(variables)
    return merged


def check_environment(template: dict[str, Any], report: Report) -> None:
    apis, stage_parameters = _websocket_api_and_stage_parameter(template)
    for function_id, function in sorted(resources_of_type(template, "AWS::Serverless::Function").items()):
        environment = function_environment(template, function)
        for name in sorted((REQUIRED_ENV_ALL | REQUIRED_ENV.get(function_id, set())) - set(environment)):
            report.error("environment", f"{function_id} needs {name} (its Config/State refuses to start without it)")
        endpoint = environment.get("WS_MANAGEMENT_ENDPOINT")
        if endpoint is not None:
            text = plain(endpoint.get("Fn::Sub")) if isinstance(endpoint, dict) else plain(endpoint)
            names = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", text)) if isinstance(text, str) else set()
            if not (isinstance(text, str) and text.startswith("https://") and names & apis and names & stage_parameters):
                report.error("environment", f"{function_id}.WS_MANAGEMENT_ENDPOINT must be https://${{<WebSocketApi>}}...../${{<stage parameter>}}, not {json.dumps(plain(endpoint))}")
        queue = environment.get("FANOUT_QUEUE_URL")
        if queue is not None:
            queue_id = referenced_id(queue)
            if f"queue:{queue_id}" not in function_grants(template, function_id).get("sqs:sendmessage", set()):
                report.error("environment", f"{function_id}.FANOUT_QUEUE_URL must !Ref a queue the function may sqs:SendMessage to (found {json.dumps(plain(queue))})")


def _signing_material(value: Any) -> str | None:
    """What in an environment value is signing material, if anything."""
    text = json.dumps(plain(value)) if not isinstance(value, str) else value
    if "resolve:secretsmanager" in text:
        return "a {{resolve:secretsmanager}} value (the secret would sit in the environment)"
    if "PRIVATE KEY" in text:
        return "a PEM private key"
    if re.search(r'\\?"d\\?"\s*:', text):
        return 'a private JWK ("d")'
    return None


def check_keys(template: dict[str, Any], report: Report) -> None:
    globals_env = (template.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables") or {}
    for name, value in sorted(globals_env.items()):
        if name in SIGNING_VARIABLES | RETIRED_VARIABLES:
            report.error("keys", f"Globals gives every function {name}: signing material belongs to {SIGNING_FUNCTION} alone")
        elif (what := _signing_material(value)) is not None:
            report.error("keys", f"Globals.{name} is {what}: no function may hold signing material in its environment")
    for function_id, function in sorted(resources_of_type(template, "AWS::Serverless::Function").items()):
        environment = function_environment(template, function)
        for name, value in sorted(environment.items()):
            if name in RETIRED_VARIABLES:
                report.error("keys", f"{function_id} has {name}: the shared secret is retired (EdDSA keys, docs/deploy.md)")
            elif name in SIGNING_VARIABLES and function_id != SIGNING_FUNCTION:
                report.error("keys", f"{function_id} has {name}: only {SIGNING_FUNCTION} may reach the signing key")
            elif (what := _signing_material(value)) is not None:
                report.error("keys", f"{function_id}.{name} is {what}: the private key is read through the SDK, never put in an environment")
        if function_id not in VERIFYING_FUNCTIONS:
            for name in sorted(n for n in environment if n.startswith("JWT_") and n not in ("JWT_ISSUER", "JWT_AUDIENCE")):
                report.error("keys", f"{function_id} verifies no token and must get no key variable, found {name}")
        for action in sorted(a for a in function_grants(template, function_id) if a.startswith("secretsmanager:") or a == "kms:decrypt"):
            if function_id != SIGNING_FUNCTION:
                report.error("keys", f"{function_id} is granted {action}: only {SIGNING_FUNCTION} may read the signing key")


# ---------------------------------------------------------------------------------------------
# Rules: websocket and http
# ---------------------------------------------------------------------------------------------


def check_websocket(template: dict[str, Any], report: Report) -> None:
    apis = {
        api_id
        for api_id, api in resources_of_type(template, "AWS::ApiGatewayV2::Api").items()
        if properties(api).get("ProtocolType") == "WEBSOCKET"
    }
    if not apis:
        report.error("websocket", "no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET")
        return
    integrations = resources_of_type(template, "AWS::ApiGatewayV2::Integration")
    functions = resources_of_type(template, "AWS::Serverless::Function")
    permitted = {
        referenced_id(properties(p).get("FunctionName"))
        for p in resources_of_type(template, "AWS::Lambda::Permission").values()
        if properties(p).get("Principal") == "apigateway.amazonaws.com"
    }
    routes = {
        route_id: properties(route)
        for route_id, route in resources_of_type(template, "AWS::ApiGatewayV2::Route").items()
        if referenced_id(properties(route).get("ApiId")) in apis
    }
    for route_id, route in sorted(routes.items()):
        integration_id = referenced_id(route.get("Target"))
        integration = properties(integrations.get(integration_id or "", {}))
        if not integration:
            report.error("websocket", f"{route_id} ({route.get('RouteKey')}) must target an integration of this template")
            continue
        if integration.get("IntegrationType") != "AWS_PROXY":
            report.error("websocket", f"{integration_id} must be an AWS_PROXY integration")
        function_id = referenced_id(integration.get("IntegrationUri"))
        if function_id not in functions:
            report.error("websocket", f"{integration_id} must invoke a function of this template")
        elif function_id not in permitted:
            report.error("websocket", f"{function_id} has no AWS::Lambda::Permission for apigateway.amazonaws.com")
    for deployment_id, deployment in resources_of_type(template, "AWS::ApiGatewayV2::Deployment").items():
        if referenced_id(properties(deployment).get("ApiId")) not in apis:
            continue
        waits_for = set(as_list(deployment.get("DependsOn")))
        missing = sorted(set(routes) - waits_for)
        if missing:
            report.error("websocket", f"{deployment_id} must DependsOn every route (missing {missing}); otherwise it snapshots an incomplete API")


def check_http(template: dict[str, Any], report: Report) -> None:
    http_apis = set(resources_of_type(template, "AWS::Serverless::HttpApi"))
    seen: dict[tuple[str, str], str] = {}
    for function_id, function in sorted(resources_of_type(template, "AWS::Serverless::Function").items()):
        for event_id, event in (properties(function).get("Events") or {}).items():
            if not isinstance(event, dict) or event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            label = f"{function_id}.Events.{event_id}"
            if referenced_id(props.get("ApiId")) not in http_apis:
                report.error("http", f"{label} must set ApiId: !Ref <the template's AWS::Serverless::HttpApi>")
            if str(props.get("PayloadFormatVersion")) != "2.0":
                report.error("http", f"{label} must set PayloadFormatVersion: \"2.0\"")
            route = (str(props.get("Method", "")).upper(), str(props.get("Path", "")))
            if route in seen:
                report.error("http", f"{label}: {route[0]} {route[1]} is already served by {seen[route]}")
            seen[route] = label


# ---------------------------------------------------------------------------------------------


def run(template_path: Path, table_path: Path, root: Path) -> Report:
    template = load_template(template_path)
    lines = template_path.read_text(encoding="utf-8").splitlines()
    table_definition = json.loads(table_path.read_text(encoding="utf-8"))
    report = Report()
    check_table(template, table_definition, report)
    check_functions(template, root, report)
    check_stream_mapping(template, report)
    check_queue_mappings(template, report)
    check_iam(template, lines, report)
    check_grants(template, report)
    check_environment(template, report)
    check_keys(template, report)
    check_websocket(template, report)
    check_http(template, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("table", type=Path, help="the single table definition (infra/table.json)")
    parser.add_argument("--root", type=Path, help="repository root for CodeUri paths (default: the template's directory)")
    args = parser.parse_args(argv)
    report = run(args.template, args.table, args.root or args.template.resolve().parent)
    for note in report.notes:
        print(f"note: {note}")
    if report.errors:
        for error in report.errors:
            print(f"ERROR {error}", file=sys.stderr)
        print(f"check_template: {len(report.errors)} problem(s) in {args.template}", file=sys.stderr)
        return 1
    print(f"check_template: {args.template} OK (table, functions, stream, queue, iam, grants, environment, keys, websocket, http)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
