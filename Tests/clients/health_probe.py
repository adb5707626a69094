"""Asks the service's health as a Kubernetes `grpc` probe does: the standard grpc.health.v1 client
(grpcio-health-checking), binary protobuf over h2c (or TLS with --ca-cert), with the probe's
default 1 s timeout.
Exits non-zero at the first check that fails."""

import argparse

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client_checks import SERVICE, expect, fail, run

PROBE_TIMEOUT_SECONDS = 1
CONNECT_TIMEOUT_SECONDS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="host:port of the service")
    parser.add_argument("--ca-cert", help="speak TLS, trusting this PEM certificate")
    parser.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_SECONDS,
                        help="seconds per call (a probe's default is 1; tests on a loaded machine give more)")
    args = parser.parse_args()

    if args.ca_cert:
        with open(args.ca_cert, "rb") as pem:
            channel = grpc.secure_channel(args.address, grpc.ssl_channel_credentials(root_certificates=pem.read()))
    else:
        channel = grpc.insecure_channel(args.address)
    with channel:
        # Connected first, so that only the calls have the probe's short timeout: on a loaded
        # test machine a connection may take longer than a kubelet's would.
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_SECONDS)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=args.timeout)
            expect(answer.status == health_pb2.HealthCheckResponse.SERVING, f"Check({service!r}) is SERVING",
                   health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

        try:
            answer = health.Check(health_pb2.HealthCheckRequest(service="other"), timeout=args.timeout)
            fail(f"Check('other') answered {answer}, expected status NOT_FOUND")
        except grpc.RpcError as error:
            expect(error.code() == grpc.StatusCode.NOT_FOUND, "Check('other') is NOT_FOUND", f"{error.code()}")

        try:
            updates = list(health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=args.timeout))
            fail(f"Watch answered {updates}, expected status UNIMPLEMENTED")
        except grpc.RpcError as error:
            expect(error.code() == grpc.StatusCode.UNIMPLEMENTED, "Watch is UNIMPLEMENTED", f"{error.code()}")


if __name__ == "__main__":
    run(main)
