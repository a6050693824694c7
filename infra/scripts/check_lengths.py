#!/usr/bin/env python3
"""Fails when production Rust code has a function over MAX_FUNCTION_LINES lines or a file
over MAX_FILE_LINES lines (docs/contributing.md, "House rules").

Production code is every `.rs` file of the workspace's crates (the test-support crate
`tests/` and its benchmark tools included), up to the file's `#[cfg(test)]` module; a crate's
integration tests (its `tests/` directory), the fuzz targets and build output are not. A function is measured from its `fn` line to the closing brace at the
same indentation, as `cargo fmt` lays it out.

Usage: check_lengths.py [REPO_ROOT]   (exit 1 and a list when something is over)
"""

import os
import re
import sys

MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 600

SKIPPED_DIRS = {"target", "node_modules", ".git", "fuzz", ".venv", ".tools"}
FN_LINE = re.compile(
    r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)"
)


def production_lines(path):
    """The lines of `path` before its `#[cfg(test)]` module."""
    with open(path, encoding="utf-8", errors="replace") as source:
        lines = source.read().split("\n")
    for index, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return lines[:index]
    return lines


def long_functions(lines):
    """(name, first line, length) of each function with a body over the limit."""
    found = []
    for start, line in enumerate(lines):
        match = FN_LINE.match(line)
        if not match:
            continue
        # A declaration without a body (a trait method) ends in `;` before any `{`.
        body = start
        while body < len(lines) and "{" not in lines[body]:
            if lines[body].rstrip().endswith(";"):
                break
            body += 1
        if body == len(lines) or "{" not in lines[body]:
            continue
        indent = match.group(1)
        end = start
        if not (lines[start].rstrip().endswith("}") and "{" in lines[start]):
            end = start + 1
            while end < len(lines) and not lines[end].startswith(indent + "}"):
                end += 1
        length = end - start + 1
        if length > MAX_FUNCTION_LINES:
            found.append((match.group(7), start + 1, length))
    return found


def is_integration_tests(parent, name):
    """A crate's `tests/` directory (the test-support crate `tests/` has its own manifest
    and its `src/` is checked)."""
    return name == "tests" and not os.path.exists(os.path.join(parent, name, "Cargo.toml"))


def rust_sources(root):
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            d
            for d in subdirectories
            if d not in SKIPPED_DIRS and not is_integration_tests(directory, d)
        )
        for name in sorted(files):
            if name.endswith(".rs"):
                yield os.path.join(directory, name)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    problems = []
    for path in rust_sources(root):
        relative = os.path.relpath(path, root)
        lines = production_lines(path)
        if len(lines) > MAX_FILE_LINES:
            problems.append(
                f"{relative}: {len(lines)} production lines (limit {MAX_FILE_LINES})"
            )
        for name, line, length in long_functions(lines):
            problems.append(
                f"{relative}:{line}: fn {name} is {length} lines (limit {MAX_FUNCTION_LINES})"
            )
    if problems:
        print("check_lengths: split these along the seams the code already names:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(
        f"check_lengths: no production function over {MAX_FUNCTION_LINES} lines, "
        f"no file over {MAX_FILE_LINES}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
