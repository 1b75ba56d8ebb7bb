"""Records reference outputs as test fixtures: for each block named, imports
tools/reference/<block>.py, which builds the reference implementation from its repository
under --refs, runs it in float64 on fixed inputs and returns the tensors to store.

    /usr/bin/python3 tools/reference/make_fixtures.py --refs REFS cbam gcnet
"""
import argparse
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", required=True, help="directory holding the reference repositories")
    parser.add_argument("blocks", nargs="+")
    args = parser.parse_args()
    for block in args.blocks:
        module = importlib.import_module(block)
        src, commit = common.reference_tree(args.refs, module.REPO)
        reference, tensors = module.fixture(src, f"{module.REPO}@{commit}")
        common.save_fixture(block, reference, tensors)


if __name__ == "__main__":
    main()
