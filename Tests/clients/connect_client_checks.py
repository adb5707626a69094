"""Calls the service with the official Connect Python client (`connectrpc`) as it comes: its
default transport (HTTP/1.1 for http:// URLs), gzip'd requests, and Connect GET with base64=1 and
compression=gzip for the no-side-effect GetMemberExpiration; with either of its codecs for
google.protobuf messages (JSON or binary proto). Exits non-zero at the first check that fails."""

from google.protobuf import json_format
from connectrpc.client import ConnectClientSync, ResponseMetadata
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

from client_checks import (CACHE_STATES, SERVICE, after_first_export, argument_parser, campaign_request, expect, expect_campaign,
                           expect_equal, fail, generated_modules, run)

CALL_TIMEOUT_MS = 10_000
CODECS = {"json": google_protobuf_json_codec(), "proto": google_protobuf_binary_codec()}


def method(name: str, request_type, response_type, idempotency: IdempotencyLevel) -> MethodInfo:
    return MethodInfo(name=name, service_name=SERVICE, input=request_type, output=response_type,
                      idempotency_level=idempotency, stream_type=StreamType.UNARY)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--codec", required=True, choices=CODECS, help="how messages travel")
    parser.add_argument("--http2", action="store_true",
                        help="speak h2c (prior knowledge) instead of the default transport's HTTP/1.1")
    args = parser.parse_args()
    messages = generated_modules()
    expected = json_format.Parse(args.expected_json, messages.MemberExpiration())
    get_member_expiration = method("GetMemberExpiration", messages.GetMemberExpirationRequest,
                                   messages.MemberExpiration, IdempotencyLevel.NO_SIDE_EFFECTS)
    get_campaign_expiration = method("GetCampaignExpiration", messages.GetCampaignExpirationRequest,
                                     messages.CampaignExpiration, IdempotencyLevel.NO_SIDE_EFFECTS)
    invalidate_member = method("InvalidateMember", messages.InvalidateMemberRequest,
                               messages.InvalidateMemberResponse, IdempotencyLevel.UNKNOWN)
    transport = SyncHTTPTransport(http_version=HTTPVersion.HTTP2) if args.http2 else None
    how = f"over {'HTTP/2' if args.http2 else 'HTTP/1.1'}, {args.codec} codec"

    with ConnectClientSync(f"http://{args.address}", codec=CODECS[args.codec], timeout_ms=CALL_TIMEOUT_MS,
                           http_client=SyncClient(transport)) as connect:
        with ResponseMetadata() as response:
            request = messages.GetMemberExpirationRequest(campaign=args.campaign, member=args.member)
            answer = connect.execute_unary(request=request, method=get_member_expiration, use_get=True)
            expect_equal(answer, expected, f"GetMemberExpiration by GET {how}")
            expect(response.headers.get("x-cache") in CACHE_STATES, "the answer has x-cache",
                   f"{list(response.headers.allitems())}")
        try:
            unknown = messages.GetMemberExpirationRequest(campaign=args.campaign, member=args.unknown_member)
            answer = connect.execute_unary(request=unknown, method=get_member_expiration, use_get=True)
            fail(f"an unknown member answered {answer}, expected not_found")
        except ConnectError as error:
            expect(error.code == Code.NOT_FOUND, "an unknown member is not_found", f"{error.code}: {error.message}")

        campaign = after_first_export(
            lambda: connect.execute_unary(request=campaign_request(messages, args.campaign), method=get_campaign_expiration,
                                          use_get=True),
            lambda error: isinstance(error, ConnectError) and error.code == Code.UNAVAILABLE)
        expect_campaign(campaign, args.campaign, f"by GET {how}")

        # The member is cached (the read above was a hit): the first invalidation finds it, the second nothing.
        invalidate = messages.InvalidateMemberRequest(campaign=args.campaign, member=args.member)
        for was_cached in (True, False):
            answer = connect.execute_unary(request=invalidate, method=invalidate_member)
            expect(answer.invalidated == was_cached, f"InvalidateMember by POST {how} says invalidated={was_cached}",
                   f"{answer}")


if __name__ == "__main__":
    run(main)
