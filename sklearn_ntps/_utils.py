"""Small helpers shared across the package.

Where files go, how they are written, what to install, and how many BLAS threads the
solver gets.

Standard library only at import time, so every module (and a child process
loading one of them alone) can import it without a cycle.
"""

from __future__ import annotations

import contextlib
import csv
import decimal
import errno
import functools
import importlib
import importlib.util
import io
import json
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path

__all__ = ["atomic_dir", "cache_dir", "csv_text", "discard_dir", "finite_json",
           "format_bytes", "json_text", "log_grid", "one_blas_pool", "optional_import",
           "results_as_read", "sync_folder", "worker_pool", "write_atomic"]


def log_grid(start, stop, num) -> tuple:
    """``num`` floats from ``10**start`` to ``10**stop``, evenly spaced in log, as a tuple.

    ``np.logspace(start, stop, num)`` computed in decimal arithmetic and
    rounded once, so every processor gets the same bits: NumPy's ``power``
    takes SIMD paths whose last bit differs between processors (``10**2.5`` is
    ``316.2277660168379`` on some, ``316.22776601683796``, the correctly
    rounded value, on others).

    Examples
    --------
    >>> from sklearn_ntps._utils import log_grid
    >>> log_grid(-1, 1, 3)
    (0.1, 1.0, 10.0)
    >>> log_grid(-3, 3, 13)[11]
    316.22776601683796
    """
    context = decimal.Context(prec=40)
    step = (decimal.Decimal(stop) - decimal.Decimal(start)) / max(num - 1, 1)
    return tuple(float(context.power(decimal.Decimal(10), decimal.Decimal(start) + i * step))
                 for i in range(num))


def cache_dir() -> Path:
    """Root folder of everything sklearn-ntps keeps on disk, not created here.

    ``$SKLEARN_NTPS_CACHE`` if set, else ``$XDG_CACHE_HOME/sklearn-ntps``, else
    ``~/.cache/sklearn-ntps``. Below it: ``embeddings`` (the statistics store of
    :mod:`sklearn_ntps.states.cache`), ``dequantized`` (float32 copies of GGUF files) and
    ``assembled`` (models split over several wheels), the last two written by
    :mod:`sklearn_ntps.states.models`.

    Examples
    --------
    >>> import os
    >>> from sklearn_ntps._utils import cache_dir
    >>> os.environ["SKLEARN_NTPS_CACHE"] = "/tmp/ntps"
    >>> cache_dir()
    PosixPath('/tmp/ntps')
    >>> del os.environ["SKLEARN_NTPS_CACHE"]
    """
    if os.environ.get("SKLEARN_NTPS_CACHE"):
        return Path(os.environ["SKLEARN_NTPS_CACHE"]).expanduser()
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return home / "sklearn-ntps"


def optional_import(module: str, extra: str, what: str, *, alternative: str = "",
                    check_only: bool = False):
    """Import an optional dependency, or raise an ImportError naming the extra that brings it.

    Parameters
    ----------
    module : str
        The module to import.
    extra : str
        The extra of ``sklearn-ntps`` that installs it (``"hf"``, ``"lora"``, ...).
    what : str
        What needs it, to open the message ("HFLoRAClassifier", "Sharding on Dask").
    alternative : str, default=""
        Another way out, appended to the message (" or pass --no-plot").
    check_only : bool, default=False
        Only check that it is installed, without the cost of importing it.

    Returns
    -------
    module or None
        The module (None with ``check_only``).

    Examples
    --------
    >>> from sklearn_ntps._utils import optional_import
    >>> optional_import("json", "hf", "Reading JSON").__name__
    'json'
    >>> optional_import("no_such_module", "lora", "HFLoRAClassifier")
    Traceback (most recent call last):
    ...
    ImportError: HFLoRAClassifier needs no_such_module: pip install 'sklearn-ntps[lora]'.
    """
    message = f"{what} needs {module}: pip install 'sklearn-ntps[{extra}]'{alternative}."
    if check_only:
        if importlib.util.find_spec(module) is None:
            raise ImportError(message)
        return None
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(message) from exc


def write_atomic(path: Path, data) -> None:
    """Write all of ``data`` (str or bytes) to ``path``, or nothing.

    A temporary file is renamed into place, so a reader never sees half a file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_ntps._utils import write_atomic
    >>> path = Path(tempfile.mkdtemp()) / "out.txt"
    >>> write_atomic(path, "done")
    >>> path.read_text()
    'done'
    """
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def csv_text(columns, rows) -> str:
    """The CSV of ``rows`` (dicts) under ``columns``; keys outside them are left out.

    >>> from sklearn_ntps._utils import csv_text
    >>> print(csv_text(["a", "b"], [{"a": 1, "b": 2.5, "c": 0}]), end="")
    a,b
    1,2.5
    """
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def finite_json(value):
    """``value`` with plain Python numbers, and None for NaN and infinities.

    Strict JSON has no NaN, so an undefined correlation or interval is null.

    >>> import numpy as np
    >>> from sklearn_ntps._utils import finite_json
    >>> finite_json({"a": [np.float64(0.5), float("nan")], "b": (np.int64(3),)})
    {'a': [0.5, None], 'b': [3]}
    """
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy scalar
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def json_text(data) -> str:
    """``data`` as indented, strict JSON (:func:`finite_json` first)."""
    return json.dumps(finite_json(data), indent=2, allow_nan=False)


@contextlib.contextmanager
def atomic_dir(target: Path, *, durable: bool = False, replace=None, attempts: int = 8):
    """Yield an empty sibling folder that becomes ``target``, in one rename, if the block succeeds.

    An interrupted block (an exception, Ctrl-C, a killed process) leaves no
    ``target``; its temporary folder, named ``.tmp-*``, is removed, or left for
    a sweep when the process was killed.

    Parameters
    ----------
    target : Path
    durable : bool, default=False
        Sync the new folder and its parent, so that the rename survives a power
        loss (the block syncs the files it writes).
    replace : callable, default=None
        Where another process put a ``target`` first, ``replace(target)`` says
        whether to move it aside (:func:`discard_dir`) and put ours in place; None
        keeps theirs, as good as ours.
    attempts : int, default=8
        Renames tried while other processes keep replacing ``target``; then a
        ``FileExistsError``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_ntps._utils import atomic_dir
    >>> target = Path(tempfile.mkdtemp()) / "model"
    >>> with atomic_dir(target) as tmp:
    ...     _ = (tmp / "config.json").write_text("{}")
    >>> sorted(p.name for p in target.iterdir())
    ['config.json']
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        yield tmp
        if durable:
            sync_folder(tmp)
        for _ in range(attempts):
            try:
                os.rename(tmp, target)  # atomic; refused while a non-empty folder is there
                break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            if replace is None or not replace(target):
                break  # theirs stays
            discard_dir(target)
        else:
            raise FileExistsError(errno.EEXIST, "replaced by other processes meanwhile", target)
        if durable:
            sync_folder(target.parent)
    finally:
        if tmp.is_dir():  # not renamed into place
            shutil.rmtree(tmp, ignore_errors=True)


def discard_dir(path: Path) -> None:
    """Remove a folder that others may be reading.

    It is renamed away (``.old-*``) first, so that no reader sees it half deleted.
    """
    try:
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=".old-"))
    except OSError:
        return
    try:
        os.rename(path, old / "entry")
    except OSError:
        pass  # gone already: another process discarded it
    shutil.rmtree(old, ignore_errors=True)


def sync_folder(path: Path) -> None:
    """Make the names in a folder (renames, new files) durable; POSIX only can open a folder."""
    if os.name == "posix":
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def format_bytes(n: float) -> str:
    """``n`` bytes for people, in powers of 1000.

    >>> from sklearn_ntps._utils import format_bytes
    >>> format_bytes(8.9e9), format_bytes(512), format_bytes(float("inf"))
    ('8.9 GB', '512 B', 'unlimited')
    """
    if math.isinf(n):
        return "unlimited"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def worker_pool(n_jobs):
    """Worker processes for ``n_jobs`` (-1: one per core) as a context, or None for one job."""
    from joblib import effective_n_jobs

    workers = effective_n_jobs(n_jobs)
    if workers == 1:
        return contextlib.nullcontext()
    # loky's (spawned, robust to a dying worker), but not joblib's shared reusable executor,
    # which expects its own bookkeeping on whatever it reuses.
    from joblib.externals.loky import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers)


def results_as_read(tasks, pool):
    """Each ``(function, args, kwargs)`` task's result, in order.

    With no ``pool`` each runs here as it is read. Otherwise each goes to a worker process the
    moment it is read, so the workers run while the generator computes the next task (the
    report's probes of the layers already scored, while it scores the next). joblib's
    ``Parallel`` does not: its workers' completion callback waits for the lock under which
    ``Parallel`` reads the generator, and while it waits no further task reaches a worker; in
    the bundled report the probes of layers 2 to 30 all started after the last layer was
    scored (docs/performance.md).
    """
    if pool is None:
        for function, args, kwargs in tasks:
            yield function(*args, **kwargs)
        return
    futures = []
    try:
        futures.extend(pool.submit(function, *args, **kwargs) for function, args, kwargs in tasks)
        for future in futures:
            yield future.result()
    finally:
        for future in futures:  # after a failure, the tasks not yet started are dropped
            future.cancel()


@contextlib.contextmanager
def one_blas_pool():
    """Run the solver with NumPy's BLAS on one thread when SciPy has a BLAS of its own.

    NumPy and SciPy wheels each bundle an OpenBLAS with its own thread pool.
    The solver alternates between them (products in one, LAPACK in the
    other), and each pool's threads spin while the other works: an NTPS fit
    and score at d = 576 took 0.40 s with both pools on two threads, 0.13 s
    with NumPy's on one (2 cores; no loss at d = 2048). Where both share one
    library (conda's MKL, say) nothing is limited. The limit is process-wide,
    so concurrent fits (a threading backend) share it: the first to enter
    sets it, the last to leave restores the original.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntps._utils import one_blas_pool
    >>> @one_blas_pool()  # a context manager, or a decorator for a whole fit
    ... def gram(a):
    ...     return a.T @ a
    >>> gram(np.eye(2)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    numpy_blas = _numpy_blas_beside_scipys()
    if numpy_blas is None:
        yield
        return
    with _LIMIT_LOCK:
        if not _LIMIT_HOLDERS:
            _LIMIT_HOLDERS.append(numpy_blas.limit(limits=1))
        _LIMIT_HOLDERS.append(None)
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT_HOLDERS.pop()
            if len(_LIMIT_HOLDERS) == 1:
                _LIMIT_HOLDERS.pop().restore_original_limits()


# The active limiter first, then one entry per fit inside one_blas_pool.
_LIMIT_LOCK = threading.Lock()
_LIMIT_HOLDERS: list = []


@functools.cache
def _numpy_blas_beside_scipys():
    # Imported here: this module is standard library only at import time.
    import numpy as np
    from threadpoolctl import ThreadpoolController

    site = Path(np.__file__).resolve().parent.parent

    def owner(path):
        try:
            return Path(path).resolve().relative_to(site).parts[0]
        except ValueError:
            return ""

    controller = ThreadpoolController()
    blas = [lib.filepath for lib in controller.lib_controllers if lib.user_api == "blas"]
    mine = [path for path in blas if owner(path).startswith("numpy")]
    return controller.select(filepath=mine) if mine and len(mine) < len(blas) else None
