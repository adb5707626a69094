"""Calls the service as stock HTTP/1.1 tooling does (Python's urllib, as probes, scrapers and
scripts would): health, readiness, Prometheus metrics and a Connect JSON POST. Exits non-zero at
the first check that fails."""

import json
import urllib.error
import urllib.request

from client_checks import CACHE_STATES, SERVICE, argument_parser, expect, expect_equal, run

TIMEOUT_SECONDS = 10
HTTP_1_1 = 11  # http.client's spelling of the response's HTTP version


def fetch(request: urllib.request.Request | str):
    """(status, headers, body) of one exchange; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            expect(response.version == HTTP_1_1, f"{response.url} is answered over HTTP/1.1", f"version {response.version}")
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def get_member_expiration(base: str, campaign: str, member: str) -> urllib.request.Request:
    """A Connect unary POST with the JSON codec."""
    return urllib.request.Request(f"{base}/{SERVICE}/GetMemberExpiration", method="POST",
                                  headers={"content-type": "application/json"},
                                  data=json.dumps({"campaign": campaign, "member": member}).encode())


def main() -> None:
    args = argument_parser(__doc__).parse_args()
    base = f"http://{args.address}"

    for path in ("/healthz", "/readyz"):
        status, _, body = fetch(base + path)
        expect(status == 200, f"GET {path} is 200", f"{status} {body!r}")

    status, headers, body = fetch(base + "/metrics")
    expect(status == 200, "GET /metrics is 200", f"{status} {body!r}")
    content_type = headers.get("content-type", "")
    expect(content_type.startswith("text/plain"), "metrics are Prometheus text", content_type)
    text = body.decode()
    expect("# HELP " in text and "# TYPE " in text, "metrics have HELP and TYPE lines", text[:500])

    status, headers, body = fetch(get_member_expiration(base, args.campaign, args.member))
    expect(status == 200, "a Connect JSON POST of GetMemberExpiration is 200", f"{status} {body!r}")
    expect(headers.get("content-type") == "application/json", "it answers application/json", f"{headers.get('content-type')}")
    expect(headers.get("x-cache") in CACHE_STATES, "it says x-cache", f"{dict(headers)}")
    expect_equal(json.loads(body), json.loads(args.expected_json), "it answers what Connect JSON over HTTP/2 answered")

    status, _, body = fetch(get_member_expiration(base, args.campaign, args.unknown_member))
    expect(status == 404 and json.loads(body).get("code") == "not_found",
           "an unknown member is HTTP 404 with Connect code not_found", f"{status} {body!r}")


if __name__ == "__main__":
    run(main)
