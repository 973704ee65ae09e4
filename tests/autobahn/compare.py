#!/usr/bin/env python3
"""Compare an Autobahn|Testsuite run against the expected verdicts.

    compare.py REPORTDIR [EXPECTED]          exit 1 if any case's verdict differs
    compare.py --write REPORTDIR [EXPECTED]  replace the expected verdicts with the run's

REPORTDIR holds the index.json the suite wrote; EXPECTED defaults to expected.tsv next to
this script (lines `case<TAB>behavior<TAB>behaviorClose`, `#` lines are comments).
"""

import argparse
import collections
import json
import os
import sys


def case_key(case):
    return tuple(int(part) for part in case.split("."))


def load_run(report_dir):
    path = os.path.join(report_dir, "index.json")
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"compare: cannot read the run's verdicts: {e}")
    if len(index) != 1:
        sys.exit(f"compare: expected one agent in index.json, found {sorted(index)}")
    (cases,) = index.values()
    return {case: (r["behavior"], r["behaviorClose"]) for case, r in cases.items()}


def load_expected(path):
    header, expected = [], {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith("#") or not line.strip():
                header.append(line)
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or fields[0] in expected:
                sys.exit(f"compare: {path}:{lineno}: bad or duplicate line: {line!r}")
            expected[fields[0]] = (fields[1], fields[2])
    return header, expected


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite EXPECTED from the run")
    parser.add_argument("report_dir")
    parser.add_argument("expected", nargs="?",
                        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected.tsv"))
    args = parser.parse_args()

    actual = load_run(args.report_dir)
    header, expected = load_expected(args.expected)

    if args.write:
        with open(args.expected, "w") as f:
            f.writelines(header)
            for case in sorted(actual, key=case_key):
                f.write("%s\t%s\t%s\n" % (case, *actual[case]))
        print(f"wrote {len(actual)} verdicts to {args.expected}")
        return 0

    counts = collections.Counter("/".join(v) for v in actual.values())
    print(f"{len(actual)} cases run, {len(expected)} expected: "
          + ", ".join(f"{n} {verdict}" for verdict, n in counts.most_common()))

    differences = []
    for case in sorted(actual.keys() | expected.keys(), key=case_key):
        want, got = expected.get(case), actual.get(case)
        if want is None:
            differences.append(f"  {case}: extra case, got {'/'.join(got)}")
        elif got is None:
            differences.append(f"  {case}: missing from the run, expected {'/'.join(want)}")
        elif want != got:
            differences.append(f"  {case}: expected {'/'.join(want)}, got {'/'.join(got)}")

    if differences:
        print(f"{len(differences)} case(s) differ from {args.expected}:")
        print("\n".join(differences))
        return 1
    print("every verdict matches the expected one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
