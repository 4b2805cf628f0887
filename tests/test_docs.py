"""The docs tell the truth: generated reference tables are current, every YAML example checks,
every command output shown is what the command prints, and every command named exists.

Conventions for fenced blocks in ``README.md`` and ``docs/*.md`` (documented in docs/spec.md,
"Examples in these docs"). The info string starts with ``yaml``; the words after it say what the
block is:

- ``yaml``: a whole spec. ``archspec.check_text`` must report no errors and no warnings.
- ``yaml expect=E-REF,W-UNUSED``: a spec that must report exactly these error/warning codes
  (a set; notes are ignored). For examples of mistakes.
- ``yaml fragment``: part of a spec. It must load with the hardened loader
  (``archspec.load.load_text``): no duplicate keys, tags, merge keys or syntax errors.
- ``yaml fragment from=PATH``: an excerpt of the repository file ``PATH``: its non-blank lines must
  be lines of that file, in the file's order (lines may be left out between them).
- ``file=NAME`` (with ``yaml`` or ``yaml expect=...``): the file name used for diagnostics. If
  ``NAME`` is a file of this repository (e.g. ``specs/two_tower.yaml``), the block must be
  identical to it; otherwise ``NAME`` must be a bare file name, and the block is written under
  that name for the ``console`` blocks of the same document.

``console`` blocks: every line ``$ archspec validate ...`` or ``$ archspec build ...`` (a summary or
``--graph``; no ``--export``/``--out``) is run in-process, and its stdout followed by its stderr
must equal the lines below it, up to the next ``$`` line. Commands run from the repository root;
in a document with bare ``file=`` blocks they run from a scratch directory that holds those files
and links to ``specs/``, ``docs/`` and ``tests/``, so the same relative paths work. Use ``sh``
blocks for commands that are not checked (``make demo``).

A fenced block right after a line ``<!-- output of: archspec ... -->`` must equal that command's
stdout, run from the repository root (the README's ``mermaid`` graph).

Every ``archspec COMMAND`` (with its ``--options``) and every ``make TARGET`` that the README
shows in code must exist in the CLI's parser and in the Makefile.
"""

from __future__ import annotations

import argparse
import glob
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from archspec import check_text
from archspec.cli import _parser as cli_parser
from archspec.cli import main as cli_main
from archspec.docs_gen import update_text
from archspec.errors import NOTE, SpecError
from archspec.load import load_text

from conftest import ROOT

DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPEC_MD = ROOT / "docs" / "spec.md"
README = ROOT / "README.md"
EXAMPLES = ROOT / "docs" / "examples"
_FENCE = re.compile(r"^```(.*)$")
_OUTPUT_OF = re.compile(r"^<!-- output of: (archspec .+?) -->$")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    words: list
    body: str
    before: str = ""  # the line right before the opening fence

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    def attr(self, key: str):
        for w in self.words:
            if w.startswith(key + "="):
                return w[len(key) + 1:]
        return None


def blocks(doc: Path) -> list[Block]:
    out, cur, buf, prev = [], None, [], ""
    for i, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        m = _FENCE.match(line)
        if cur is None and m:
            info = m.group(1).split()
            cur = Block(doc, i, info[0] if info else "", info[1:], "", prev.strip())
            buf = []
        elif cur is not None and line.strip() == "```":
            cur.body = "\n".join(buf) + "\n"
            out.append(cur)
            cur = None
        elif cur is not None:
            buf.append(line)
        prev = line
    assert cur is None, f"{doc}:{cur.line}: unclosed code fence"
    return out


ALL = [b for d in DOCS for b in blocks(d)]
YAML = [b for b in ALL if b.lang in ("yaml", "yml")]
CONSOLE = [b for b in ALL if b.lang == "console"]
GENERATED = [b for b in ALL if _OUTPUT_OF.match(b.before)]


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
    assert set(kinds) <= {"fragment"} and attrs <= {"file", "expect", "from"}, \
        f"{block.id}: unknown fence words {block.words} (see this test's docstring)"
    if "fragment" in kinds:
        assert attrs <= {"from"}, f"{block.id}: a fragment takes no file=/expect= (from= names its source)"
        try:
            load_text(block.body, block.id)
        except SpecError as exc:
            pytest.fail(f"{block.id}: fragment does not load:\n{exc.render()}")
        if block.attr("from"):
            _assert_excerpt(block, block.attr("from"))
        return
    assert "from" not in attrs, f"{block.id}: from= is for fragments; a whole spec uses file="
    name = block.attr("file")
    if name and (ROOT / name).is_file():
        assert block.body == (ROOT / name).read_text(encoding="utf-8"), \
            f"{block.id}: the block differs from {name}; copy the file again"
    r = check_text(block.body, file=name or block.id)
    found = {d.code for d in r.diagnostics if d.severity != NOTE}
    expected = set(filter(None, (block.attr("expect") or "").split(",")))
    assert found == expected, f"{block.id}:\n" + "\n".join(d.render() for d in r.diagnostics)


def _assert_excerpt(block: Block, source: str) -> None:
    """The block's non-blank lines are lines of ``source``, in order (a subsequence)."""
    path = ROOT / source
    assert path.is_file() and ROOT in path.resolve().parents, f"{block.id}: from={source} is not a repository file"
    lines = [ln.rstrip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    pos = 0
    for ln in (ln.rstrip() for ln in block.body.splitlines() if ln.strip()):
        try:
            pos = lines.index(ln, pos) + 1
        except ValueError:
            pytest.fail(f"{block.id}: this line is not in {source} (after the lines before it): {ln!r} — "
                        "copy the excerpt from the file again")


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


def _checked_argv(cmd: str, where: str) -> list[str]:
    """The arguments of a documented command that the tests run: `archspec validate` or `build`."""
    argv = shlex.split(cmd)
    assert argv[:1] == ["archspec"] and argv[1:2] in (["validate"], ["build"]), \
        f"{where}: only `archspec validate` and `archspec build` are run; use ```sh for `{cmd}`"
    assert not {"--export", "--out"} & set(argv), f"{where}: `{cmd}` writes files; show it in ```sh"
    return [a for arg in argv[1:] for a in (sorted(glob.glob(arg)) if "*" in arg else [arg])]


@pytest.mark.parametrize("block", CONSOLE, ids=[b.id for b in CONSOLE])
def test_console_example(block: Block, tmp_path, monkeypatch, capsys):
    scratch = False
    for b in YAML:
        name = b.attr("file")
        if b.doc == block.doc and name and not (ROOT / name).is_file():
            assert "/" not in name and ".." not in name, f"{b.id}: file= must be a bare name or a repo file"
            (tmp_path / name).write_text(b.body, encoding="utf-8")
            scratch = True
    if scratch:
        for folder in ("specs", "docs", "tests"):
            (tmp_path / folder).symlink_to(ROOT / folder, target_is_directory=True)
    monkeypatch.chdir(tmp_path if scratch else ROOT)
    for cmd, expected in _runs(block):
        args = _checked_argv(cmd, block.id)
        capsys.readouterr()
        cli_main(args)
        got = capsys.readouterr()
        assert (got.out + got.err).rstrip("\n") == expected.rstrip("\n"), f"{block.id}: `{cmd}` prints"


# --------------------------------------------------------------------------- generated blocks
@pytest.mark.parametrize("block", GENERATED, ids=[b.id for b in GENERATED])
def test_generated_block_is_current(block: Block, monkeypatch, capsys):
    """A block after ``<!-- output of: archspec ... -->`` is exactly what that command prints."""
    cmd = _OUTPUT_OF.match(block.before).group(1)
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    assert cli_main(_checked_argv(cmd, block.id)) == 0
    got = capsys.readouterr().out
    assert block.body.rstrip("\n") == got.rstrip("\n"), \
        f"{block.id}: out of date — paste the output of `{cmd}` again"


def test_readme_shows_the_hybrid_fusion_graph():
    """The front page's picture is the hybrid-fusion spec drawn by `archspec build --graph mermaid`."""
    pictures = [b for b in GENERATED if b.doc == README and b.lang == "mermaid"]
    assert [_OUTPUT_OF.match(b.before).group(1) for b in pictures] == \
        ["archspec build specs/hybrid_fusion.yaml --graph mermaid"]


# --------------------------------------------------------------------------- docs/examples
def test_every_example_file_is_shown():
    """Each file in docs/examples/ is shown (``file=``) and run (``console``) by some page."""
    shown = {b.attr("file") for b in YAML if b.attr("file")}
    run = " ".join(b.body for b in CONSOLE)
    files = sorted(p.relative_to(ROOT).as_posix() for p in EXAMPLES.glob("*") if p.is_file())
    assert files, "docs/examples/ is empty"
    for name in files:
        assert name in shown, f"{name} is not shown in a ```yaml file={name} block"
        assert name in run, f"{name} is not run in a ```console block"


# --------------------------------------------------------------------------- README commands exist
# Make targets the README may name before they exist, with who adds them. Each is an expected
# failure until the target lands; then the strict xfail fails: delete its entry here.
PENDING_TARGETS = set()


def _code_texts(doc: Path) -> list[str]:
    """Inline code spans and the lines of ``sh``/``console`` blocks: where commands are written."""
    texts = []
    for b in blocks(doc):
        if b.lang not in ("sh", "console", "bash", "shell"):
            continue
        for ln in b.body.splitlines():
            if ln[:1].isspace() and texts:  # an indented line continues the command above
                texts[-1] += " " + ln.strip()
            else:
                texts.append(ln[2:] if ln.startswith("$ ") else ln)
    prose = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.M | re.S)
    texts += re.findall(r"`([^`\n]+)`", prose)
    return texts


def _segments(text: str) -> list[str]:
    """A shell line without its comment, split at ``&&``, ``||``, `` | `` and ``;`` (one command
    each). A ``|`` between words (``--format text|json``) is a usage line's alternative, not a pipe."""
    text = re.sub(r"(?:^|\s)#.*$", "", text)
    return [s.strip() for s in re.split(r"&&|\|\||\s\|\s|;", text) if s.strip()]


def readme_commands() -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``((command, subcommand...), (--options...))`` for every ``archspec ...`` the README shows."""
    found = set()
    for text in _code_texts(README):
        for seg in _segments(text):
            m = re.search(r"(?:^|[\s/])archspec((?:\s+[a-z][a-z-]*(?=\s|$))+)?(.*)$", seg)
            if not m or not m.group(1):
                continue
            words = m.group(1).split()
            options = tuple(sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", m.group(2) or ""))))
            found.add((tuple(words), options))
    return sorted(found)


def readme_targets() -> list[str]:
    found = set()
    for text in _code_texts(README):
        for seg in _segments(text):
            found |= set(re.findall(r"(?:^|\s)make\s+([a-z][\w-]*)", seg))
    return sorted(found)


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_readme_names_commands_and_targets():
    commands = {c[0][0] for c in readme_commands()}
    assert set(_subparsers(cli_parser())) <= commands, "the README's CLI reference misses a command"
    assert {"demo", "test"} <= set(readme_targets())


@pytest.mark.parametrize("words,options", readme_commands(),
                         ids=[" ".join(w + o) for w, o in readme_commands()])
def test_readme_command_exists(words, options):
    """``archspec CMD [SUB] --opt``: CMD (and SUB) are in the parser, and so is each option."""
    parser = cli_parser()
    for i, word in enumerate(words):
        choices = _subparsers(parser)
        if not choices:
            break  # the rest are arguments (a spec name, `list`-like values of a positional)
        assert word in choices, f"README shows `archspec {' '.join(words[:i + 1])}`, which the CLI does not have"
        parser = choices[word]
    known = set(parser._option_string_actions) | {"--version"}
    missing = set(options) - known
    assert not missing, f"README shows `archspec {' '.join(words)}` with {sorted(missing)}, which it does not take"


def test_readme_spec_table_counts():
    """The README's table of shipped specs gives each spec's true node and prediction counts."""
    from archspec import check_file

    rows = re.findall(r"^\| \[`([\w.]+\.yaml)`\]\(specs/\1\) \|[^|]*\| (\d+) / (\d+) \|",
                      README.read_text(encoding="utf-8"), re.M)
    assert sorted(r[0] for r in rows) == sorted(p.name for p in (ROOT / "specs").glob("*.yaml")), \
        "the README's table of specs does not list exactly the specs in specs/"
    for name, nodes, preds in rows:
        r = check_file(ROOT / "specs" / name)
        assert r.ok(), name
        assert (len(r.graph.nodes), len(r.graph.predictions())) == (int(nodes), int(preds)), \
            f"README: {name} has {len(r.graph.nodes)} nodes / {len(r.graph.predictions())} predictions"


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m for line in text.splitlines() for m in re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line)}


@pytest.mark.parametrize("target", [
    pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=PENDING_TARGETS[t])) if t in PENDING_TARGETS else t
    for t in readme_targets()])
def test_readme_make_target_exists(target):
    assert target in _makefile_targets(), f"README shows `make {target}`, which the Makefile does not have"
