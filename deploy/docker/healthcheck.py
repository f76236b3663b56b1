"""The image's HEALTHCHECK: GET /readyz on the service's own port (its `<SERVICE>_PORT` setting).

Standard library only, so it costs the image nothing. The CLI image serves nothing and passes.
"""

import os
import sys
import urllib.error
import urllib.request

# The services' default ports (their settings classes); the variable overrides them as it does the service.
DEFAULT_PORTS = {"command-svc": 8081, "projector-svc": 8082, "query-svc": 8080}


def main() -> int:
    service = os.environ.get("SERVICE", "")
    if service not in DEFAULT_PORTS:
        return 0
    variable = service.upper().replace("-", "_") + "_PORT"
    port = int(os.environ.get(variable, DEFAULT_PORTS[service]))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"{service} not ready: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
