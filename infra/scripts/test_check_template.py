#!/usr/bin/env python3
"""Self-test of check_template.py: every rule must be able to fail.

    test_check_template.py TEMPLATE TABLE_JSON

Runs the checker (as a subprocess, exactly as `make check-template` does) on the real files, then
on broken copies written to a temporary directory. Each broken copy must make the checker exit
non-zero with the expected message; the untouched copies must pass. Structural mutations edit the
parsed template and write it back in long form (`{"Ref": ...}`); the justification-comment cases
edit the raw text, because comments do not survive parsing.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

SCRIPTS = Path(__file__).resolve().parent
CHECKER = SCRIPTS / "check_template.py"
sys.path.insert(0, str(SCRIPTS))
import check_template  # noqa: E402

Template = dict[str, Any]


class LongFormDumper(yaml.SafeDumper):
    pass


LongFormDumper.add_representer(check_template.LineStr, yaml.representer.SafeRepresenter.represent_str)


def resources(template: Template) -> dict[str, Any]:
    return template["Resources"]


def props(template: Template, logical_id: str) -> dict[str, Any]:
    return resources(template)[logical_id]["Properties"]


def policy_statements(template: Template, function_id: str) -> list[dict[str, Any]]:
    return props(template, function_id)["Policies"][0]["Statement"]


# ---------------------------------------------------------------------------------------------
# Structural mutations: (name, mutate(template, table_definition), expected message fragment)
# ---------------------------------------------------------------------------------------------


def _set(path: list[str], value: Any) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        node = resources(template)
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: list[str]) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        node = resources(template)
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


# A pattern that allow-lists every entity the checker requires.
ENTITY_PATTERN = '{"dynamodb": {"NewImage": {"entity": {"S": ["post", "comment", "notification", "message", "connection", "presence"]}}}}'


def _second_stream_reader(template: Template, _table: dict) -> None:
    resources(template)["SecondStreamMapping"] = copy.deepcopy(resources(template)["StreamRouterStreamMapping"])


def _sam_stream_event(template: Template, _table: dict) -> None:
    props(template, "PushWorkerFunction")["Events"] = {
        "TableStream": {
            "Type": "DynamoDB",
            "Properties": {"Stream": {"Fn::GetAtt": ["Table", "StreamArn"]}, "StartingPosition": "LATEST"},
        }
    }


def _grant(function_id: str, statement: dict[str, Any]) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        policy_statements(template, function_id).append(statement)

    return mutate


def _table_json(mutate_table: Callable[[dict], None]) -> Callable[[Template, dict], None]:
    def mutate(_template: Template, table: dict) -> None:
        mutate_table(table["table"])

    return mutate


def _gsi_projection_keys_only(table: dict) -> None:
    table["GlobalSecondaryIndexes"][1]["Projection"] = {"ProjectionType": "KEYS_ONLY"}


def _extra_gsi(table: dict) -> None:
    table["GlobalSecondaryIndexes"].append(
        {
            "IndexName": "gsi3",
            "KeySchema": [{"AttributeName": "gsi2sk", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    )


def _attribute_type(table: dict) -> None:
    table["AttributeDefinitions"][2]["AttributeType"] = "N"


def _stream_view(table: dict) -> None:
    table["StreamSpecification"]["StreamViewType"] = "KEYS_ONLY"


def _ttl_attribute(template: Template, table: dict) -> None:
    table["time_to_live_attribute"] = "ttl"


def _unknown_function(template: Template, _table: dict) -> None:
    resources(template)["RogueFunction"] = copy.deepcopy(resources(template)["ApiAuthFunction"])


def _drop_action(function_id: str, sid: str, action: str) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        for statement in policy_statements(template, function_id):
            if statement.get("Sid") == sid:
                statement["Action"] = [a for a in statement["Action"] if a != action]
                return
        raise AssertionError(f"{function_id} has no statement {sid}")

    return mutate


def _drop_statement(function_id: str, sid: str) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        statements = policy_statements(template, function_id)
        kept = [s for s in statements if s.get("Sid") != sid]
        assert len(kept) == len(statements) - 1, f"{function_id} has no statement {sid}"
        statements[:] = kept

    return mutate


def _drop_env(function_id: str, name: str) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        del props(template, function_id)["Environment"]["Variables"][name]

    return mutate


def _drop_global_env(name: str) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        del template["Globals"]["Function"]["Environment"]["Variables"][name]

    return mutate


def _add_env(function_id: str, name: str, value: Any) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        environment = props(template, function_id).setdefault("Environment", {}).setdefault("Variables", {})
        environment[name] = value

    return mutate


def _add_global_env(name: str, value: Any) -> Callable[[Template, dict], None]:
    def mutate(template: Template, _table: dict) -> None:
        template["Globals"]["Function"]["Environment"]["Variables"][name] = value

    return mutate


RESOLVED_KEY = {"Fn::Sub": "{{resolve:secretsmanager:${JwtSigningKeySecretName}:SecretString}}"}
SECRET_READ = {
    "Effect": "Allow",
    "Action": "secretsmanager:GetSecretValue",
    "Resource": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${JwtSigningKeySecretName}-??????"},
}


def _route_without_permission(template: Template, _table: dict) -> None:
    del resources(template)["WsDisconnectPermission"]


STREAM = ["StreamRouterStreamMapping", "Properties"]
QUEUE_MAPPING = ["PushWorkerQueueMapping", "Properties"]
FANOUT_QUEUE = ["FanoutQueue", "Properties"]

STRUCTURAL_CASES: list[tuple[str, Callable[[Template, dict], None], str]] = [
    # table
    ("table: GSI projection differs", _table_json(_gsi_projection_keys_only), "GlobalSecondaryIndexes differs"),
    ("table: extra GSI in table.json", _table_json(_extra_gsi), "GlobalSecondaryIndexes differs"),
    ("table: attribute type differs", _table_json(_attribute_type), "AttributeDefinitions differs"),
    ("table: stream view type differs", _table_json(_stream_view), "StreamSpecification differs"),
    ("table: key schema differs", _set(["Table", "Properties", "KeySchema"], [{"AttributeName": "pk", "KeyType": "HASH"}]), "KeySchema differs"),
    ("table: billing mode differs", _set(["Table", "Properties", "BillingMode"], "PROVISIONED"), "BillingMode differs"),
    ("table: TTL attribute differs", _ttl_attribute, "TimeToLiveSpecification must enable TTL on 'ttl'"),
    ("table: TTL disabled", _set(["Table", "Properties", "TimeToLiveSpecification", "Enabled"], False), "TimeToLiveSpecification"),
    ("table: no PITR", _delete(["Table", "Properties", "PointInTimeRecoverySpecification"]), "point-in-time recovery"),
    ("table: no SSE", _delete(["Table", "Properties", "SSESpecification"]), "server-side encryption"),
    # functions
    ("functions: wrong BuildMethod", _set(["ApiPostsFunction", "Metadata", "BuildMethod"], "makefile"), "BuildMethod: rust-cargolambda"),
    ("functions: CodeUri names another crate", _set(["ApiPostsFunction", "Properties", "CodeUri"], "functions/api-users"), "must be the crate 'api-posts'"),
    ("functions: Binary names another crate", _set(["PushWorkerFunction", "Metadata", "BuildProperties", "Binary"], "stream-router"), "Binary is 'stream-router'"),
    ("functions: function missing", _delete(["PushWorkerFunction"]), "PushWorkerFunction (crate push-worker) is missing"),
    ("functions: unknown function", _unknown_function, "RogueFunction is not one of Ripple's functions"),
    # stream mapping
    ("stream: no ReportBatchItemFailures", _delete(STREAM + ["FunctionResponseTypes"]), "ReportBatchItemFailures"),
    ("stream: bisect off", _set(STREAM + ["BisectBatchOnFunctionError"], False), "BisectBatchOnFunctionError: true"),
    ("stream: infinite retries", _set(STREAM + ["MaximumRetryAttempts"], -1), "MaximumRetryAttempts must be finite"),
    ("stream: retries unset", _delete(STREAM + ["MaximumRetryAttempts"]), "must set MaximumRetryAttempts"),
    ("stream: infinite record age", _set(STREAM + ["MaximumRecordAgeInSeconds"], -1), "MaximumRecordAgeInSeconds must be finite"),
    ("stream: record age unset", _delete(STREAM + ["MaximumRecordAgeInSeconds"]), "must set MaximumRecordAgeInSeconds"),
    ("stream: no failure destination", _delete(STREAM + ["DestinationConfig"]), "OnFailure.Destination"),
    ("stream: TRIM_HORIZON", _set(STREAM + ["StartingPosition"], "TRIM_HORIZON"), "must start at LATEST"),
    ("stream: second raw mapping", _second_stream_reader, "exactly one event-source mapping may read the table's stream"),
    ("stream: second reader as SAM event", _sam_stream_event, "found 2"),
    ("stream: no reader", _delete(["StreamRouterStreamMapping"]), "found 0"),
    ("stream: no FilterCriteria", _delete(STREAM + ["FilterCriteria"]), "must set FilterCriteria.Filters"),
    ("stream: empty Filters", _set(STREAM + ["FilterCriteria", "Filters"], []), "must set FilterCriteria.Filters"),
    ("stream: six filters", _set(STREAM + ["FilterCriteria", "Filters"], [{"Pattern": ENTITY_PATTERN}] * 6), "at most 5"),
    ("stream: pattern not JSON", _set(STREAM + ["FilterCriteria", "Filters", 0, "Pattern"], '{"dynamodb": '), "is not a JSON object"),
    ("stream: pattern on eventName", _set(STREAM + ["FilterCriteria", "Filters", 0, "Pattern"], '{"eventName": ["INSERT"]}'), "only filter on the `dynamodb` key"),
    ("stream: pattern without an entity allow-list", _set(STREAM + ["FilterCriteria", "Filters"], [{"Pattern": '{"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "U#"}]}}}}'}]), "must allow-list `entity` values"),
    ("stream: posts dropped", _set(STREAM + ["FilterCriteria", "Filters"], [{"Pattern": ENTITY_PATTERN.replace('"post", ', "")}]), "drops every record of ['post']"),
    # queue mapping
    ("queue: no ReportBatchItemFailures", _delete(QUEUE_MAPPING + ["FunctionResponseTypes"]), "ReportBatchItemFailures"),
    ("queue: no MaximumConcurrency", _delete(QUEUE_MAPPING + ["ScalingConfig"]), "ScalingConfig.MaximumConcurrency"),
    ("queue: no redrive policy", _delete(FANOUT_QUEUE + ["RedrivePolicy"]), "deadLetterTargetArn"),
    ("queue: visibility timeout too short", _set(FANOUT_QUEUE + ["VisibilityTimeout"], 60), "must be >= 6 x PushWorkerFunction Timeout"),
    ("queue: worker timeout raised", _set(["PushWorkerFunction", "Properties", "Timeout"], 120), "must be >= 6 x PushWorkerFunction Timeout"),
    # iam
    ("iam: dynamodb:*", _grant("ApiPostsFunction", {"Effect": "Allow", "Action": "dynamodb:*", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}), "wildcard action 'dynamodb:*'"),
    ("iam: prefix wildcard", _grant("ApiPostsFunction", {"Effect": "Allow", "Action": ["dynamodb:Get*"], "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}), "wildcard action 'dynamodb:Get*'"),
    ("iam: Resource *", _grant("ApiUsersFunction", {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}), 'Resource: "*"'),
    ("iam: NotAction", _grant("ApiUsersFunction", {"Effect": "Allow", "NotAction": "iam:*", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}), "NotAction grants everything else"),
    ("iam: ManageConnections for a REST function", _grant("ApiNotificationsFunction", {"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": {"Fn::Sub": "arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/prod/POST/@connections/*"}}), "only for the pushing functions"),
    ("iam: ManageConnections on the whole API", _grant("PushWorkerFunction", {"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": {"Fn::Sub": "arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/*"}}), "scoped to the stage's @connections ARN"),
    ("iam: SendMessage for a WebSocket function", _grant("WsMessageFunction", {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["FanoutQueue", "Arn"]}}), "sqs:sendmessage is only for ['PushWorkerFunction', 'StreamRouterFunction']"),
    ("iam: ReceiveMessage for the router", _grant("StreamRouterFunction", {"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": {"Fn::GetAtt": ["FanoutQueue", "Arn"]}}), "sqs:receivemessage is only for ['PushWorkerFunction']"),
    # grants (the per-function IAM audit)
    ("grants: an action the code never calls", _grant("ApiAuthFunction", {"Effect": "Allow", "Action": "dynamodb:DeleteItem", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}), "ApiAuthFunction is granted dynamodb:deleteitem"),
    ("grants: Scan for anyone", _grant("ApiNotificationsFunction", {"Effect": "Allow", "Action": "dynamodb:Scan", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}), "is granted dynamodb:scan"),
    ("grants: an action the code calls is missing", _drop_action("PushWorkerFunction", "StaleConnectionCleanupAndPresence", "dynamodb:ConditionCheckItem"), "PushWorkerFunction lacks dynamodb:conditioncheckitem"),
    ("grants: index query without an index read", _grant("WsConnectFunction", {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": {"Fn::Sub": "${Table.Arn}/index/*"}}), "WsConnectFunction is granted dynamodb:query"),
    ("grants: index missing for a GSI reader", _set(["ApiUsersFunction", "Properties", "Policies", 0, "Statement", 1, "Resource"], {"Fn::GetAtt": ["Table", "Arn"]}), "missing ['index/*']"),
    ("grants: index granted to a table-only reader", _set(["ApiAuthFunction", "Properties", "Policies", 0, "Statement", 2, "Resource"], [{"Fn::GetAtt": ["Table", "Arn"]}, {"Fn::Sub": "${Table.Arn}/index/*"}]), "not ['index/*']"),
    ("grants: pushing function cannot push", _drop_statement("StreamRouterFunction", "PushToConnections"), "StreamRouterFunction lacks execute-api:manageconnections"),
    ("grants: ManageConnections for any method", _grant("WsMessageFunction", {"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${WebSocketStageName}/*/@connections/*"}}), "(the code only posts)"),
    ("iam: the worker sends to the stream DLQ", _grant("PushWorkerFunction", {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["StreamDeadLetterQueue", "Arn"]}}), "not ['queue:StreamDeadLetterQueue']"),
    ("grants: router sends to the fan-out DLQ", _grant("StreamRouterFunction", {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["FanoutDeadLetterQueue", "Arn"]}}), "not ['queue:FanoutDeadLetterQueue']"),
    ("grants: worker writes items it never puts", _grant("PushWorkerFunction", {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}), "PushWorkerFunction is granted dynamodb:putitem"),
    ("grants: router loses its failure destination", _drop_statement("StreamRouterFunction", "StreamFailureDestination"), "missing ['queue:StreamDeadLetterQueue']"),
    # environment
    ("environment: router without FANOUT_QUEUE_URL", _drop_env("StreamRouterFunction", "FANOUT_QUEUE_URL"), "StreamRouterFunction needs FANOUT_QUEUE_URL"),
    ("environment: router without WS_MANAGEMENT_ENDPOINT", _drop_env("StreamRouterFunction", "WS_MANAGEMENT_ENDPOINT"), "StreamRouterFunction needs WS_MANAGEMENT_ENDPOINT"),
    ("environment: ws-message without WS_MANAGEMENT_ENDPOINT", _drop_env("WsMessageFunction", "WS_MANAGEMENT_ENDPOINT"), "WsMessageFunction needs WS_MANAGEMENT_ENDPOINT"),
    ("environment: api-posts without WS_MANAGEMENT_ENDPOINT (writer push)", _drop_env("ApiPostsFunction", "WS_MANAGEMENT_ENDPOINT"), "ApiPostsFunction needs WS_MANAGEMENT_ENDPOINT"),
    ("grants: api-messages without ManageConnections (writer push)", _drop_statement("ApiMessagesFunction", "PushToConnections"), "ApiMessagesFunction lacks execute-api:manageconnections"),
    ("environment: endpoint of another API", _set(["PushWorkerFunction", "Properties", "Environment", "Variables", "WS_MANAGEMENT_ENDPOINT"], "https://example.com/prod"), "WS_MANAGEMENT_ENDPOINT must be"),
    ("environment: queue URL of a DLQ", _set(["StreamRouterFunction", "Properties", "Environment", "Variables", "FANOUT_QUEUE_URL"], {"Ref": "FanoutDeadLetterQueue"}), "FANOUT_QUEUE_URL must !Ref a queue"),
    ("environment: api-auth without its signing key's secret", _drop_env("ApiAuthFunction", "JWT_SIGNING_KEY_SECRET"), "ApiAuthFunction needs JWT_SIGNING_KEY_SECRET"),
    ("environment: ws-connect without the JWKS", _drop_env("WsConnectFunction", "JWT_PUBLIC_KEYS"), "WsConnectFunction needs JWT_PUBLIC_KEYS"),
    # keys: signing material only in api-auth (each case adds a key where it must not be)
    ("keys: the retired shared secret back in Globals", _add_global_env("JWT_SECRET", RESOLVED_KEY), "Globals gives every function JWT_SECRET"),
    ("keys: the signing key resolved into Globals", _add_global_env("SIGNING_KEY", RESOLVED_KEY), "Globals.SIGNING_KEY is a {{resolve:secretsmanager}} value"),
    ("keys: the signing key resolved into api-auth's environment", _add_env("ApiAuthFunction", "SIGNING_KEY", RESOLVED_KEY), "ApiAuthFunction.SIGNING_KEY is a {{resolve:secretsmanager}} value"),
    ("keys: the secret's name given to api-posts", _add_env("ApiPostsFunction", "JWT_SIGNING_KEY_SECRET", {"Ref": "JwtSigningKeySecretName"}), "ApiPostsFunction has JWT_SIGNING_KEY_SECRET"),
    ("keys: a PEM private key in ws-connect", _add_env("WsConnectFunction", "KEY", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI...\n-----END PRIVATE KEY-----"), "WsConnectFunction.KEY is a PEM private key"),
    ("keys: a private JWK in api-users", _add_env("ApiUsersFunction", "JWT_PUBLIC_KEYS", '{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA","d":"BBBB"}]}'), 'ApiUsersFunction.JWT_PUBLIC_KEYS is a private JWK ("d")'),
    ("keys: ws-connect may read the secret", _grant("WsConnectFunction", SECRET_READ), "keys: WsConnectFunction is granted secretsmanager:getsecretvalue"),
    ("keys: the router gets the JWKS it never uses", _add_env("StreamRouterFunction", "JWT_PUBLIC_KEYS", {"Ref": "JwtPublicKeys"}), "StreamRouterFunction verifies no token and must get no key variable"),
    ("grants: api-auth cannot read its signing key", _drop_statement("ApiAuthFunction", "SigningKey"), "ApiAuthFunction lacks secretsmanager:getsecretvalue"),
    ("grants: api-auth reads every secret", _set(["ApiAuthFunction", "Properties", "Policies", 0, "Statement", 0, "Resource"], {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*"}), "ApiAuthFunction secretsmanager:getsecretvalue: resources must be exactly"),
    # websocket and http
    ("websocket: function without permission", _route_without_permission, "WsDisconnectFunction has no AWS::Lambda::Permission"),
    ("websocket: deployment does not wait for a route", _set(["WebSocketDeployment", "DependsOn"], ["WsConnectRoute"]), "must DependsOn every route"),
    ("http: payload format 1.0", _set(["ApiAuthFunction", "Properties", "Events", "Health", "Properties", "PayloadFormatVersion"], "1.0"), 'PayloadFormatVersion: "2.0"'),
    ("http: route served twice", _set(["ApiUsersFunction", "Properties", "Events", "GetMe", "Properties", "Path"], "/users"), "GET /users is already served"),
]


# ---------------------------------------------------------------------------------------------
# Raw-text cases for the justification comment (comments only exist in the text)
# ---------------------------------------------------------------------------------------------

ANCHOR = "            - Sid: StreamFailureDestination\n"
WILDCARD_STATEMENT = (
    "            - Sid: WildcardForTest\n"
    "              Effect: Allow\n"
    "              Action: dynamodb:GetItem\n"
    "{comment}"
    '              Resource: "*"\n'
)
# (name, comment line, whether the iam rule must flag the statement). A justified "*" still
# fails the grants rule (GetItem is granted on the table only), so these cases look at the
# iam rule's message, not at the exit status.
TEXT_CASES: list[tuple[str, str, bool]] = [
    ("iam text: Resource * without justification", "", True),
    ("iam text: Resource * with an unrelated comment", "              # this is fine, trust me\n", True),
    ("iam text: Resource * with a justification", "              # justification: test-only, AWS requires * here\n", False),
]
IAM_WILDCARD_MESSAGE = 'ERROR iam: StreamRouterFunction: Resource: "*"'


# ---------------------------------------------------------------------------------------------


def run_checker(template: Path, table: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(template), str(table), "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    template_path, table_path = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    root = template_path.parent
    original_template = check_template.load_template(template_path)
    original_table = json.loads(table_path.read_text(encoding="utf-8"))
    original_text = template_path.read_text(encoding="utf-8")
    failures: list[str] = []

    def expect(name: str, result: subprocess.CompletedProcess[str], should_pass: bool, fragment: str = "") -> None:
        output = result.stdout + result.stderr
        if should_pass and result.returncode != 0:
            failures.append(f"{name}: expected the checker to pass, it failed:\n{output}")
        elif not should_pass and result.returncode == 0:
            failures.append(f"{name}: expected the checker to FAIL, it passed")
        elif not should_pass and fragment not in output:
            failures.append(f"{name}: failed, but without {fragment!r}:\n{output}")
        else:
            print(f"  ok  {name}")

    with tempfile.TemporaryDirectory(prefix="ripple-check-template-") as scratch:
        scratch_dir = Path(scratch)

        def write(template: Template, table: dict, stem: str) -> tuple[Path, Path]:
            template_copy = scratch_dir / f"{stem}.yaml"
            table_copy = scratch_dir / f"{stem}.table.json"
            template_copy.write_text(yaml.dump(template, Dumper=LongFormDumper, sort_keys=False), encoding="utf-8")
            table_copy.write_text(json.dumps(table), encoding="utf-8")
            return template_copy, table_copy

        expect("baseline: the real template", run_checker(template_path, table_path, root), True)
        expect("baseline: long-form round trip", run_checker(*write(original_template, original_table, "roundtrip"), root), True)

        for index, (name, mutate, fragment) in enumerate(STRUCTURAL_CASES):
            template, table = copy.deepcopy(original_template), copy.deepcopy(original_table)
            mutate(template, table)
            expect(name, run_checker(*write(template, table, f"case{index}"), root), False, fragment)

        if original_text.count(ANCHOR) != 1:
            failures.append(f"iam text cases: anchor {ANCHOR.strip()!r} must occur exactly once in {template_path}")
        else:
            for index, (name, comment, flagged) in enumerate(TEXT_CASES):
                text = original_text.replace(ANCHOR, WILDCARD_STATEMENT.format(comment=comment) + ANCHOR)
                template_copy = scratch_dir / f"text{index}.yaml"
                template_copy.write_text(text, encoding="utf-8")
                result = run_checker(template_copy, table_path, root)
                output = result.stdout + result.stderr
                if (IAM_WILDCARD_MESSAGE in output) != flagged:
                    failures.append(f"{name}: the iam rule should {'' if flagged else 'NOT '}report the wildcard:\n{output}")
                else:
                    print(f"  ok  {name}")

    total = 2 + len(STRUCTURAL_CASES) + len(TEXT_CASES)
    if failures:
        for failure in failures:
            print(f"FAIL {failure}", file=sys.stderr)
        print(f"test_check_template: {len(failures)} of {total} cases failed", file=sys.stderr)
        return 1
    print(f"test_check_template: all {total} cases behave as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
