"""The project's images as containers, for tests: the engine scripts/deploy/engine.sh finds or starts,
images built by scripts/deploy/images.sh, containers on the host network that never pull."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = ROOT / "scripts/deploy/engine.sh"
IMAGES_SCRIPT = ROOT / "scripts/deploy/images.sh"
IMAGE_PREFIX = "cqrs-platform"
#: A tag of this checkout's own: the private engine is shared by every clone on the machine, and two
#: checkouts testing at once must each run the images built from their own source.
IMAGE_TAG = "test-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
#: engine.sh's exit status when this machine can neither reach nor start an engine.
NO_ENGINE_HERE = 3
#: The images' stop timeout in compose and the chart: command-svc drains for up to 20 s.
STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Engine:
    docker: str
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # argv: fixed words and our own values
            [self.docker, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def image(self, name: str) -> str:
        return f"{IMAGE_PREFIX}/{name}:{IMAGE_TAG}"


class EngineUnavailableError(Exception):
    """This machine has no Docker engine and cannot start one (not root, or no dockerd to install)."""


def connect() -> Engine:
    """The engine scripts/deploy/engine.sh resolves (starting a private one when none answers)."""
    done = subprocess.run(
        [str(ENGINE_SCRIPT), "env"], capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode == NO_ENGINE_HERE:
        raise EngineUnavailableError(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    env = dict(os.environ)
    for line in done.stdout.splitlines():
        for assignment in line.removeprefix("export ").split():
            key, _, value = assignment.partition("=")
            env[key] = value
    return Engine(env["DOCKER"], env)


def build_images(engine: Engine) -> str:
    """Build (or confirm, from the build cache) the four images; the script's log."""
    env = {**engine.env, "IMAGE_PREFIX": IMAGE_PREFIX, "IMAGE_TAG": IMAGE_TAG}
    done = subprocess.run(
        [str(IMAGES_SCRIPT)], env=env, capture_output=True, text=True, timeout=1200, check=False
    )
    assert done.returncode == 0, f"make images failed:\n{done.stdout}\n{done.stderr}"
    return done.stderr


def run_once(
    engine: Engine, image: str, env: dict[str, str], *args: str, volumes: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """A one-shot container (the CLI image), hardened like the services; waits for it to exit."""
    env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    env_args += [arg for volume in volumes for arg in ("--volume", volume)]
    return engine.run(
        "run", "--rm", "--pull", "never", "--network", "host", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", *env_args, engine.image(image), *args,
        check=False,
    )  # fmt: skip


@dataclass
class Container:
    """One service image running on the host network, as hardened as the chart runs it."""

    engine: Engine
    service: str
    port: int
    env: dict[str, str]
    name: str = field(default_factory=lambda: f"cqrs-test-{uuid.uuid4().hex[:10]}")
    #: Bind mounts (`source:target:ro`), as compose's `volumes:` gives them.
    volumes: tuple[str, ...] = ()
    #: Another program of the image (compose's `entrypoint:`) and its arguments.
    entrypoint: str | None = None
    args: tuple[str, ...] = ()
    #: A healthcheck command replacing the image's (compose's `healthcheck.test`, CMD-SHELL form).
    health_cmd: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Container:
        env_args = [arg for key, value in self.env.items() for arg in ("--env", f"{key}={value}")]
        env_args += [arg for volume in self.volumes for arg in ("--volume", volume)]
        env_args += ["--entrypoint", self.entrypoint] if self.entrypoint else []
        env_args += ["--health-cmd", self.health_cmd] if self.health_cmd else []
        self.engine.run(
            "run", "--detach", "--pull", "never", "--name", self.name, "--network", "host",
            # What the chart's securityContext asks of a pod: read-only root, no capabilities.
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",  # noqa: S108  # a tmpfs of the container
            "--security-opt", "no-new-privileges",
            # The image's own HEALTHCHECK command, checked more often so the test need not wait 10 s.
            "--health-interval", "1s", "--health-start-period", "0s",
            *env_args, self.engine.image(self.service), *self.args,
        )  # fmt: skip
        return self

    def wait_healthy(self, timeout: float = 90.0) -> None:
        """Until the container's healthcheck reports healthy (compose's `service_healthy`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if not state["Running"]:
                raise AssertionError(f"{self.service} exited with {state['ExitCode']}:\n{self.logs()}")
            if state.get("Health", {}).get("Status") == "healthy":
                return
            time.sleep(0.5)
        health = self.inspect()["State"].get("Health", {})
        raise AssertionError(f"{self.service} not healthy after {timeout}s: {health}\n{self.logs()}")

    def inspect(self) -> dict[str, Any]:
        document: list[dict[str, Any]] = json.loads(self.engine.run("inspect", self.name).stdout)
        return document[0]

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until both /readyz answers 200 and the image's HEALTHCHECK reports healthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if not state["Running"]:
                raise AssertionError(f"{self.service} exited with {state['ExitCode']}:\n{self.logs()}")
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and state.get("Health", {}).get("Status") == "healthy":
                return
            time.sleep(0.3)
        raise AssertionError(f"{self.service} not ready and healthy after {timeout}s:\n{self.logs()}")

    def stop(self) -> int:
        """`docker stop`: the image's STOPSIGNAL, then SIGKILL only after the stop timeout. The exit code."""
        self.engine.run(
            "stop", "--time", str(STOP_TIMEOUT_SECONDS), self.name, timeout=STOP_TIMEOUT_SECONDS + 30
        )
        return int(self.inspect()["State"]["ExitCode"])

    def logs(self, lines: int = 40) -> str:
        done = self.engine.run("logs", "--tail", str(lines), self.name, check=False)
        return done.stdout + done.stderr

    def remove(self) -> None:
        self.engine.run("rm", "--force", self.name, check=False)
