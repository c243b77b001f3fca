"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: NUL-separated JSON
messages, commands on the browser's descriptor 3, answers and events on 4), so the tests need no websocket
library: they see the page's console, its errors, every request it makes, the DOM and a screenshot."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 60


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Browser:
    def __init__(self, binary: str, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def on_descriptors_3_and_4() -> None:
            read, write = os.dup(commands_read), os.dup(answers_write)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=on_descriptors_3_and_4, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands_read)
        os.close(answers_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, session: str) -> dict:
        """The first event `method` of the tab `session` (other tabs' events are kept, not taken)."""
        deadline = time.monotonic() + TIMEOUT_S
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return event

    def close(self) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._answers)


class LoadedPage:
    """A file opened in a fresh tab at `width` x `height`, watched from before its first byte."""

    def __init__(self, browser: Browser, url: str, width: int = 1280, height: int = 900, scripts: bool = True) -> None:
        self.browser = browser
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", self.session)
        browser.send(
            "Emulation.setDeviceMetricsOverride", self.session, width=width, height=height, deviceScaleFactor=1,
            mobile=False,
        )  # fmt: skip
        if not scripts:
            browser.send("Emulation.setScriptExecutionDisabled", self.session, value=True)
        browser.send("Page.navigate", self.session, url=url)
        browser.wait_for("Page.loadEventFired", self.session)
        if scripts:
            self.evaluate("new Promise(done => requestAnimationFrame(() => setTimeout(done, 100)))")

    @property
    def dialogs(self) -> list[str]:
        return [p["message"] for p in self._events("Page.javascriptDialogOpening")]

    def evaluate(self, expression: str):
        result = self.browser.send(
            "Runtime.evaluate", self.session, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _events(self, method: str) -> list[dict]:
        return [
            e["params"] for e in self.browser.events if e.get("method") == method and e.get("sessionId") == self.session
        ]

    @property
    def console_errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and the browser's own error log (CSP violations)."""
        console = [
            " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            for p in self._events("Runtime.consoleAPICalled")
            if p["type"] in ("error", "warning", "assert")
        ]
        exceptions = [p["exceptionDetails"].get("text", "") for p in self._events("Runtime.exceptionThrown")]
        log = [
            p["entry"]["text"] for p in self._events("Log.entryAdded") if p["entry"]["level"] in ("error", "warning")
        ]
        return console + exceptions + log

    @property
    def requests(self) -> list[str]:
        return [p["request"]["url"] for p in self._events("Network.requestWillBeSent")]

    def screenshot(self) -> bytes:
        height = self.evaluate("document.documentElement.scrollHeight")
        shot = self.browser.send(
            "Page.captureScreenshot", self.session, format="png", captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": min(height, 16000), "scale": 1},
        )  # fmt: skip
        return base64.b64decode(shot["data"])
