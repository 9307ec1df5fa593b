"""Runs (codec, setting, image) jobs with a per-job cache, in parallel if asked, and aggregates."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.defaults import AUTO_MODEL

from ..imageio import load_rgb_array
from .codecs import Codec, classical_codec

LIC_PREFIX = "lic-"
METRICS = ("bpp", "psnr", "ms_ssim", "haarpsi", "encode_s", "decode_s")


@dataclass(frozen=True)
class Job:
    codec: str  # classical name, or "lic-<model>"
    setting: str
    image: str  # path

    def cache_path(self, root: Path) -> Path:
        setting = re.sub(r"[^A-Za-z0-9_.=-]", "_", self.setting)
        return root / "cache" / self.codec / setting / (Path(self.image).stem + ".json")


def model_weights(model: str, weight_map: dict[str, str]):
    """The --weights of a benchmarked model: its file, or for `auto` every file given."""
    if model == AUTO_MODEL:
        return {name: Path(path) for name, path in weight_map.items()}
    return Path(weight_map[model]) if model in weight_map else None


def lic_codec(model: str, weights, threads: int) -> Codec:
    """A zoo model as a benchmark codec; bytes are real containers (header included)."""
    import torch

    from ..codec import CodecSession, decode_file, encode_image
    from ..imageio import ImageData

    torch.set_num_threads(threads)
    if model == AUTO_MODEL:
        return _auto_codec(weights, threads)
    session = CodecSession({model: weights} if weights else {}, engine="torch")  # the torch codec, both ways
    loaded = session.get(model)

    def encode(pixels: np.ndarray, setting: str) -> bytes:
        return encode_image(ImageData(pixels), loaded, int(setting.partition("=")[2]) - 1)

    def decode(data: bytes) -> np.ndarray:
        return decode_file(data, session).image.pixels

    qualities = tuple(f"q={q + 1}" for q in range(loaded.codec.qualities.count))
    options = f"lic {model}, weights {loaded.weights_id.hex()}, {threads} torch thread(s)"
    return Codec(LIC_PREFIX + model, options, qualities, encode, decode, threads=str(threads))


def _auto_codec(weights: dict[str, Path] | None, threads: int) -> Codec:
    """`lic encode --model auto` as a benchmark codec (weights: files for its candidates, e.g. a
    variant not shipped yet)."""
    from .. import model_choice
    from ..codec import CodecSession, decode_file
    from ..imageio import ImageData

    # lic bench hands auto every --weights file; those of the other benchmarked models are not its
    own = {name: path for name, path in (weights or {}).items() if model_choice.is_candidate(name)}
    session = CodecSession(own, engine="torch")
    candidates = model_choice.candidates(session)

    def encode(pixels: np.ndarray, setting: str) -> bytes:
        return model_choice.encode_cheapest(ImageData(pixels), candidates, int(setting.partition("=")[2]) - 1,
                                            session).data

    def decode(data: bytes) -> np.ndarray:
        return decode_file(data, session).image.pixels

    qualities = tuple(f"q={q + 1}" for q in range(candidates[0].codec.qualities.count))
    ids = ", ".join(f"{item.name} {item.weights_id.hex()}" for item in candidates)
    return Codec(LIC_PREFIX + AUTO_MODEL, f"lic auto ({ids}), {threads} torch thread(s)", qualities, encode, decode,
                 threads=str(threads))


_WORKER_CODECS: dict[str, Codec] = {}
_WORKER_CONFIG: dict = {}


def _init_worker(config: dict) -> None:
    """Every job of a worker (codec and metrics) uses the configured torch thread count, so that
    parallel jobs do not oversubscribe the cores."""
    import torch

    _WORKER_CODECS.clear()  # built under an earlier configuration (another run in this process)
    _WORKER_CONFIG.clear()
    _WORKER_CONFIG.update(config)
    torch.set_num_threads(config["threads"])


def _codec_in_worker(name: str) -> Codec:
    if name not in _WORKER_CODECS:
        if name.startswith(LIC_PREFIX):
            model = name[len(LIC_PREFIX):]
            weights = model_weights(model, _WORKER_CONFIG.get("weights", {}))
            _WORKER_CODECS[name] = lic_codec(model, weights, _WORKER_CONFIG["threads"])
        else:
            codec, reason = classical_codec(name)
            if codec is None:
                raise RuntimeError(reason)
            _WORKER_CODECS[name] = codec
    return _WORKER_CODECS[name]


def run_job(job: Job) -> dict:
    codec = _codec_in_worker(job.codec)
    from ..metrics import haarpsi, ms_ssim, psnr  # torch: only where jobs run

    pixels = load_rgb_array(Path(job.image))
    started = time.perf_counter()
    data = codec.encode(pixels, job.setting)
    encoded = time.perf_counter()
    decoded = codec.decode(data)
    finished = time.perf_counter()
    if decoded.shape != pixels.shape:
        raise RuntimeError(f"{job.codec} decoded {decoded.shape}, expected {pixels.shape}")
    return {
        "codec": job.codec, "setting": job.setting, "image": Path(job.image).name, "bytes": len(data),
        "bpp": 8 * len(data) / (pixels.shape[0] * pixels.shape[1]), "psnr": psnr(pixels, decoded),
        "ms_ssim": ms_ssim(pixels, decoded), "haarpsi": haarpsi(pixels, decoded),
        "encode_s": encoded - started, "decode_s": finished - encoded, "threads": codec.threads,
        "options": codec.options, **_model_of(job.codec, data),
    }


def _model_of(codec: str, data: bytes) -> dict:
    """For lic codecs, the model the file names (which --model auto chose)."""
    if not codec.startswith(LIC_PREFIX):
        return {}
    from bitstream.container import unpack

    return {"model": unpack(data).model_id}


def signature(options: str, setting: str) -> str:
    return hashlib.sha256(f"{options}|{setting}".encode()).hexdigest()[:16]


def load_cached(job: Job, root: Path, options: str) -> dict | None:
    path = job.cache_path(root)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    return record if record.get("signature") == signature(options, job.setting) else None


def store(job: Job, root: Path, record: dict) -> None:
    path = job.cache_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "signature": signature(record["options"], job.setting)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def execute(jobs: list[Job], root: Path, options: dict[str, str], jobs_in_parallel: int, config: dict,
            on_done) -> list[dict]:
    """Run what is not cached; on_done(record) after each job (cached ones first).

    Classical codecs run in jobs_in_parallel worker processes of one torch thread each. lic models
    run afterwards, one job at a time in this process with config["threads"]: their synthesis always
    takes SYNTHESIS_THREADS threads (so that decoded pixels never depend on the thread count), and
    next to other jobs their timings would measure an oversubscribed CPU."""
    records, parallel, sequential = [], [], []
    for job in jobs:
        cached = load_cached(job, root, options[job.codec])
        if cached is not None:
            records.append(cached)
            on_done(cached)
        elif jobs_in_parallel > 1 and not job.codec.startswith(LIC_PREFIX):
            parallel.append(job)
        else:
            sequential.append(job)

    def finish(job: Job, record: dict) -> None:
        store(job, root, record)
        records.append(record)
        on_done(record)

    if parallel:
        with ProcessPoolExecutor(jobs_in_parallel, initializer=_init_worker,
                                 initargs=({**config, "threads": 1},)) as pool:
            futures = {pool.submit(run_job, job): job for job in parallel}
            for future in as_completed(futures):
                finish(futures[future], future.result())
    _init_worker(config)
    for job in sequential:
        finish(job, run_job(job))
    return records


def aggregate(records: list[dict]) -> dict[str, list[dict]]:
    """Per codec, the mean of every metric per setting, sorted by rate."""
    curves: dict[str, list[dict]] = {}
    keys = sorted({(r["codec"], r["setting"]) for r in records})
    for codec, setting in keys:
        rows = [r for r in records if r["codec"] == codec and r["setting"] == setting]
        point = {"setting": setting, "images": len(rows)}
        for metric in METRICS:
            values = [r[metric] for r in rows if r[metric] is not None]
            point[metric] = float(np.mean(values)) if values else None
        curves.setdefault(codec, []).append(point)
    for points in curves.values():
        points.sort(key=lambda p: p["bpp"])
    return curves
