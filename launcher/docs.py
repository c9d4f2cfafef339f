"""Generate the README's environment table from the settings table and the installed backends.

``python -m launcher.docs`` prints it; ``--write README.md`` replaces the block between the
markers. A test fails when the README and this output disagree, so the table cannot go stale.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from launcher.backend import Backend
from launcher.config.settings import SETTINGS
from launcher.launch import discovery

START, END = "<!-- env-table:start -->", "<!-- env-table:end -->"


def _backends() -> list[tuple[str, Backend]]:
    return [(info.name, discovery.load(info.name)) for info in discovery.installed()]


def env_table(backends: Sequence[tuple[str, Backend]] | None = None) -> str:
    loaded = list(backends) if backends is not None else _backends()
    names = [name for name, _ in loaded]
    rows = ["| Variable | Default | Meaning | Backends |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
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
        rows.append(f"| `{s.env}` | {default} | {s.doc} | {used} |")
    for name, b in loaded:
        for env, doc in b.extra_env.items():
            rows.append(f"| `{env}` | | {doc} | {name} |")
    return "\n".join(rows)


def replace_block(text: str, table: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: Sequence[str]) -> int:
    table = env_table()
    if len(argv) == 2 and argv[0] == "--write":
        with open(argv[1], encoding="utf-8") as f:
            text = f.read()
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(replace_block(text, table))
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
