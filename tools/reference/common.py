"""Shared plumbing for running the papers' reference implementations (never committed here).

A reference repository is found under --refs DIR as either a working tree (DIR/owner+name or
DIR/name) or a mirror (DIR/owner+name/repo/.git or the bare DIR/owner+name/repo, as the fetch tool leaves it); a mirror
is exported to a temporary directory first. Fixtures are written as JSON of float64 tensors
that tests/fixture.h reads.
"""
import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_EXPORTS = {}


def reference_tree(refs, repo):
    """Returns (path of a working tree of `repo` = 'owner/name', its commit or '?')."""
    owner, name = repo.split("/")
    for candidate in (os.path.join(refs, f"{owner}+{name}"), os.path.join(refs, name)):
        git_dirs = [os.path.join(candidate, "repo", ".git"), os.path.join(candidate, "repo")]
        git_dir = next((d for d in git_dirs if os.path.isfile(os.path.join(d, "HEAD"))), None)
        if git_dir:
            if repo not in _EXPORTS:
                out = tempfile.mkdtemp(prefix=f"attnseg-ref-{name}-")
                # The export lives as long as this process: every run used to leave a copy of
                # the reference's sources behind in the temporary directory.
                atexit.register(shutil.rmtree, out, ignore_errors=True)
                archive = subprocess.run(["git", "--git-dir", git_dir, "archive", "HEAD"],
                                         capture_output=True)
                if archive.returncode != 0:
                    # A mirror may lack its largest files (datasets, weights): export the
                    # sources alone.
                    files = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "--name-only", "HEAD"],
                                           check=True, capture_output=True, text=True).stdout.split()
                    sources = [f for f in files if f.endswith((".py", ".ipynb", ".cpp", ".cu", ".h"))]
                    archive = subprocess.run(["git", "--git-dir", git_dir, "archive", "HEAD", "--", *sources],
                                             check=True, capture_output=True)
                archive = archive.stdout
                subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
                commit = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "HEAD"],
                                        check=True, capture_output=True, text=True).stdout.strip()
                _EXPORTS[repo] = (out, commit)
            return _EXPORTS[repo]
        if os.path.isdir(candidate):
            try:
                commit = subprocess.run(["git", "-C", candidate, "rev-parse", "HEAD"], check=True,
                                        capture_output=True, text=True).stdout.strip()
            except subprocess.CalledProcessError:
                commit = "?"
            return candidate, commit
    sys.exit(f"error: reference repository {repo} not found under {refs} "
             f"(clone https://github.com/{repo} there)")


def import_file(path, module_name):
    """Imports one reference source file as a module without installing its package."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def tensor_entry(t):
    t = t.detach().to(torch.float64).contiguous()
    return {"shape": list(t.shape), "data": t.flatten().tolist()}


def save_fixture(block, reference, tensors):
    """Writes tests/fixtures/<block>.json; `reference` names repo@commit and file."""
    path = os.path.join(ROOT, "tests", "fixtures", f"{block}.json")
    # The command as the README gives it: where this machine keeps the references is its own.
    args = list(sys.argv[1:])
    for i, arg in enumerate(args):
        if arg == "--refs" and i + 1 < len(args):
            args[i + 1] = "REFS"
        elif arg.startswith("--refs="):
            args[i] = "--refs=REFS"
    doc = {
        "command": "python3 tools/reference/make_fixtures.py " + " ".join(args),
        "reference": reference,
        "tensors": {k: tensor_entry(v) for k, v in tensors.items()},
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, path)
    print(f"wrote {os.path.relpath(path, ROOT)} ({sum(v.numel() for v in tensors.values())} numbers)")


def stub_modules(stubs):
    """Registers empty stand-ins for packages a reference file imports but the path we run does
    not use: {module name: {attribute: value}}; a module already imported is left as it is."""
    for name, attributes in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules.setdefault(name, module)


def package_without_init(name, path):
    """Registers package `name` with `path` as its search path without running its __init__
    (which may import what is not installed), so that its submodules import alone."""
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [path]
        sys.modules[name] = package


def timed_forwards(net, x, warmup, iters, autocast):
    """Median and quartiles (ms) of `iters` forwards of `net` on `x` after `warmup` untimed ones,
    as `attnseg bench` times: inference mode, under `autocast`, each run ending in .item(),
    which waits for the device."""
    import statistics
    import time

    import torch

    ms = []
    with torch.inference_mode(), autocast:
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            net(x).sum().item()
            if i >= warmup:
                ms.append(1000 * (time.perf_counter() - t0))
    q = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else ms * 3
    return statistics.median(ms), q[0], q[2]
