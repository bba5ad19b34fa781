"""Provenance that proves itself (sklearn_ntps.evidence.provenance): what a study records,
and a check of this repository's history that every committed result with it was produced by the
code of its parent commit, the protocol commit, with nothing changed between them."""

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from sklearn_ntps.evidence.provenance import LIBRARIES, WHEELS, provenance

ROOT = Path(__file__).parent.parent
EMPTY = hashlib.sha256(b"").hexdigest()


def git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def commit(repo, message) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path):
    """A repository with a study's script in code/ and its output folder out/."""
    root = tmp_path / "repo"
    (root / "code").mkdir(parents=True)
    (root / "out").mkdir()
    git(root, "init", "-q")
    (root / "code" / "study.py").write_text("print('study')\n")
    (root / "out" / "old.csv").write_text("a\n1\n")
    commit(root, "protocol")
    return root


# ----------------------------------------------------------------- what provenance records
def test_a_clean_tree_records_its_commit_and_nothing_changed(repo):
    p = provenance(repo / "out", repo / "code")
    assert p["commit"] == git(repo, "rev-parse", "HEAD").strip() and p["output"] == "out"
    assert p["changed_files"] == [] and p["uncommitted_changes"] is False
    assert p["diff_sha256"] == EMPTY
    assert set(LIBRARIES) | {"python", "wheels"} <= set(p) and set(p["wheels"]) == set(WHEELS)
    import sklearn_ntps

    here = provenance(ROOT / "docs" / "validity", ROOT / "docs")["package"]
    ours = Path(sklearn_ntps.__file__).resolve().parent
    assert here == ("sklearn_ntps" if ours.is_relative_to(ROOT.resolve()) else str(ours))
    assert p["numpy"] is not None and p["python"].count(".") == 2


def test_the_output_folder_is_never_a_change(repo):
    clean = provenance(repo / "out", repo / "code")
    (repo / "out" / "rows.csv").write_text("new rows\n")  # untracked, inside the output
    (repo / "out" / "old.csv").write_text("rewritten\n")  # tracked, inside the output
    p = provenance(repo / "out", repo / "code")
    assert p["changed_files"] == [] and not p["uncommitted_changes"]
    assert p["diff_sha256"] == clean["diff_sha256"]


def test_a_change_outside_the_output_folder_shows_and_moves_the_hash(repo):
    clean = provenance(repo / "out", repo / "code")
    (repo / "code" / "study.py").write_text("print('changed')\n")
    tracked = provenance(repo / "out", repo / "code")
    assert tracked["changed_files"] == ["code/study.py"] and tracked["uncommitted_changes"]
    assert tracked["diff_sha256"] != clean["diff_sha256"]
    # An untracked file is a change too, and its content enters the hash.
    (repo / "code" / "helper.py").write_text("x = 1\n")
    untracked = provenance(repo / "out", repo / "code")
    assert untracked["changed_files"] == ["code/helper.py", "code/study.py"]
    assert untracked["diff_sha256"] != tracked["diff_sha256"]
    (repo / "code" / "helper.py").write_text("x = 2\n")
    assert provenance(repo / "out", repo / "code")["diff_sha256"] != untracked["diff_sha256"]
    # Binary-safe: the diff is hashed as bytes, so a change that is not UTF-8 is recorded, and
    # every binary change gets a hash of its own.
    (repo / "code" / "helper.py").unlink()
    (repo / "code" / "blob.bin").write_bytes(bytes(range(256)))
    (repo / "code" / "latin.txt").write_bytes(b"caf\xe9\n")
    commit(repo, "binary")
    (repo / "code" / "latin.txt").write_bytes(b"caf\xe8\n")
    assert "code/latin.txt" in provenance(repo / "out", repo / "code")["changed_files"]
    (repo / "code" / "latin.txt").write_bytes(b"caf\xe9\n")
    (repo / "code" / "study.py").write_text("print('study')\n")
    base = provenance(repo / "out", repo / "code")
    hashes = set()
    for last in (0, 1):
        (repo / "code" / "blob.bin").write_bytes(bytes(range(255)) + bytes([last]))
        p = provenance(repo / "out", repo / "code")
        assert "code/blob.bin" in p["changed_files"]
        hashes.add(p["diff_sha256"])
    assert len(hashes) == 2 and base["diff_sha256"] not in hashes


def test_outside_a_repository_the_git_fields_are_none(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    p = provenance(plain / "out", plain)
    if p["commit"] is not None:
        pytest.skip("the temporary folder lies inside a git repository")
    assert p["changed_files"] is None and p["diff_sha256"] is None
    assert p["numpy"] is not None


# ----------------------------------------------------------------- results and their protocol
def provenance_blocks(value):
    """Every dict with a ``diff_sha256`` inside a JSON value."""
    if isinstance(value, dict):
        if "diff_sha256" in value:
            yield value
        for v in value.values():
            yield from provenance_blocks(v)
    elif isinstance(value, list):
        for v in value:
            yield from provenance_blocks(v)


def results_problems(repo, path) -> list:
    """What is wrong with the committed results file ``path`` of ``repo``: the commit that last
    added or changed it must be a child of each recorded protocol commit, the run must have
    had no change, and nothing outside the recorded output folder may differ between them."""
    results = git(repo, "log", "-1", "--format=%H", "--", path).strip()
    if not results:
        return [f"{path} is not committed"]
    parents = git(repo, "rev-list", "--parents", "-n", "1", results).split()[1:]
    problems = []
    for block in provenance_blocks(json.loads(git(repo, "show", f"{results}:{path}"))):
        protocol, output = block.get("commit"), block.get("output")
        if protocol not in parents:
            problems.append(f"{path}: results commit {results[:10]} is not a child of the "
                            f"protocol commit {str(protocol)[:10]}")
        if block.get("changed_files") or block.get("diff_sha256") != EMPTY:
            problems.append(f"{path}: the run had changes: {block.get('changed_files')}")
        if block.get("package") is None or Path(block["package"]).is_absolute():
            problems.append(f"{path}: the package that ran was not this checkout's: "
                            f"{block.get('package')}")
        if not output:
            problems.append(f"{path}: no output folder recorded")
            continue
        if protocol in parents:
            touched = git(repo, "diff", "--name-only", protocol, results).split("\n")
            outside = [f for f in touched if f and not f.startswith(output.rstrip("/") + "/")]
            if outside:
                problems.append(f"{path}: the results commit changes {outside}, outside "
                                f"{output}")
    return problems


def run_study(repo, package="code"):
    """The study of ``repo`` writes its result, with its provenance, into out/. (The package
    that runs here is this checkout's, outside ``repo``: ``package`` stands for the study's
    own, inside it.)"""
    data = {"provenance": {**provenance(repo / "out", repo / "code"), "package": package}}
    (repo / "out" / "result.json").write_text(json.dumps(data))


def test_results_committed_on_their_protocol_pass(repo):
    run_study(repo)
    commit(repo, "results")
    assert results_problems(repo, "out/result.json") == []


def test_results_of_another_checkouts_package_fail(repo):
    assert Path(provenance(repo / "out", repo / "code")["package"]).is_absolute()
    run_study(repo, package=str(ROOT / "sklearn_ntps"))
    commit(repo, "results")
    problems = results_problems(repo, "out/result.json")
    assert len(problems) == 1 and "not this checkout's" in problems[0]


def test_results_with_code_changed_beside_them_fail(repo):
    run_study(repo)
    (repo / "code" / "study.py").write_text("print('fixed after the run')\n")
    commit(repo, "results and a fix")
    problems = results_problems(repo, "out/result.json")
    assert len(problems) == 1 and "code/study.py" in problems[0]


def test_results_from_a_dirty_tree_or_an_older_protocol_fail(repo):
    (repo / "code" / "study.py").write_text("print('edited, not committed')\n")
    run_study(repo)
    (repo / "code" / "study.py").write_text("print('study')\n")
    commit(repo, "results of a dirty run")
    assert any("had changes" in p for p in results_problems(repo, "out/result.json"))
    run_study(repo)  # clean, on the commit above
    (repo / "code" / "other.py").write_text("\n")
    commit(repo, "code in between")
    (repo / "out" / "result.json").write_text((repo / "out" / "result.json").read_text() + " ")
    commit(repo, "results two commits later")
    assert any("not a child" in p for p in results_problems(repo, "out/result.json"))


def test_every_committed_result_names_its_protocol_as_parent():
    """This repository: docs/**/*.json with the new provenance (docs/validity/reread.json
    first), as committed at HEAD."""
    try:
        shallow = git(ROOT, "rev-parse", "--is-shallow-repository").strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("not a git checkout")
    if shallow == "true":
        pytest.skip("a shallow clone: the protocol commits are not in it")
    found = subprocess.run(["git", "grep", "-l", "-F", "diff_sha256", "HEAD", "--", "docs"],
                           cwd=ROOT, capture_output=True, text=True)
    paths = [line.split(":", 1)[1] for line in found.stdout.splitlines()
             if line.endswith(".json")]
    if not paths:
        pytest.skip("no committed result carries the new provenance yet (the re-read's results "
                    "commit brings docs/validity/reread.json)")
    problems = [p for path in paths for p in results_problems(ROOT, path)]
    assert not problems, "\n".join(problems)


def test_the_study_command_line_and_rows(tmp_path):
    from sklearn_ntps.evidence.provenance import study_parser, study_rows

    parser = study_parser("A study.\nMore.", tmp_path / "out", workers=2, smoke="one tiny task")
    args = parser.parse_args([])
    assert (args.tables, args.workers, args.smoke, args.out) == (False, 2, None, tmp_path / "out")
    assert parser.description == "A study."
    assert "tiny task; into --out" in " ".join(parser.format_help().split())
    args = parser.parse_args(["--tables", "--workers", "1", "--smoke", "m", "--out", "x"])
    assert (args.tables, args.workers, args.smoke, str(args.out)) == (True, 1, "m", "x")
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "b.csv").write_text("task,gain,ntps\nt2,1.5,\n")
    (tmp_path / "rows" / "a.csv").write_text("task,gain,ntps\nt1,-2,0.25\n")
    rows = study_rows(tmp_path, ("task",))
    assert [r["task"] for r in rows] == ["t1", "t2"]
    assert rows[0] == {"task": "t1", "gain": -2.0, "ntps": 0.25}
    assert rows[1]["gain"] == 1.5 and rows[1]["ntps"] != rows[1]["ntps"]  # NaN
