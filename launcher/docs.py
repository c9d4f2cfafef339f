"""Generate the documentation's tables from what they describe, so they cannot go stale.

* ``env-table``: every variable and its option, by group, from the settings table and the
  installed backends (docs/configuration.md);
* ``common-variables``: the README's ten (``COMMON``);
* ``plugin-surface``: what a plugin may import, from the ``__all__`` of ``launcher``,
  ``launcher.master``, ``launcher.worker`` and ``launcher.worker.h11_head`` (each name with the
  first line of its docstring; docs/plugins.md);
* ``kit-attributes``: the conformance kit's class attributes and what each means, from their
  comments in ``launcher.testing.conformance`` (docs/plugins.md).

``python -m launcher.docs BLOCK`` prints one; ``--write FILE...`` replaces every block of each
FILE found between its ``<!-- BLOCK:start -->`` and ``<!-- BLOCK:end -->`` markers. A test fails
when a file and this output disagree.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Sequence

from launcher.backend import Backend
from launcher.config.settings import BY_ENV, GROUPS, SETTINGS, Setting
from launcher.launch import discovery

#: The plugin surface, by who uses it: module -> who imports from it.
SURFACES = {
    "launcher": "the contract: the launcher and every plugin",
    "launcher.master": "a plugin's master",
    "launcher.worker": "a plugin's worker",
    "launcher.worker.h11_head": "a plugin's worker whose server parses HTTP/1.1 with h11",
}


def _backends() -> list[tuple[str, Backend]]:
    return [(info.name, discovery.load(info.name)) for info in discovery.installed()]


def _option(setting: Setting) -> str:
    return ", ".join(f"`{flag.partition('=')[0]}`" for flag in setting.flags)


def env_table(backends: Sequence[tuple[str, Backend]] | None = None) -> str:
    """Every variable and its option, one table per group (``GROUPS``, as ``--help`` has them),
    then the variables of the installed backends."""
    loaded = list(backends) if backends is not None else _backends()
    names = [name for name, _ in loaded]
    head = ["| Variable | Option | Default | Meaning | Backends |", "| --- | --- | --- | --- | --- |"]
    parts: list[str] = []
    for group in GROUPS:
        rows = [f"### {group}", "", *head]
        for s in (s for s in SETTINGS if s.group == group):
            unused = [name for name, b in loaded if s.feeds in b.unsupported]
            used = (
                "all"
                if not unused
                else ", ".join(n for n in names if n not in unused) + " (unused by " + ", ".join(unused) + ")"
            )
            default = s.default_doc
            if s.env == "WORKER_CLASS":
                default = "; ".join(
                    f"{n}: `{b.default_worker_class}`" for n, b in loaded if b.default_worker_class
                )
            rows.append(f"| `{s.env}` | {_option(s)} | {default} | {s.doc} | {used} |")
        parts.append("\n".join(rows))
    rows = [
        "### The backends' own",
        "",
        "| Variable | Default | Meaning | Backend |",
        "| --- | --- | --- | --- |",
    ]
    for name, b in loaded:
        for env, doc in b.extra_env.items():
            rows.append(f"| `{env}` | | {doc} | {name} |")
    parts.append("\n".join(rows))
    return "\n\n".join(parts)


#: The README's short table: the variables people set most.
COMMON = (
    "APP_MODULE",
    "PORT",
    "BIND",
    "WEB_CONCURRENCY",
    "WORKERS_PER_CORE",
    "SERVER_BACKEND",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "FORWARDED_ALLOW_IPS",
    "OPS_PORT",
)


def common_table() -> str:
    rows = ["| Variable | Option | Default | Meaning |", "| --- | --- | --- | --- |"]
    for name in COMMON:
        s = BY_ENV[name]
        rows.append(f"| `{s.env}` | {_option(s).split(', ')[0]} | {s.default_doc} | {s.doc} |")
    return "\n".join(rows)


def _what(value: object) -> str:
    if inspect.isclass(value) or inspect.isroutine(value):
        doc = inspect.getdoc(value) or ""
        return " ".join(doc.split("\n\n", 1)[0].split())
    return f"`{value!r}`"


def surface_table() -> str:
    rows = ["| Import | For | What it is |", "| --- | --- | --- |"]
    for module_name, who in SURFACES.items():
        module = importlib.import_module(module_name)
        for name in sorted(module.__all__, key=str.lower):
            if name == "__version__":
                continue
            rows.append(f"| `from {module_name} import {name}` | {who} | {_what(getattr(module, name))} |")
    return "\n".join(rows)


#: A class attribute of the conformance kit with its ``#:`` comment (read from the source, so
#: that listing the kit's knobs does not import pytest).
_KNOB = re.compile(r"((?:[ ]{4}#:.*\n)+)[ ]{4}(\w+): ClassVar\[(\w+)\] = (.+)\n")


def kit_table() -> str:
    """The conformance kit's class attributes: each one's default and its ``#:`` comment."""
    spec = importlib.util.find_spec("launcher.testing.conformance")
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as f:
        source = f.read()
    rows = ["| Attribute | Default | Meaning |", "| --- | --- | --- |"]
    for comment, name, _, default in _KNOB.findall(source):
        meaning = " ".join(line.strip()[2:].strip() for line in comment.splitlines())
        rows.append(f"| `{name}` | `{default.strip()}` | {meaning} |")
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "env-table": env_table,
    "common-variables": common_table,
    "plugin-surface": surface_table,
    "kit-attributes": kit_table,
}


def markers(block: str) -> tuple[str, str]:
    return f"<!-- {block}:start -->", f"<!-- {block}:end -->"


def block_in(text: str, block: str) -> str | None:
    """The text between ``block``'s markers (None: the file has no such block)."""
    start, end = markers(block)
    if start not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def replace_block(text: str, block: str, table: str) -> str:
    start, end = markers(block)
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{table}\n{end}{tail}"


def main(argv: Sequence[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--write":
        for path in argv[1:]:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for block, make in BLOCKS.items():
                if block_in(text, block) is not None:
                    text = replace_block(text, block, make())
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return 0
    if len(argv) == 1 and argv[0] in BLOCKS:
        print(BLOCKS[argv[0]]())
        return 0
    print(f"usage: python -m launcher.docs {{{','.join(BLOCKS)}}} | --write FILE...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
