"""scripts/bench --write-docs [RESULTS]: regenerates the section of
docs/benchmarks.md between the BEGIN and END markers from a results.json
(default bench/results/latest), so the figures in the docs are the ones a
committed run measured, never pasted by hand. Everything outside the
markers is left as it is. Exit 0 when written, 1 when the file has no
markers or the results cannot be read."""
import os
import re
import sys

import compare
import report

BEGIN = "<!-- BEGIN scripts/bench --write-docs: generated from {source}, do not edit by hand -->"
END = "<!-- END scripts/bench --write-docs -->"
_BLOCK = re.compile(
    r"<!-- BEGIN scripts/bench --write-docs[^\n]*-->\n.*?<!-- END scripts/bench --write-docs -->",
    re.S,
)


def section(results, results_dir, doc_dir):
    """The generated markdown: the run's report with headings one level
    down and image links relative to the document."""
    if results.capacity_only:
        text = report.capacity_only(results)
    else:
        summ = report.summarize(results)
        text = report.markdown(results, summ, report.targets(results, summ))
    rel = os.path.relpath(os.path.abspath(results_dir), doc_dir)
    text = re.sub(
        r"!\[([^\]]*)\]\(([^)/]+)\)", lambda m: f"![{m.group(1)}]({rel}/{m.group(2)})", text
    )
    text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M)
    return text.strip() + "\n"


def main(results_path, doc_path):
    results, error = compare.load(results_path)
    if error:
        print(f"bench: --write-docs: {error}", file=sys.stderr)
        return 1
    results_dir = results_path if os.path.isdir(results_path) else os.path.dirname(results_path)
    try:
        with open(doc_path) as f:
            doc = f.read()
    except OSError as e:
        print(f"bench: --write-docs: cannot read {doc_path}: {e}", file=sys.stderr)
        return 1
    if not _BLOCK.search(doc):
        print(
            f"bench: --write-docs: {doc_path} has no generated section (a line starting "
            f"'<!-- BEGIN scripts/bench --write-docs' and a line '{END}')",
            file=sys.stderr,
        )
        return 1
    root = os.path.dirname(os.path.dirname(os.path.abspath(doc_path)))
    source = os.path.relpath(os.path.abspath(results_dir), root)
    body = section(results, results_dir, os.path.dirname(os.path.abspath(doc_path)))
    block = BEGIN.format(source=source) + "\n" + body + END
    doc = _BLOCK.sub(lambda _m: block, doc, count=1)
    with open(doc_path, "w") as f:
        f.write(doc)
    print(f"bench: wrote the generated section of {doc_path} from {source}", file=sys.stderr)
    return 0
