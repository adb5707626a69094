"""Calls the service as a stock grpcio client does: binary protobuf over h2c, stubs generated from
proto-json/. Exits non-zero at the first check that fails."""

import time

import grpc
from google.protobuf import json_format

from client_checks import (CACHE_STATES, SERVICE, after_first_export, argument_parser, campaign_request, expect, expect_campaign,
                           expect_equal, fail, generated_modules, run)

CALL_TIMEOUT_SECONDS = 10
# Deadlines far shorter than the held Voucherify read behind --slow-member: one that runs out
# before the request leaves the client, one the server has to keep.
SHORT_DEADLINES_SECONDS = (0.001, 0.3)


def expect_status(call, code: grpc.StatusCode, what: str) -> None:
    try:
        answer = call()
    except grpc.RpcError as error:
        expect(error.code() == code, what, f"status {error.code()} ({error.details()}), expected {code}")
        return
    fail(f"{what}: answered {answer!r}, expected status {code}")


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--slow-member", required=True, help="a card whose Voucherify read does not end soon")
    args = parser.parse_args()
    messages, services = generated_modules(with_grpc=True)
    expected = json_format.Parse(args.expected_json, messages.MemberExpiration())
    request = messages.GetMemberExpirationRequest(campaign=args.campaign, member=args.member)

    with grpc.insecure_channel(args.address) as channel:
        stub = services.PointsExpiryServiceStub(channel)

        answer, call = stub.GetMemberExpiration.with_call(request, timeout=CALL_TIMEOUT_SECONDS)
        expect_equal(answer, expected, "GetMemberExpiration answers what Connect JSON answered")
        metadata = dict(call.initial_metadata())
        expect(metadata.get("x-cache") in CACHE_STATES, "initial metadata has x-cache", f"{metadata}")
        expect(metadata.get("age", "").isdigit(), "initial metadata has age in seconds", f"{metadata}")

        campaign = after_first_export(
            lambda: stub.GetCampaignExpiration(campaign_request(messages, args.campaign), timeout=CALL_TIMEOUT_SECONDS),
            lambda error: isinstance(error, grpc.RpcError) and error.code() == grpc.StatusCode.UNAVAILABLE)
        expect_campaign(campaign, args.campaign, "over gRPC")

        compressed = stub.GetMemberExpiration(request, timeout=CALL_TIMEOUT_SECONDS, compression=grpc.Compression.Gzip)
        expect_equal(compressed, expected, "a gzip-compressed request gets the same answer")

        unknown = messages.GetMemberExpirationRequest(campaign=args.campaign, member=args.unknown_member)
        expect_status(lambda: stub.GetMemberExpiration(unknown, timeout=CALL_TIMEOUT_SECONDS),
                      grpc.StatusCode.NOT_FOUND, "an unknown member is NOT_FOUND")
        no_campaign = messages.GetMemberExpirationRequest(member=args.member)
        expect_status(lambda: stub.GetMemberExpiration(no_campaign, timeout=CALL_TIMEOUT_SECONDS),
                      grpc.StatusCode.INVALID_ARGUMENT, "a missing campaign is INVALID_ARGUMENT")

        slow = messages.GetMemberExpirationRequest(campaign=args.campaign, member=args.slow_member)
        for deadline in SHORT_DEADLINES_SECONDS:
            started = time.monotonic()
            expect_status(lambda: stub.GetMemberExpiration(slow, timeout=deadline),
                          grpc.StatusCode.DEADLINE_EXCEEDED, f"a {deadline} s deadline is DEADLINE_EXCEEDED")
            elapsed = time.monotonic() - started
            expect(elapsed < deadline + 5, f"the {deadline} s deadline ends the call in time", f"took {elapsed:.2f} s")
        expect_equal(stub.GetMemberExpiration(request, timeout=CALL_TIMEOUT_SECONDS), expected,
                     "the channel still answers after the expired calls")

        batch = stub.BatchGetMemberExpirations(
            messages.BatchGetMemberExpirationsRequest(campaign=args.campaign, members=[args.member, args.unknown_member]),
            timeout=CALL_TIMEOUT_SECONDS)
        expect_equal([result.member for result in batch.results], [args.member, args.unknown_member],
                     "BatchGetMemberExpirations answers each member in request order")
        known, missing = batch.results
        expect(known.WhichOneof("result") == "expiration" and known.expiration == expected,
               "the known member's batch result is its expiration", f"{known}")
        expect(known.cache in CACHE_STATES, "the known member's batch result says how the cache answered", f"{known}")
        expect(missing.WhichOneof("result") == "error" and missing.error.code == "not_found" and missing.cache == "",
               "the unknown member's batch result is a not_found error", f"{missing}")

        nope = channel.unary_unary(f"/{SERVICE}/Nope",
                                   request_serializer=messages.GetMemberExpirationRequest.SerializeToString,
                                   response_deserializer=messages.MemberExpiration.FromString)
        expect_status(lambda: nope(request, timeout=CALL_TIMEOUT_SECONDS),
                      grpc.StatusCode.UNIMPLEMENTED, "an unknown method is UNIMPLEMENTED")

        invalidate = messages.InvalidateMemberRequest(campaign=args.campaign, member=args.member)
        expect(stub.InvalidateMember(invalidate, timeout=CALL_TIMEOUT_SECONDS).invalidated,
               "InvalidateMember drops the cached member")
        expect(not stub.InvalidateMember(invalidate, timeout=CALL_TIMEOUT_SECONDS).invalidated,
               "InvalidateMember again finds nothing cached")


if __name__ == "__main__":
    run(main)
