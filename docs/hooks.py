"""MkDocs hook: pages show the code, flags, metrics, tests and results of the repository itself, never copies.

A line of a page that reads `{{ DIRECTIVE ARGUMENTS }}` (alone on its line, outside code fences) is replaced at
build time by what the repository holds now, so a page cannot drift from the files it describes:

    {{ code algos/mi_pg.py kl_joint_to_product }}     a top-level function or class, found with Python's ast
    {{ code algos/mi_pg.py DecentralizedActor.forward }}   a method (or a function nested in a function)
    {{ code algos/mi_pg.py banner:the loss }}          from a banner comment `# ----- the loss -----` (or `# ===`)
                                                      to the next banner at the same or a lower indentation
    {{ code algos/mi_pg.py shared:args }}              between `# >>> shared:args` and `# <<< shared:args`
    {{ flags algos/mi_pg.py }}                         the script's own flags (Args fields outside the shared
                                                      block): name, default, help text
    {{ metrics algos/mi_pg.py }}                       every tag the script logs (its writer.add_scalar calls),
                                                      one line each, described in docs/metrics.yml
    - {{ test tests/test_qtran.py::test_utility_sum_and_greedy_actions }}   a test's name and docstring (a list
                                                      item may hold a directive that renders one line)
    {{ results benchmarks/results/matrix_games.md mi_pg }}   the rows of one algorithm (and its variants,
                                                      `mi_pg:...`) from every table of a results file

Anything that is not found (a file, a function, a banner, a test, a metric without a description, rows for an
algorithm) stops the build with an error naming the page and the directive. The hook also publishes
benchmarks/figures/*.png as figures/*.png, so pages show the figures the benchmarks drew, and lists the pages in
OPTIONAL_PAGES in the nav when their files exist.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import yaml
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^(?P<bullet>\s*(?:[-*]|\d+\.)\s+)?\{\{\s*(?P<body>.*?)\s*\}\}\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
BANNER = re.compile(r"^(?P<indent>\s*)#\s*(?:=|-){3,}\s*(?P<title>.*?)\s*(?:=|-){3,}\s*$")
SHARED_OPEN, SHARED_CLOSE = "# >>> shared:", "# <<< shared:"


# ============================ reading the repository ============================
def read_source(relpath: str) -> tuple[str, list[str]]:
    path = ROOT / relpath
    if not path.is_file():
        raise LookupError(f"no file {relpath}")
    text = path.read_text()
    return text, text.splitlines()


def node_span(node: ast.AST) -> tuple[int, int]:
    """1-based first and last line of a def/class, decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first, node.end_lineno


def find_definition(tree: ast.Module, dotted: str) -> ast.AST:
    scope: list[ast.stmt] = tree.body
    node = None
    for part in dotted.split("."):
        matches = [n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                   and n.name == part]
        if not matches:
            raise LookupError(f"no function or class `{dotted}`")
        node = matches[0]
        scope = node.body
    return node


def banner_span(lines: list[str], title: str) -> tuple[int, int]:
    """The lines from the banner whose title starts with `title` to just before the section ends."""
    hits = [i for i, line in enumerate(lines) if (m := BANNER.match(line)) and m["title"].startswith(title)]
    if len(hits) != 1:
        found = "no" if not hits else f"{len(hits)}"
        raise LookupError(f"{found} banner comment whose title starts with {title!r}")
    start = hits[0]
    indent = len(BANNER.match(lines[start])["indent"])
    end = len(lines)
    for j in range(start + 1, len(lines)):
        line = lines[j]
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if (m := BANNER.match(line)) and len(m["indent"]) <= indent:
            end = j
            break
        if depth < indent and not line.lstrip().startswith("#"):
            end = j  # the enclosing block ended
            break
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start + 1, end


def shared_span(lines: list[str], name: str) -> tuple[int, int]:
    opens = [i for i, line in enumerate(lines) if line.strip().startswith(f"{SHARED_OPEN}{name}")
             and line.strip()[len(SHARED_OPEN) + len(name):][:1] in ("", " ")]
    closes = [i for i, line in enumerate(lines) if line.strip() == f"{SHARED_CLOSE}{name}"]
    if len(opens) != 1 or len(closes) != 1 or closes[0] < opens[0]:
        raise LookupError(f"no single `{SHARED_OPEN}{name}` ... `{SHARED_CLOSE}{name}` block")
    return opens[0] + 1, closes[0] + 1


def code_block(relpath: str, selector: str) -> str:
    text, lines = read_source(relpath)
    if selector.startswith("banner:"):
        first, last = banner_span(lines, selector[len("banner:"):].strip())
    elif selector.startswith("shared:"):
        first, last = shared_span(lines, selector[len("shared:"):].strip())
    else:
        first, last = node_span(find_definition(ast.parse(text), selector))
    body = "\n".join(lines[first - 1:last])
    title = f"{relpath}, lines {first}-{last}"
    return f'```python title="{title}" linenums="{first}"\n{body}\n```'


# ---------------- flags ----------------
def shared_lines(lines: list[str]) -> set[int]:
    """1-based line numbers inside any `# >>> shared:` block."""
    inside, result = False, set()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith(SHARED_OPEN):
            inside = True
        elif stripped.startswith(SHARED_CLOSE):
            inside = False
        elif inside:
            result.add(number)
    return result


def flags_table(relpath: str) -> str:
    text, lines = read_source(relpath)
    args = find_definition(ast.parse(text), "Args")
    shared = shared_lines(lines)
    rows = []
    for k, node in enumerate(args.body):
        if not isinstance(node, ast.AnnAssign) or node.lineno in shared:
            continue
        if "Suppress" in ast.get_source_segment(text, node.annotation):  # hidden from the command line
            continue
        name = node.target.id
        default = ast.get_source_segment(text, node.value) if node.value is not None else ""
        doc = ""
        if k + 1 < len(args.body) and isinstance(args.body[k + 1], ast.Expr) \
                and isinstance(args.body[k + 1].value, ast.Constant) and isinstance(args.body[k + 1].value.value, str):
            doc = " ".join(args.body[k + 1].value.value.split())
        flag = "--" + name.replace("_", "-")
        rows.append(f"| `{flag}` | `{default}` | {doc.replace('|', '&#124;')} |")
    if not rows:
        raise LookupError("no algorithm-specific flags in Args (outside the shared block)")
    return "\n".join(["| flag | default | what it does |", "|---|---|---|", *rows])


# ---------------- metrics ----------------
def tag_text(node: ast.AST, text: str) -> str:
    """The tag as written: a string constant, or an f-string with its {expressions} kept."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append("{" + ast.get_source_segment(text, value.value) + "}")
        return "".join(parts)
    return "{" + ast.get_source_segment(text, node) + "}"


def logged_tags(relpath: str) -> list[str]:
    text, _ = read_source(relpath)
    calls = sorted((node.lineno, tag_text(node.args[0], text)) for node in ast.walk(ast.parse(text))
                   if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                   and node.func.attr == "add_scalar" and node.args)
    return list(dict.fromkeys(tag for _, tag in calls))  # in the order of the file, each once


def evaluator_names(relpath: str) -> list[str]:
    """The policy names a script hands its Evaluator (the `{name}` of its eval/{name} tags), if it has one."""
    text, _ = read_source(relpath)
    names = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Evaluator":
            for arg in node.args:  # the dict's keys, and those of dicts unpacked into it (`**({...} if ... else {})`)
                for inner in ast.walk(arg) if isinstance(arg, ast.Dict) else ():
                    if isinstance(inner, ast.Dict):
                        names += [k.value for k in inner.keys if isinstance(k, ast.Constant)]
    return names


def load_descriptions() -> dict:
    return yaml.safe_load((ROOT / "docs" / "metrics.yml").read_text())


def metrics_list(relpath: str) -> str:
    descriptions = load_descriptions()
    script = Path(relpath).stem
    lines = []
    for tag in logged_tags(relpath):
        description = descriptions.get(f"{script}:{tag}") or descriptions.get(tag)
        if not description:
            raise LookupError(f"the tag `{tag}` has no description in docs/metrics.yml "
                              f"(key `{tag}` or `{script}:{tag}`)")
        lines.append(f"- `{tag}`: {' '.join(description.split())}")
    names = evaluator_names(relpath)
    if names:
        lines.append("")
        lines.append("The evaluated policies (`{name}` above):")
        lines.append("")
        for name in names:
            description = descriptions.get(f"{script}:eval:{name}") or descriptions.get(f"eval:{name}")
            if not description:
                raise LookupError(f"the evaluated policy `{name}` has no description in docs/metrics.yml")
            lines.append(f"- `{name}`: {' '.join(description.split())}")
    return "\n".join(lines)


# ---------------- tests ----------------
def test_entry(spec: str) -> str:
    relpath, _, name = spec.partition("::")
    text, _ = read_source(relpath)
    node = find_definition(ast.parse(text), name)
    doc = ast.get_docstring(node) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    first_line = node_span(node)[0]
    return f"`{relpath}::{name}` (line {first_line})" + (f": {first}" if first else "")


# ---------------- results ----------------
def results_rows(relpath: str, algo: str) -> str:
    _, lines = read_source(relpath)
    out, table = [], []

    def flush():
        if len(table) > 2:
            rows = [row for row in table[2:] if re.match(rf"^\|\s*{re.escape(algo)}(:[^|]*)?\s*\|", row)]
            if rows:
                out.append("\n".join(table[:2] + rows))
        table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append(line)
        else:
            flush()
    flush()
    if not out:
        raise LookupError(f"no table row for `{algo}`")
    return "\n\n".join(out)


# ============================ the hook ============================
def render(body: str) -> str:
    words = shlex.split(body)
    if not words:
        raise LookupError("empty directive")
    kind, rest = words[0], words[1:]
    if kind == "code" and len(rest) >= 2:
        return code_block(rest[0], " ".join(rest[1:]))
    if kind == "flags" and len(rest) == 1:
        return flags_table(rest[0])
    if kind == "metrics" and len(rest) == 1:
        return metrics_list(rest[0])
    if kind == "test" and len(rest) == 1:
        return test_entry(rest[0])
    if kind == "results" and len(rest) == 2:
        return results_rows(rest[0], rest[1])
    raise LookupError("unknown directive; expected code, flags, metrics, test or results with their arguments")


def on_page_markdown(markdown: str, page, config, files) -> str:
    out, in_fence = [], False
    for number, line in enumerate(markdown.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else DIRECTIVE.match(line)
        if match is None:
            out.append(line)
            continue
        try:
            out.append((match["bullet"] or "") + render(match["body"]))
        except (LookupError, SyntaxError, ValueError, yaml.YAMLError) as err:
            raise PluginError(f"{page.file.src_uri}, line {number}: {{{{ {match['body']} }}}}: {err}") from None
    return "\n".join(out) + "\n"


# pages other engineers write: listed in the nav (after the Tests page) when the file is there
OPTIONAL_PAGES = {"Sweeps": "sweeps.md"}


def on_config(config):
    for title, page in OPTIONAL_PAGES.items():
        listed = any(page in str(entry) for entry in config["nav"] or [])
        if (ROOT / "docs" / page).is_file() and not listed:
            config["nav"].append({title: page})
    return config


def on_files(files, config):
    """Publish the benchmark figures as figures/*.png and the clips as figures/*.gif (they live in benchmarks/figures/,
    outside docs/)."""
    for png in sorted((ROOT / "benchmarks" / "figures").glob("*.*")):  # the PNG figures and the GIF clips
        files.append(File(f"figures/{png.name}", str(png.parent.parent), config["site_dir"],
                          config["use_directory_urls"]))
    return files
