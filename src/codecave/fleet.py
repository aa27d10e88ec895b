"""Many videos: per-file jobs over a folder, a list file or a glob, run by worker
processes on one machine or as Ray tasks on a cluster; resumable and failure-isolated.

``codecave enhance IN_DIR OUT_DIR`` (:func:`enhance_folder`) enhances every video under
IN_DIR into the same relative path under OUT_DIR and keeps a manifest there,
``codecave-manifest.jsonl``: one JSON line per event and file (the last line of a file
wins), with the source's SHA-256, the model and its weights' SHA-256, the settings, the
result (``started``, ``done``, ``failed`` with the error, or ``skipped`` when OUT holds a
file this manifest did not make), frames and seconds. Running the same command again skips
what is done, retries what failed and redoes a file whose source, model, weights or
settings changed. One bad file is reported and the rest go on.

Every output is written to a hidden partial file and renamed when complete
(:func:`codecave.enhance.enhance_video`). A worker killed mid-file leaves no output; its
hidden partial file is removed as soon as the run sees the worker gone (on a Ray node
other than this one, when that output is next written there), and its file, marked
``failed`` (or ``started`` if the whole run was killed), is redone by the next run.

:func:`run_jobs` is the executor both ``enhance`` and ``prepare`` use: ``workers`` local
processes with ``threads`` CPU threads each, or Ray tasks (``ray="auto"``, an address, or
``"local"``) requesting ``threads`` CPUs and ``gpus`` GPUs each. On a cluster every node
must see the input and output folders at the same paths (shared storage).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from codecave.errors import ConfigError, EncoderError

log = logging.getLogger(__name__)

#: The manifest an output folder keeps (JSON lines).
MANIFEST_NAME = "codecave-manifest.jsonl"
#: Suffixes of files that list inputs, one path per line.
LIST_SUFFIXES = (".txt", ".list", ".lst")
#: What a worker process that died takes with it.
WORKER_DIED = "worker process died (killed, or out of memory); run again to redo this file"
#: Raw bitstreams and picture streams: their outputs go into .mkv (timestamps, audio, metadata).
RAW_STREAM_SUFFIXES = (".264", ".h264", ".265", ".hevc", ".ivf", ".obu", ".m2v", ".y4m")
RAY_INSTALL = "pip install 'codecave[ray]' (or pip install ray)"


def video_suffixes() -> tuple[str, ...]:
    """Extensions taken as videos when a folder is searched (those ``prepare`` reads as videos,
    plus common camera and broadcast containers)."""
    from codecave.data.sources import VIDEO_EXTS

    return tuple(sorted({*VIDEO_EXTS, ".m4v", ".mts", ".m2ts", ".flv", ".3gp", ".wmv", ".mpeg", ".vob", ".obu"}))


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """CPU threads for each of ``workers`` local workers: ``threads`` when given, else the
    cores divided among them (at least 1), so that workers x threads fits the machine."""
    if workers < 1:
        raise ConfigError(f"workers {workers}: must be at least 1")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads {threads}: must be at least 1")
        return threads
    return max(1, available_cores() // workers)


def _absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` absolute and normalised (``..`` folded), symbolic links kept."""
    return Path(os.path.abspath(path))


def _walk_videos(folder: Path) -> list[Path]:
    """Files with a video extension under ``folder``, following symbolic links to folders
    (each real folder once), hidden files and folders left out."""
    suffixes = video_suffixes()
    seen: set[str] = set()
    found = []
    for current, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:  # a link back up the tree
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        found += [Path(current) / n for n in names if not n.startswith(".") and Path(n).suffix.lower() in suffixes
                  and (Path(current) / n).is_file()]
    return found


def _glob_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading parts without wildcards."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return _absolute(Path(*fixed) if fixed else ".")


def find_videos(spec: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None
                ) -> tuple[Path, list[Path]]:
    """The videos ``spec`` names, and the folder their relative paths start from.

    Args:
        spec: a folder (every file with a video extension under it, following symbolic
            links to folders; hidden files and folders left out), a list file (``.txt``,
            ``.list``, ``.lst``: one path per line, relative to the list's folder; blank
            lines and ``#`` comments ignored; a listed file that does not exist is kept, to
            fail on its own), or a glob pattern (``"clips/**/*.mp4"``;
            quote it so the shell leaves it alone).
        exclude: a folder whose files are never taken (the output folder).

    Returns:
        ``(root, files)``, absolute and normalised: ``root`` is the folder itself, the list's
        folder, or the glob's leading part without wildcards (for a list naming files
        outside its folder, the deepest folder holding them all), so that the layout
        under OUT does not depend on which files happen to match. Files sorted, each once.

    Raises:
        ConfigError: nothing matches, a list names a folder, or the folder is ``exclude``
            or inside it.
    """
    text = str(spec)
    path = Path(spec)
    skip = Path(os.path.realpath(exclude)) if exclude is not None else None

    def kept(p: Path) -> bool:
        return skip is None or not Path(os.path.realpath(p)).is_relative_to(skip)

    if path.is_dir():
        root = _absolute(path)
        if skip is not None and Path(os.path.realpath(root)).is_relative_to(skip):
            raise ConfigError(f"{path}: is the output folder or inside it; give OUT outside IN's tree")
        files = sorted({f for f in _walk_videos(root) if kept(f)})
        if not files:
            raise ConfigError(f"{path}: no videos in this folder (extensions {' '.join(video_suffixes())})")
        return root, files
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        root = _absolute(path.parent)
        files = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            file = _absolute(root / line)  # an absolute line stays as it is
            if file.is_dir():
                raise ConfigError(f"{path}, line {number}: {line}: a folder; list files")
            files.append(file)  # one that does not exist is that file's failure, not the run's
    elif glob.has_magic(text):
        root = _glob_root(text)
        files = [_absolute(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
    else:
        raise ConfigError(f"{spec}: not a folder, a list file ({', '.join(LIST_SUFFIXES)}) or a glob pattern")
    files = sorted({f for f in files if kept(f)})
    if not files:
        raise ConfigError(f"{spec}: matches no files" + (" outside the output folder" if skip else ""))
    if not all(f.is_relative_to(root) for f in files):
        root = Path(os.path.commonpath([str(root), *(str(f.parent) for f in files)]))
    return root, files


# --------------------------------------------------------------------------- executor


def _call(func: Callable[..., object], args: tuple, threads: int | None) -> tuple[bool, object]:
    """Run ``func(*args)`` in a worker: ``(True, result)``, or ``(False, "Type: message")``
    for an exception (the worker lives on; the next job is unaffected)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        return True, func(*args)
    except Exception as exc:  # one job's failure is its result
        log.debug("job failed", exc_info=True)
        return False, f"{type(exc).__name__}: {exc}"


def _worker_init() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Ctrl-C reaches the whole process group: the driver handles it and stops the workers,
    # which then end their file as SIGTERM does (the partial output removed).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM in the driver ends the run as Ctrl-C does (workers stopped, manifest kept)."""
    try:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_jobs(func: Callable[..., object], jobs: Sequence[tuple[str, tuple]], *, workers: int = 1,
             threads: int | None = None, ray: str | None = None, gpus: float = 0.0,
             on_start: Callable[[str], None] | None = None,
             start_method: str = "spawn") -> Iterator[tuple[str, object | None, str | None]]:
    """Run ``func(*args)`` for every ``(key, args)`` of ``jobs`` and yield
    ``(key, result, None)`` or ``(key, None, error)`` as each ends, in the order they end.

    Args:
        func: a module-level function (it is pickled by name for other processes).
        jobs: keys (unique) and argument tuples (picklable).
        workers: local worker processes (1: in this process). Ignored with ``ray``.
        threads: PyTorch threads per worker or task (None: left alone); with ``ray`` also
            each task's CPU request (None: 1).
        ray: run as Ray tasks: ``"auto"`` (the cluster this machine belongs to), an address
            (``"ray://head:10001"``), or ``"local"`` (start Ray on this machine). A Ray
            already initialised in this process is used as it is.
        gpus: GPUs each Ray task requests (fractions share one).
        on_start: called with a job's key just before it is handed out.
        start_method: how local workers start (``spawn``: clean processes, the default;
            ``fork``: faster, for jobs that run no PyTorch threads before the fork).

    An exception in ``func`` fails that job only. A worker process that dies (killed, out
    of memory) fails the jobs it and the pool were running (at most ``workers``); the rest
    go on in a fresh pool. Ctrl-C or SIGTERM stops the workers and ends the generator.

    Raises:
        ConfigError: ``ray`` without Ray installed or no Ray cluster at ``ray``, or
            ``workers`` or ``threads`` below 1, or ``gpus`` below 0.
    """
    threads_per_worker(workers, threads)  # refuses counts below 1
    if gpus < 0:
        raise ConfigError(f"gpus {gpus}: must be 0 or more")
    keys = [key for key, _ in jobs]
    if len(set(keys)) != len(keys):
        raise ConfigError("run_jobs: job keys must be unique")
    if ray:
        yield from _run_ray(func, jobs, ray, threads, gpus, on_start)
    elif workers <= 1:
        with _sigterm_as_exit():
            for key, args in jobs:
                if on_start:
                    on_start(key)
                ok, value = _call(func, args, threads)
                yield (key, value, None) if ok else (key, None, str(value))
    else:
        yield from _run_pool(func, jobs, workers, threads, on_start, start_method)


def _run_pool(func: Callable[..., object], jobs: Sequence[tuple[str, tuple]], workers: int, threads: int | None,
              on_start: Callable[[str], None] | None, start_method: str
              ) -> Iterator[tuple[str, object | None, str | None]]:
    # spawn (the default): workers start clean (no forked OpenMP or PyTorch thread state).
    context = multiprocessing.get_context(start_method)
    queue = list(reversed(jobs))
    running: dict[object, tuple[str, ProcessPoolExecutor]] = {}
    pool: ProcessPoolExecutor | None = None
    pools: list[ProcessPoolExecutor] = []
    finished = False
    refused = 0
    try:
        with _sigterm_as_exit():
            while queue or running:
                if pool is None:
                    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init)
                    pools.append(pool)
                # At most `workers` jobs in the pool: a dying worker takes no queued job with it.
                while pool is not None and queue and len(running) < workers:
                    key, args = queue[-1]
                    try:
                        future = pool.submit(_call, func, args, threads)
                    except BrokenProcessPool:  # a worker died between jobs: a fresh pool takes this one
                        pool.shutdown(wait=True, cancel_futures=True)
                        pool = None
                        refused += 1
                        if refused >= 3:  # pools that break before taking a job: give up on it
                            queue.pop()
                            refused = 0
                            yield key, None, WORKER_DIED
                        break
                    refused = 0
                    queue.pop()
                    if on_start:
                        on_start(key)
                    running[future] = (key, pool)
                if not running:
                    continue
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    key, owner = running.pop(future)
                    try:
                        ok, value = future.result()
                    except BrokenProcessPool:
                        if owner is pool:  # its workers are stopped; wait until they are gone
                            pool.shutdown(wait=True, cancel_futures=True)
                            pool = None
                        yield key, None, WORKER_DIED
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                        yield key, None, f"{type(exc).__name__}: {exc}"
                        continue
                    yield (key, value, None) if ok else (key, None, str(value))
        finished = True
    finally:
        for p in pools:
            if not finished:  # interrupted: stop the workers (SIGTERM ends their file cleanly)
                for process in list(getattr(p, "_processes", {}).values()):
                    with contextlib.suppress(Exception):
                        process.terminate()
            p.shutdown(wait=True, cancel_futures=True)


def _run_ray(func: Callable[..., object], jobs: Sequence[tuple[str, tuple]], address: str, threads: int | None,
             gpus: float, on_start: Callable[[str], None] | None) -> Iterator[tuple[str, object | None, str | None]]:
    try:
        import ray as ray_module
    except ImportError:
        raise ConfigError(f"--ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    started_here = False
    if not ray_module.is_initialized():
        try:
            if address == "local":
                ray_module.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray_module.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError... all mean the same here
            hint = " (start one with `ray start --head`, or use --ray local)" if address == "auto" else ""
            raise ConfigError(f"--ray {address}: no Ray cluster to use{hint}: {exc}") from None
        started_here = True
    # max_retries: a task whose worker or node died runs once more; exceptions are results.
    task = ray_module.remote(_call).options(num_cpus=threads or 1, num_gpus=gpus, max_retries=1)
    pending: dict[object, str] = {}
    try:
        for key, args in jobs:
            if on_start:
                on_start(key)
            pending[task.remote(func, args, threads)] = key
        while pending:
            done, _ = ray_module.wait(list(pending), num_returns=1)
            for ref in done:
                key = pending.pop(ref)
                try:
                    ok, value = ray_module.get(ref)
                except Exception as exc:  # noqa: BLE001 - the worker or node died twice
                    yield key, None, f"Ray task failed: {type(exc).__name__}: {exc}"
                    continue
                yield (key, value, None) if ok else (key, None, str(value))
    finally:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray_module.cancel(ref, force=True)
        if started_here:
            ray_module.shutdown()


# --------------------------------------------------------------------------- manifest


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """The JSON-lines record of an output folder: the last record of each file wins.

    Appending one line per event keeps it cheap for thousands of files and safe when the
    run is killed: a line torn by the kill (and any line that is not a record) is dropped
    when the manifest is next loaded, which then rewrites it compactly, as it does when
    many lines are superseded.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / MANIFEST_NAME
        self.records: dict[str, dict[str, object]] = {}
        lines = bad = 0
        text = self.path.read_text(errors="replace") if self.path.exists() else ""
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or "file" not in record:
                bad += 1  # torn by a kill while writing, or not ours
                continue
            lines += 1
            self.records[str(record["file"])] = record
        if bad or (text and not text.endswith("\n")) or lines > 2 * len(self.records) + 16:
            self._rewrite()

    def _rewrite(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records.values()))
        os.replace(temporary, self.path)

    def add(self, record: dict[str, object]) -> None:
        """Record ``record`` (its ``file`` names the source) and append it to the file."""
        self.records[str(record["file"])] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """Hold OUT for this run: a second run on the same OUT is refused, not interleaved."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(folder / ".codecave-manifest.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"{folder}: another codecave run is writing into this folder; wait for it "
                              "or choose another OUT") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def source_identity(path: Path, previous: dict[str, object] | None) -> dict[str, object]:
    """The source's SHA-256, size and modification time; the hash is reused from
    ``previous`` when it was this same file with unchanged size and time (as make and
    rsync do).

    Raises:
        OSError: the file cannot be read.
    """
    from codecave.data.sources import file_hash

    stat = path.stat()
    if (previous and previous.get("source") in (None, str(path)) and previous.get("source_size") == stat.st_size
            and previous.get("source_mtime_ns") == stat.st_mtime_ns):
        digest = previous.get("source_sha256")
    else:
        digest = file_hash(path)
    return {"source_sha256": digest, "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


# --------------------------------------------------------------------------- enhance


@dataclass(frozen=True)
class EnhanceJob:
    """One file of :func:`enhance_folder` (what a worker needs; picklable)."""

    source: str
    output: str
    model: str
    weights: str
    variant: str | None
    options: dict[str, object]
    encode: dict[str, object]
    frames: tuple[int, int | None] | None
    crf: float | None
    on_damage: str
    overwrite: bool


_ENHANCERS: dict[tuple, object] = {}


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """``(inode, mtime in ns, size)`` of a file, or None where there is none: tells whether a
    job wrote it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def enhance_job(job: EnhanceJob) -> dict[str, object]:
    """Enhance one file (in a worker); the model is built once per worker process."""
    from codecave.codec.encode import EncodeSettings
    from codecave.codec.reader import read_info
    from codecave.codec.writer import choose_codec
    from codecave.enhance import DEFAULT_OUTPUT, EnhanceOptions, Enhancer, enhance_video
    from codecave.models import create_model

    key = (job.model, job.weights, job.variant, tuple(sorted(job.options.items())))
    if key not in _ENHANCERS:
        _ENHANCERS.clear()  # one model per worker
        _ENHANCERS[key] = Enhancer(create_model(job.model, weights=job.weights, variant=job.variant),
                                   EnhanceOptions(**job.options))
    fields = {**DEFAULT_OUTPUT, **job.encode}
    if fields.get("codec") is None:
        fields["codec"] = choose_codec(job.output, None, read_info(job.source).hdr)
    Path(job.output).parent.mkdir(parents=True, exist_ok=True)
    warnings = _Collect()
    logging.getLogger("codecave").addHandler(warnings)
    try:
        result = enhance_video(job.source, job.output, model=_ENHANCERS[key], encode=EncodeSettings(**fields),
                               frames=job.frames, crf=job.crf, overwrite=job.overwrite, progress=False,
                               on_damage=job.on_damage)
    finally:
        logging.getLogger("codecave").removeHandler(warnings)
    return {"frames": result.frames, "seconds": round(result.seconds, 3), "variant": result.variant,
            "input_crf": result.crf, "input_crf_source": result.crf_source, "passed_through": result.passed_through,
            "skipped_frames": result.skipped,
            "warnings": warnings.lines or list(result.decode_problems)}


class _Collect(logging.Handler):
    """The warnings codecave logs while one file is enhanced (for the manifest)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def weights_identity(model: str, weights: str, variant: str | None, high_crf: bool = True) -> dict[str, object]:
    """What the manifest records of the model: name, requested variant, the weights as
    given and their SHA-256 (None for ``none``: untrained), and for the shipped default
    the SHA-256 of its high-CRF weights too (``high_crf_sha256``; they enhance high-CRF
    streams unless ``high_crf`` is off: ``EnhanceOptions.high_crf``).

    Raises:
        ConfigError: an unknown model or variant, or weights that do not exist.
    """
    from importlib import resources

    from codecave.data.sources import file_hash
    from codecave.models.registry import shipped_weights, shipped_weights_entry

    digest, high = None, None
    if weights == "default":
        path, entry = shipped_weights(model, variant)
        with resources.as_file(path) as real:
            digest = file_hash(real)
        if entry.get("high_crf") and high_crf:
            with resources.as_file(shipped_weights_entry(str(entry["high_crf"]["entry"]))) as real:
                high = file_hash(real)
    elif weights not in (None, "none"):
        path = Path(weights)
        path = path / "model.safetensors" if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"{weights}: no such weights file")
        digest = file_hash(path)
    return {"name": model, "variant": variant, "weights": str(weights), "weights_sha256": digest,
            **({"high_crf_sha256": high} if high else {})}


def _model_key(model: object) -> tuple:
    """What decides whether a model is the same: name, variant asked for, weights' SHA-256
    (not the path they were given by)."""
    entry = model if isinstance(model, dict) else {}
    return entry.get("name"), entry.get("variant"), entry.get("weights_sha256"), entry.get("high_crf_sha256")


def output_path(out_dir: Path, relative: Path, codec: str | None, suffix: str | None) -> Path:
    """Where the enhanced ``relative`` goes: the same relative path under ``out_dir`` with
    ``suffix`` if given, else the source's own extension where FFmpeg writes that container
    with the codec, else ``.mkv`` (so also for raw streams, :data:`RAW_STREAM_SUFFIXES`)."""
    from codecave.codec.writer import choose_codec

    target = out_dir / relative
    if suffix:
        return target.with_suffix(suffix if suffix.startswith(".") else f".{suffix}")
    if target.suffix.lower() in RAW_STREAM_SUFFIXES:  # no timestamps, audio or metadata there
        return target.with_suffix(".mkv")
    try:
        choose_codec(target, codec)
    except EncoderError:
        return target.with_suffix(".mkv")
    return target


@dataclass
class FleetResult:
    """What :func:`enhance_folder` did.

    Attributes:
        out_dir: the output folder; ``manifest`` its manifest file.
        done: files enhanced in this run (relative source paths).
        unchanged: files done before with the same source, model and settings (left alone).
        failed: file -> error.
        skipped: file -> why (OUT held a file this manifest did not make).
        frames: frames enhanced in this run; ``seconds`` its wall time.
    """

    out_dir: Path
    manifest: Path
    done: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


def enhance_folder(
    inputs: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model: str = "pnp_vcve",
    weights: str = "default",
    variant: str | None = None,
    options: object | None = None,
    encode: dict[str, object] | None = None,
    suffix: str | None = None,
    frames: tuple[int, int | None] | None = None,
    crf: float | None = None,
    on_damage: str = "stop",
    overwrite: bool = False,
    redo: bool = False,
    workers: int = 1,
    threads: int | None = None,
    ray: str | None = None,
    gpus: float = 0.0,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
) -> FleetResult:
    """Enhance every video that ``inputs`` names into the same relative path under ``out_dir``.

    Args:
        inputs: a folder, a list file or a glob pattern (:func:`find_videos`).
        out_dir: output folder (created); holds the manifest (:data:`MANIFEST_NAME`).
        model, weights, variant: as :func:`codecave.models.create_model`; built once per worker.
        options: :class:`codecave.enhance.EnhanceOptions` (device, tiles, chunk...).
        encode: :class:`~codecave.codec.encode.EncodeSettings` fields for the outputs over
            :data:`codecave.enhance.DEFAULT_OUTPUT`; ``codec`` None (the default) picks
            per output as ``enhance`` does. The encoder's ``threads`` is the worker's, so
            that an output depends on its input, settings and threads per worker, not on
            which worker or node made it (bit for bit with a lossless codec; see
            ``benchmarks/x264_reproducibility.py`` for lossy x264).
        suffix: output extension for every file (default: see :func:`output_path`).
        frames, crf, on_damage: as :func:`codecave.enhance.enhance_video`, for every file.
        overwrite: replace outputs this manifest did not make (else they are skipped).
            Outputs it made are replaced whenever their source, model or settings change.
        redo: enhance again the files done before with the same source, model and settings.
        workers: local worker processes (ignored with ``ray``).
        threads: PyTorch and encoder threads per worker or Ray task (default: the cores
            divided among the local workers; 1 per Ray task).
        ray: run as Ray tasks (see :func:`run_jobs`); IN and OUT on storage every node sees.
        gpus: GPUs per Ray task (the model then runs on CUDA unless ``options`` says otherwise).
        progress: one progress bar over files, with frames and failures.
        report: called with one line per file (per-file lines): done, failed, skipped or
            already done.

    Returns:
        A :class:`FleetResult`; ``failed`` non-empty means some files failed.

    Raises:
        ConfigError: nothing to enhance, OUT is a file, an unknown model, missing
            weights, two sources that would write one output, or ``ray`` without Ray.
    """
    from codecave.enhance import EnhanceOptions, _remove_stale_partials

    start = time.perf_counter()
    out_dir = _absolute(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: is a file; give a folder for the outputs of many videos")
    if gpus < 0:
        raise ConfigError(f"gpus {gpus}: must be 0 or more")
    if not out_dir.exists() and out_dir.suffix.lower() in video_suffixes():
        raise ConfigError(f"{out_dir}: looks like a video file name; many videos go into a folder (give one)")
    if Path(inputs).is_dir() and Path(os.path.realpath(out_dir)).is_relative_to(os.path.realpath(inputs)):
        raise ConfigError(f"{out_dir}: is inside IN ({inputs}); a later run over IN would take the outputs as "
                          "sources: choose OUT outside IN's tree")
    root, sources = find_videos(inputs, exclude=out_dir)
    options = options or EnhanceOptions(device="cuda" if gpus > 0 else "auto")
    per_worker = threads_per_worker(1, threads or 1) if ray else threads_per_worker(workers, threads)
    model_id = weights_identity(model, weights, variant, options.high_crf)
    # Workers (Ray's on other nodes too) start in their own folders: they get absolute paths.
    weights_arg = weights if weights in (None, "none", "default") else str(_absolute(weights))
    settings = {"encode": dict(sorted((encode or {}).items())), "suffix": suffix, "frames": list(frames) if frames else None,
                "input_crf": crf, "on_damage": on_damage,
                "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "device"}}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
    codec = (encode or {}).get("codec")
    result = FleetResult(out_dir, out_dir / MANIFEST_NAME)
    bar = None

    def tell(line: str) -> None:
        if report is not None:
            with bar.external_write_mode() if bar is not None else contextlib.nullcontext():
                report(line)

    with _lock(out_dir):
        manifest = Manifest(out_dir)
        claimed: dict[Path, str] = {}
        jobs: list[tuple[str, tuple]] = []
        base: dict[str, dict[str, object]] = {}
        before: dict[str, tuple[int, int, int] | None] = {}  # the output file as it was before its job
        for source in sources:
            relative = source.relative_to(root)
            name = relative.as_posix()
            target = output_path(out_dir, relative, codec, suffix)
            if target in claimed:
                raise ConfigError(f"{claimed[target]} and {name} would both write {target}; pass --suffix or rename one")
            claimed[target] = name
            previous = manifest.records.get(name)
            record: dict[str, object] = {"file": name, "output": target.relative_to(out_dir).as_posix(),
                                         "source": str(source), "model": model_id, "settings": settings}
            # The outputs this manifest has made for this file, under any name (--suffix changes it).
            made_before = set(previous.get("made", [])) if previous else set()
            if previous is not None and previous.get("output") and (
                    previous.get("result") in ("done", "started") or previous.get("output_made")):
                made_before.add(str(previous["output"]))
            record["made"] = sorted(made_before)
            made = record["output"] in made_before
            try:
                record.update(source_identity(source, previous))
            except OSError as exc:  # unreadable, or gone since the folder was listed
                error = f"{type(exc).__name__}: {exc}"
                result.failed[name] = error
                manifest.add({**record, "result": "failed", "error": error, "time": _now()})
                tell(f"failed {name}: {error}")
                continue
            elsewhere = (previous is not None and previous.get("source") not in (None, record["source"])
                         and previous.get("source_sha256") != record["source_sha256"])
            ours = made and not elsewhere
            same = (previous is not None and all(previous.get(k) == record[k] for k in ("output", "source_sha256", "settings"))
                    and _model_key(previous.get("model")) == _model_key(model_id))
            if same and previous.get("result") == "done" and target.exists() and not redo:
                result.unchanged.append(name)
                tell(f"already done {name}")
                continue
            if target.exists() and not ours and not overwrite:
                why = (f"the output was made from {previous['source']}, another file (--overwrite replaces it)"
                       if elsewhere else "the output exists and this manifest did not make it (--overwrite replaces it)")
                result.skipped[name] = why
                if previous is None or previous.get("result") != "skipped" or previous.get("error") != why:
                    manifest.add({**record, "result": "skipped", "error": why, "time": _now()})
                tell(f"skipped {name}: {why}")
                continue
            base[name] = record
            before[name] = _file_identity(target)
            jobs.append((name, (EnhanceJob(str(source), str(target), model, weights_arg, variant,
                                           {**dataclasses.asdict(options)},
                                           {**(encode or {}), "threads": per_worker}, frames, crf, on_damage,
                                           overwrite=True),)))
        def started(name: str) -> None:
            nonlocal bar
            if progress and bar is None:  # made at the first file handed out, so that errors come first
                from tqdm import tqdm

                bar = tqdm(total=len(jobs), unit="file", desc="enhance", dynamic_ncols=True)
            manifest.add({**base[name], "result": "started", "time": _now()})

        try:
            for name, value, error in run_jobs(enhance_job, jobs, workers=workers, threads=per_worker, ray=ray,
                                               gpus=gpus, on_start=started):
                if error is None:
                    assert isinstance(value, dict)
                    made_now = sorted({*base[name]["made"], str(base[name]["output"])})
                    manifest.add({**base[name], "result": "done", "error": None, **value, "made": made_now,
                                  "time": _now()})
                    result.done.append(name)
                    result.frames += int(value["frames"])
                    tell(f"done {name}: {value['frames']} frames in {value['seconds']:.1f} s")
                else:
                    # A worker that died leaves its hidden partial file; on this host it goes now
                    # (on another Ray node, when that node next writes this output).
                    target = out_dir / str(base[name]["output"])
                    _remove_stale_partials(target)
                    made_now = list(base[name]["made"])
                    if _file_identity(target) not in (None, before[name]):
                        # The worker died after its output was complete and in place (the rename is
                        # atomic) but before its result came back: the file is this manifest's, so a
                        # rerun redoes it instead of skipping it as someone else's.
                        made_now = sorted({*made_now, str(base[name]["output"])})
                    manifest.add({**base[name], "result": "failed", "error": error, "made": made_now,
                                  "time": _now()})
                    result.failed[name] = error
                    tell(f"failed {name}: {error}")
                if bar is not None:
                    bar.set_postfix(frames=result.frames, failed=len(result.failed), refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    result.seconds = time.perf_counter() - start
    return result
