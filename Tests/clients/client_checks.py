"""What the client check scripts share: reporting, common arguments, and message classes generated
at run time from proto-json/ (the contract), so the checks use the .proto strangers get."""

import argparse
import importlib
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import NoReturn

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto-json"
PROTO_FILE = "pointsexpiry/v1/points_expiry.proto"
SERVICE = "pointsexpiry.v1.PointsExpiryService"
CACHE_STATES = ("hit", "miss", "stale")
# How long a campaign's first export may take before GetCampaignExpiration answers.
FIRST_EXPORT_SECONDS = 60


def fail(what: str) -> NoReturn:
    print(f"FAIL {what}", file=sys.stderr, flush=True)
    sys.exit(1)


def expect(condition: bool, what: str, detail: str = "") -> None:
    """Reports `what` as checked, or ends the script with it (and `detail`) as the failure."""
    if not condition:
        fail(f"{what}: {detail}" if detail else what)
    print(f"ok   {what}", flush=True)


def expect_equal(actual, expected, what: str) -> None:
    expect(actual == expected, what, f"got\n{actual}\nexpected\n{expected}")


def run(checks) -> None:
    """Runs `checks`; an error nobody expected (a status, a refused connection) ends the script
    with one line naming it, right after the ok line of the last check that passed."""
    try:
        checks()
    except Exception as error:  # noqa: BLE001 - any error is a failed check, reported as such
        fail(f"the next check raised {type(error).__name__}: {error}")


def after_first_export(call, is_unavailable):
    """GetCampaignExpiration answers `unavailable` while a campaign's first export runs: returns
    `call()` once it answers, trying again every 0.2 s for up to FIRST_EXPORT_SECONDS."""
    deadline = time.monotonic() + FIRST_EXPORT_SECONDS
    while True:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - the client's own error type, judged by is_unavailable
            if not is_unavailable(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def expect_campaign(answer, campaign: str, how: str) -> None:
    """A CampaignExpiration for the whole of `campaign` (asked from 2000-01-01) decoded by the client."""
    expect(answer.campaign == campaign and answer.cards > 0 and answer.active_points > 0
           and answer.expiring_points > 0 and answer.generated_at.seconds > 0 and len(answer.expirations) > 0,
           f"GetCampaignExpiration {how} answers the campaign's totals", f"{answer}")
    expect(sum(day.points for day in answer.expirations) == answer.expiring_points,
           f"its dates add up to expiring_points ({how})", f"{answer}")


def campaign_request(messages, campaign: str):
    """The whole campaign's GetCampaignExpirationRequest (`from` is a Python keyword)."""
    return messages.GetCampaignExpirationRequest(campaign=campaign, **{"from": "2000-01-01"})


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every script takes: where the service is and whom to ask about."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--address", required=True, help="host:port of the service")
    parser.add_argument("--campaign", required=True, help="a campaign Voucherify knows")
    parser.add_argument("--member", required=True, help="a card of that campaign, already cached")
    parser.add_argument("--unknown-member", required=True, help="a card Voucherify does not know")
    parser.add_argument("--expected-json", required=True,
                        help="the service's Connect JSON answer for --member (read over HTTP/2)")
    return parser


def generated_modules(with_grpc: bool = False):
    """points_expiry_pb2 (and points_expiry_pb2_grpc), generated from the contract's .proto by
    `python -m grpc_tools.protoc` into a temporary folder and imported from there."""
    outputs = ["--python_out={out}"] + (["--grpc_python_out={out}"] if with_grpc else [])
    with tempfile.TemporaryDirectory(prefix="pe-stubs-") as out:
        command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}"]
        command += [option.format(out=out) for option in outputs] + [PROTO_FILE]
        generated = subprocess.run(command, capture_output=True, text=True)
        if generated.returncode != 0:
            fail(f"grpc_tools.protoc failed on {PROTO_FILE}: {generated.stderr}")
        sys.path.insert(0, out)
        try:
            messages = importlib.import_module("pointsexpiry.v1.points_expiry_pb2")
            if not with_grpc:
                return messages
            return messages, importlib.import_module("pointsexpiry.v1.points_expiry_pb2_grpc")
        finally:
            sys.path.remove(out)
