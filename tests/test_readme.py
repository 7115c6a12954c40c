"""Every curl example of README.md, run in README order against one fresh server, gives
the output the README shows.

The convention in README.md:

- A ```console block holds examples: a line `$ command` starts a command, which goes on
  over the next lines until bash would take it as complete (open quotes, a trailing
  backslash); the lines up to the next `$ ` are its output. A ```console block without
  `$ ` lines is output that a running command (below) prints later.
- A ```sh block that calls curl is a script (the consumer loop); it runs as one command.
- A command runs in the background when it is a stream (`curl -N`) or its output is not
  shown where it is typed (a long poll, the consumer loop): the test reads its output
  until it is what the README shows, goes on with the next commands while it runs, and
  reads the next output-only block from it. It is stopped when the next background
  command starts, or at the end; what it printed beyond the README's output by then
  fails the test.
- `localhost:8000` is replaced by the test server's address.

Before comparing, both sides are normalised, narrowly (`normalise`): CRLF becomes LF;
blank lines at the start and end are dropped; `recorded_at`, `created_at` and
`updated_at` timestamps and 32-digit hex `x-request-id` values become placeholders; the
headers of a `curl -i` answer compare as a set, after the three the README says it
leaves out (`OMITTED_HEADERS`) are removed from the server's answer. Everything else
(status lines, every other header and its value, bodies byte for byte) must be equal.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import Server, running_servers

README = Path(__file__).resolve().parents[1] / "README.md"
OMITTED_HEADERS = ("date", "server", "content-length")
READ_SECONDS = 15.0  # a live checkpoint comes within live_checkpoint_seconds (5)
COMMAND_SECONDS = 30.0
TIMESTAMP = re.compile(
    r'"(recorded_at|created_at|updated_at)":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"'
)
REQUEST_ID = re.compile(r"^(x-request-id): [0-9a-f]{32}$", re.IGNORECASE)


@dataclass
class Example:
    line: int  # in README.md, 1-based
    command: str | None  # None: an output-only block, continuing a background command
    output: str

    @property
    def background(self) -> bool:
        assert self.command is not None
        return bool(re.search(r"\bcurl\b[^|;&]* -N\b", self.command)) or not self.output


def is_complete(command: str) -> bool:
    if command.endswith("\\"):
        return False
    checked = subprocess.run(["bash", "-n", "-c", command], capture_output=True)
    return checked.returncode == 0


def console_examples(lines: list[str], first: int) -> Iterator[Example]:
    if not any(line.startswith("$ ") for line in lines):
        yield Example(first, None, "\n".join(lines))
        return
    assert lines[0].startswith("$ "), f"README.md:{first}: output before the first command"
    i = 0
    while i < len(lines):
        start, command = i, [lines[i][2:]]
        i += 1
        while not is_complete("\n".join(command)):
            assert i < len(lines), f"README.md:{first + start}: the command never ends"
            command.append(lines[i])
            i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        yield Example(first + start, "\n".join(command), "\n".join(output).strip("\n"))


def readme_examples(text: str) -> list[Example]:
    """The examples in README order; fails on a block that mentions curl but is neither."""
    examples: list[Example] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        info, start = lines[i][3:].strip(), i + 1
        end = lines.index("```", start)
        body = lines[start:end]
        if info == "console":
            examples.extend(console_examples(body, start + 1))
        elif info == "sh" and any(re.search(r"\bcurl\b", line) for line in body):
            assert not any(line.startswith("$ ") for line in body), (
                f"README.md:{start}: a ```sh block with `$ ` prompts; make it ```console"
            )
            examples.append(Example(start + 1, "\n".join(body), ""))
        else:
            assert not any("curl" in line for line in body), (
                f"README.md:{start}: a ```{info} block calls curl; make it ```console"
            )
        i = end + 1
    return examples


def normalise(text: str, *, served: bool = False) -> str:
    """See the module docstring; `served` drops OMITTED_HEADERS (the server's side)."""
    lines = text.replace("\r\n", "\n").strip("\n").split("\n")
    if lines[0].startswith("HTTP/"):
        end = lines.index("") if "" in lines else len(lines)
        headers = [REQUEST_ID.sub(r"\1: <request-id>", line) for line in lines[1:end]]
        if served:
            headers = [h for h in headers if h.split(":")[0].lower() not in OMITTED_HEADERS]
        lines = [lines[0], *sorted(headers), *lines[end:]]
    return TIMESTAMP.sub(r'"\1":"<timestamp>"', "\n".join(lines))


class Background:
    """A command left running; a thread collects what it prints."""

    def __init__(self, command: str) -> None:
        self.process = subprocess.Popen(
            ["bash", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # so that stop() ends the whole pipeline
        )
        self.output = b""
        self.read = 0  # how much of output the README has accounted for
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        while chunk := os.read(self.process.stdout.fileno(), 65536):
            with self.changed:
                self.output += chunk
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def expect(self, expected: str, where: str) -> None:
        """Wait (bounded) until what came after the last match is `expected`."""
        want = normalise(expected)
        deadline = time.monotonic() + READ_SECONDS
        with self.changed:
            while True:
                got = self.output[self.read :].decode(errors="replace")
                if normalise(got, served=True) == want:
                    self.read = len(self.output)
                    return
                left = deadline - time.monotonic()
                if left <= 0 or not self.reader.is_alive():
                    break
                self.changed.wait(left)
        assert normalise(got, served=True) == want, where

    def stop(self) -> str:
        """End it; what it printed that the README does not show."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=COMMAND_SECONDS)
        self.reader.join(timeout=COMMAND_SECONDS)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return normalise(self.output[self.read :].decode(errors="replace"), served=True)


def run_in_order(examples: list[Example], server: Server) -> None:
    address = server.url.removeprefix("http://")
    running: Background | None = None
    try:
        for example in examples:
            where = f"README.md:{example.line}"
            if example.command is None:
                assert running is not None, f"{where}: continues no running command"
                running.expect(example.output, where)
                continue
            command = example.command.replace("localhost:8000", address)
            if example.background:
                if running is not None:
                    previous, running = running, None
                    assert previous.stop() == "", f"{where}: the previous command printed more"
                running = Background(command)
                running.expect(example.output, f"{where}: {example.command}")
                continue
            done = subprocess.run(
                ["bash", "-c", command], capture_output=True, timeout=COMMAND_SECONDS
            )
            assert done.returncode == 0, f"{where}: {example.command}\n{done.stderr.decode()}"
            served = normalise(done.stdout.decode(), served=True)
            assert served == normalise(example.output), f"{where}: {example.command}"
        last, running = running, None
        if last is not None:
            assert last.stop() == "", "the last background command printed more"
    finally:
        if running is not None:
            running.stop()


def test_readme_says_which_headers_are_left_out() -> None:
    names = [f"`{name}`" for name in OMITTED_HEADERS]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    text = " ".join(README.read_text(encoding="utf-8").split())  # lines wrap anywhere
    assert f"the {listed} headers are left out" in text


def test_normalise_keeps_what_must_not_vary() -> None:
    readme = 'HTTP/1.1 200 OK\netag: "2"\nx-request-id: ' + "a" * 32 + "\n\n{}"
    served = "HTTP/1.1 200 OK\r\ndate: x\r\nx-request-id: " + "b" * 32 + '\r\netag: "2"\r\n\r\n{}'
    assert normalise(served, served=True) == normalise(readme)
    for wrong in (
        served.replace("200 OK", "201 Created"),  # the status
        served.replace('etag: "2"', 'etag: "3"'),  # a header's value
        served.replace("\r\netag", "\r\nlocation: /x\r\netag"),  # an extra header
        served.replace('etag: "2"\r\n', ""),  # a missing header
        served.replace("{}", '{"a":1}'),  # the body
    ):
        assert normalise(wrong, served=True) != normalise(readme)
    stamp = '{"recorded_at":"2026-11-26T18:15:59.522504Z","version":1}'
    assert normalise(stamp) == normalise(stamp.replace("18:15:59.522504", "09:00:00.1"))
    assert normalise(stamp) != normalise(stamp.replace('"version":1', '"version":2'))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_curl_example_gives_the_readme_output(database_url: str, tmp_path: Path) -> None:
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    if missing:
        message = f"the README's examples need {' and '.join(missing)}"
        if os.environ.get("CI"):  # .ci/run installs them: never skipped there
            pytest.fail(message)
        pytest.skip(message)
    examples = readme_examples(README.read_text(encoding="utf-8"))
    assert len([e for e in examples if e.command is not None]) >= 40
    with running_servers(database_url, tmp_path) as (server,):
        run_in_order(examples, server)
