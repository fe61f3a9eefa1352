"""What the runner asks mutmut's own code, run with a work folder as the current directory (mutmut reads its
configuration from there): `python -m tests.mutation.inside names FILE` prints the names of the file's mutants,
`... diffs FILE NAME...` each named mutant's diff as `mutmut show` prints it. JSON on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.mutation.file_mutation import mutate_file_contents
from mutmut.utils.format_utils import get_mutant_name


def names(file: str) -> list[str]:
    mutated = mutate_file_contents(file, Path(file).read_text(encoding="utf-8"))
    return [get_mutant_name(Path(file), name) for name in mutated.mutant_names]


def diffs(file: str, mutants: list[str]) -> dict[str, str]:
    return {name: get_diff_for_mutant(name, path=Path(file)) for name in mutants}


if __name__ == "__main__":
    command, file, *rest = sys.argv[1:]
    print(json.dumps(names(file) if command == "names" else diffs(file, rest)))
