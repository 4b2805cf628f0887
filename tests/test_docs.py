"""The docs tell the truth: generated reference tables are current, every YAML example checks, and
every command output shown is what the command prints.

Conventions for fenced blocks in ``README.md`` and ``docs/*.md`` (documented in docs/spec.md,
"Examples in these docs"). The info string starts with ``yaml``; the words after it say what the
block is:

- ``yaml``: a whole spec. ``archspec.check_text`` must report no errors and no warnings.
- ``yaml expect=E-REF,W-UNUSED``: a spec that must report exactly these error/warning codes
  (a set; notes are ignored). For examples of mistakes.
- ``yaml fragment``: part of a spec. It must load with the hardened loader
  (``archspec.load.load_text``): no duplicate keys, tags, merge keys or syntax errors.
- ``file=NAME`` (with ``yaml`` or ``yaml expect=...``): the file name used for diagnostics. If
  ``NAME`` is a file of this repository (e.g. ``specs/two_tower.yaml``), the block must be
  identical to it; otherwise ``NAME`` must be a bare file name, and the block is written under
  that name for the ``console`` blocks of the same document.

``console`` blocks: every line ``$ archspec validate ...`` is run in-process (from a scratch
directory holding the ``file=`` blocks and a link to ``specs/``), and its stdout followed by its
stderr must equal the lines below it, up to the next ``$`` line. Use ``sh`` blocks for commands
that are not checked (``make demo``).
"""

from __future__ import annotations

import glob
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from archspec import check_text
from archspec.cli import main as cli_main
from archspec.docs_gen import update_text
from archspec.errors import NOTE, SpecError
from archspec.load import load_text

from conftest import ROOT

DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPEC_MD = ROOT / "docs" / "spec.md"
_FENCE = re.compile(r"^```(.*)$")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    words: list
    body: str

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    def attr(self, key: str):
        for w in self.words:
            if w.startswith(key + "="):
                return w[len(key) + 1:]
        return None


def blocks(doc: Path) -> list[Block]:
    out, cur, buf = [], None, []
    for i, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        m = _FENCE.match(line)
        if cur is None and m:
            info = m.group(1).split()
            cur = Block(doc, i, info[0] if info else "", info[1:], "")
            buf = []
        elif cur is not None and line.strip() == "```":
            cur.body = "\n".join(buf) + "\n"
            out.append(cur)
            cur = None
        elif cur is not None:
            buf.append(line)
    assert cur is None, f"{doc}:{cur.line}: unclosed code fence"
    return out


ALL = [b for d in DOCS for b in blocks(d)]
YAML = [b for b in ALL if b.lang in ("yaml", "yml")]
CONSOLE = [b for b in ALL if b.lang == "console"]


def test_docs_have_examples():
    assert YAML and CONSOLE, "the docs lost their checked examples"


def test_generated_reference_is_up_to_date():
    text = SPEC_MD.read_text(encoding="utf-8")
    assert update_text(text) == text, "docs/spec.md is out of date: run `make docs`"


def _codes_in_source() -> set[str]:
    codes = set()
    for path in (ROOT / "src" / "archspec").rglob("*.py"):
        codes |= set(re.findall(r"""["']([EWN]-[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*)["']""", path.read_text()))
    return codes


def test_every_diagnostic_code_is_documented():
    table = {m for m in re.findall(r"^\| `([EWN]-[A-Z0-9-]+)` \|", SPEC_MD.read_text(), re.M)}
    source = _codes_in_source()
    assert source - table == set(), "add these codes to the table in docs/spec.md § Diagnostics"
    assert table - source == set(), "these documented codes no longer exist in src/archspec"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_links_resolve(doc: Path):
    """Every ``[..](#anchor)`` and ``[..](path#anchor)`` link points at a file and heading that exist."""
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        assert dest.exists(), f"{doc.name}: link to missing file {target}"
        if anchor and dest.suffix == ".md":
            seen: dict = {}
            anchors = set()
            prose = re.sub(r"^```.*?^```", "", dest.read_text(encoding="utf-8"), flags=re.M | re.S)
            for h in re.findall(r"^#{1,6} (.+)$", prose, re.M):
                slug = _slug(h)
                anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
                seen[slug] = seen.get(slug, 0) + 1
            assert anchor in anchors, f"{doc.name}: no heading for #{anchor} in {dest.name}"


@pytest.mark.parametrize("block", YAML, ids=[b.id for b in YAML])
def test_yaml_example(block: Block):
    kinds = [w for w in block.words if "=" not in w]
    attrs = {w.split("=", 1)[0] for w in block.words if "=" in w}
    assert block.lang == "yaml", f"{block.id}: write ```yaml, not ```{block.lang}"
    assert set(kinds) <= {"fragment"} and attrs <= {"file", "expect"}, \
        f"{block.id}: unknown fence words {block.words} (see this test's docstring)"
    if "fragment" in kinds:
        assert not attrs, f"{block.id}: a fragment takes no file=/expect="
        try:
            load_text(block.body, block.id)
        except SpecError as exc:
            pytest.fail(f"{block.id}: fragment does not load:\n{exc.render()}")
        return
    name = block.attr("file")
    if name and (ROOT / name).is_file():
        assert block.body == (ROOT / name).read_text(encoding="utf-8"), \
            f"{block.id}: the block differs from {name}; copy the file again"
    r = check_text(block.body, file=name or block.id)
    found = {d.code for d in r.diagnostics if d.severity != NOTE}
    expected = set(filter(None, (block.attr("expect") or "").split(",")))
    assert found == expected, f"{block.id}:\n" + "\n".join(d.render() for d in r.diagnostics)


def _runs(block: Block) -> list[tuple[str, str]]:
    runs, cmd, out = [], None, []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            if cmd is not None:
                runs.append((cmd, "\n".join(out)))
            cmd, out = line[2:], []
        else:
            assert cmd is not None, f"{block.id}: a console block starts with a `$ ` command"
            out.append(line)
    if cmd is not None:
        runs.append((cmd, "\n".join(out)))
    return runs


@pytest.mark.parametrize("block", CONSOLE, ids=[b.id for b in CONSOLE])
def test_console_example(block: Block, tmp_path, monkeypatch, capsys):
    for b in YAML:
        name = b.attr("file")
        if b.doc == block.doc and name and not (ROOT / name).is_file():
            assert "/" not in name and ".." not in name, f"{b.id}: file= must be a bare name or a repo file"
            (tmp_path / name).write_text(b.body, encoding="utf-8")
    (tmp_path / "specs").symlink_to(ROOT / "specs", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for cmd, expected in _runs(block):
        argv = shlex.split(cmd)
        assert argv[:2] == ["archspec", "validate"], f"{block.id}: only `archspec validate` is run; use ```sh"
        args = [a for arg in argv[1:] for a in (sorted(glob.glob(arg)) if "*" in arg else [arg])]
        capsys.readouterr()
        cli_main(args)
        got = capsys.readouterr()
        assert (got.out + got.err).rstrip("\n") == expected.rstrip("\n"), f"{block.id}: `{cmd}` prints"
