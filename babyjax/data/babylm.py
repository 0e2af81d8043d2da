"""The BabyLM corpus as a TensorFlow Datasets builder writing ArrayRecord files (no TensorFlow needed): one example
per line of a release file (`text`, `domain` = file stem, 0-based `line`, whitespace word count `num_words`); empty
and undecodable lines are skipped, counted in the dataset's metadata and reported. Sources (a local release, the
packaged sample, the official download) and the per-source prepared folders: docs/architecture.md, "data/babylm.py"."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import logging
import os
import pathlib
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import IO, Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from babyjax import paths
from babyjax.errors import DataError, InputError, MissingError

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
TRACKS = ("strict_small", "strict")
# The official 2023 release (one zip: babylm_data/{babylm_10M,babylm_100M,babylm_dev,babylm_test}).
DOWNLOAD_URL = "https://github.com/babylm/babylm.github.io/raw/main/babylm_data.zip"
# Folder names per layout: (strict_small train, strict train, dev, test).
LAYOUTS = {
    "2023": {"strict_small": "babylm_10M", "strict": "babylm_100M", "dev": "babylm_dev", "test": "babylm_test"},
    "2024+": {"strict_small": "train_10M", "strict": "train_100M", "dev": "dev", "test": "test"},
}
# The folder of prepared data for the downloaded release (its fingerprint is only known once it is downloaded).
DOWNLOAD_FOLDER = "babylm-download"
# The packaged sample: the public-domain domains of the release (its licence table), see sample/README.md.
SAMPLE_ARCHIVE = "sample/babylm_sample.zip"
SAMPLE_DOMAINS = ("cbt", "children_stories")
SUFFIXES = {"train": (".train", ".txt"), "dev": (".dev", ".txt"), "test": (".test", ".txt")}
EXPECTED_LAYOUT = (
    "expected a BabyLM release folder in the 2023 layout (babylm_10M/ or babylm_100M/, babylm_dev/, "
    "babylm_test/, one <domain>.train/.dev/.test file per domain) or the 2024+ layout (train_10M/ or "
    "train_100M/, dev/, test/)"
)


# Capped configs are custom TFDS configs by design: drop TFDS's warning about them.
logging.getLogger("absl").addFilter(lambda record: "Using custom data configuration" not in record.getMessage())


@dataclasses.dataclass(eq=False)
class BabyLMConfig(tfds.core.BuilderConfig):
    """A track, optionally capped to the first `max_train_lines` training lines (spread over domains)."""

    track: str = "strict_small"
    max_train_lines: int = -1


def builder_config(track: str, max_train_lines: int = -1) -> BabyLMConfig:
    """The config for a track; a cap gets its own name (and so its own prepared folder)."""
    if track not in TRACKS:
        raise InputError(f"unknown BabyLM config {track!r}: use one of {', '.join(TRACKS)} (config.data.track)")
    if max_train_lines is None or max_train_lines < 0:
        return BabyLM.builder_configs[track]
    if max_train_lines == 0:
        raise InputError("data.max_train_lines must be positive, or -1 for all lines")
    return BabyLMConfig(
        name=f"{track}_lines{max_train_lines}",
        track=track,
        max_train_lines=max_train_lines,
        description=f"{track}, training text capped to {max_train_lines} lines",
    )


def find_release(root: str | os.PathLike, track: str) -> dict[str, list[pathlib.Path]]:
    """Files of each split of a release under `root` (or one level below it, e.g. `babylm_data/`)."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise MissingError(f"BabyLM folder {root} does not exist: {EXPECTED_LAYOUT}")
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    for base in candidates:
        for layout in LAYOUTS.values():
            folders = {"train": base / layout[track], "dev": base / layout["dev"], "test": base / layout["test"]}
            if all(f.is_dir() for f in folders.values()):
                files = {
                    s: sorted(p for p in f.iterdir() if p.is_file() and p.name.endswith(SUFFIXES[s]))
                    for s, f in folders.items()
                }
                empty = [str(folders[s]) for s, fs in files.items() if not fs]
                if empty:
                    raise MissingError(f"no {SUFFIXES['train'][0]} text files in {', '.join(empty)}: {EXPECTED_LAYOUT}")
                return files
    raise MissingError(f"no BabyLM {track} release found in {root}: {EXPECTED_LAYOUT}")


def source_fingerprint(files: Mapping[str, list[pathlib.Path]]) -> str:
    """Hash of the release's file names and sizes (cheap; tells two sources apart without reading them)."""
    h = hashlib.sha256()
    for split in SPLITS:
        for p in files[split]:
            h.update(f"{split}/{p.name}/{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def count_lines(path: pathlib.Path) -> int:
    """Number of lines of a file (a last line without newline counts)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def train_line_caps(files: list[pathlib.Path], max_lines: int) -> list[int]:
    """Lines kept from the start of each training file: `max_lines` in all, in proportion to file length."""
    n = np.array([count_lines(p) for p in files], dtype=np.int64)
    if max_lines < 0 or max_lines >= n.sum():
        return n.tolist()
    share = n * max_lines / n.sum()
    caps = np.floor(share).astype(np.int64)
    caps[np.argsort(-(share - caps), kind="stable")[: max_lines - caps.sum()]] += 1
    return caps.tolist()


def read_lines(path: pathlib.Path, max_lines: int, stats: dict[str, int]) -> Iterator[tuple[int, str]]:
    """(line index, text) for the non-empty UTF-8 lines among the first `max_lines` lines of a file."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f):
            if i >= max_lines:
                break
            stats["lines"] += 1
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                stats["undecodable"] += 1
                continue
            if not text.strip():
                stats["empty"] += 1
                continue
            yield i, text


def _unzip_once(archive: str | os.PathLike | IO[bytes], target: pathlib.Path) -> pathlib.Path:
    """Unzip `archive` into the folder `target`, once (TFDS's own extractor needs TensorFlow)."""

    def extract(tmp: pathlib.Path) -> None:
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp)  # zipfile drops absolute and '..' parts of member names

    return paths.write_folder(target, extract)


def sample_release(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The packaged public-domain sample as a 2023-layout release folder (the tiny config's default data.dir),
    unpacked once into `cache_dir` (default $XDG_CACHE_HOME/babyjax, else ~/.cache/babyjax) in a folder named by the
    archive's hash, so a changed sample is unpacked anew and never mixed with an older one."""
    data = resources.files(__package__).joinpath(SAMPLE_ARCHIVE).read_bytes()
    if cache_dir is None:
        cache_dir = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "babyjax"
    cache = pathlib.Path(cache_dir)
    target = cache / f"babylm_sample-{hashlib.sha256(data).hexdigest()[:12]}"
    try:
        return _unzip_once(io.BytesIO(data), target) / "babylm_data"
    except OSError as e:
        raise DataError(
            f"cannot unpack the packaged BabyLM sample into {cache} ({e.strerror or e}): set "
            "XDG_CACHE_HOME to a writable folder, or point data.dir at a BabyLM release"
        ) from e


def build_sample(release: str | os.PathLike, archive: str | os.PathLike) -> None:
    """Write the packaged sample from a release folder: its public-domain domains (`SAMPLE_DOMAINS`), every split,
    zipped in the 2023 layout under `babylm_data/`, reproducibly (fixed member order, dates and modes)."""
    files = find_release(release, "strict_small")
    kept = [p for s in SPLITS for p in files[s] if p.name.rsplit(".", 1)[0] in SAMPLE_DOMAINS]
    if {p.name.rsplit(".", 1)[0] for p in kept} != set(SAMPLE_DOMAINS):
        raise MissingError(f"{release} lacks some of the sample's domains ({', '.join(SAMPLE_DOMAINS)})")

    def write(tmp: os.PathLike) -> None:
        with zipfile.ZipFile(tmp, "w") as z:
            for p in kept:
                info = zipfile.ZipInfo(f"babylm_data/{p.parent.name}/{p.name}", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
                z.writestr(info, p.read_bytes(), compresslevel=9)

    paths.write_atomic(archive, write)


class BabyLM(tfds.core.GeneratorBasedBuilder):
    """BabyLM (Warstadt et al. 2023; Choshen et al. 2024): strict_small and strict training text, dev and test."""

    name = "babylm"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "One example per line: text, domain, line index, whitespace word count."
    }
    BUILDER_CONFIGS: ClassVar[list[BabyLMConfig]] = [
        BabyLMConfig(name="strict_small", track="strict_small", description="10M-word training set"),
        BabyLMConfig(name="strict", track="strict", description="100M-word training set"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put (or unzip) an official BabyLM release in the manual folder: {EXPECTED_LAYOUT}."

    def __init__(self, *, download_url: str = DOWNLOAD_URL, **kwargs: Any):
        self._download_url = download_url
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "domain": tfds.features.Text(),
                    "line": tfds.features.Scalar(np.int64),
                    "num_words": tfds.features.Scalar(np.int32),
                }
            ),
            homepage="https://babylm.github.io/",
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )  # examples stay in file order: domain by domain, line by line

    def _release_root(self, dl_manager: tfds.download.DownloadManager) -> pathlib.Path:
        try:
            return pathlib.Path(dl_manager.manual_dir)
        except AssertionError:  # no manual folder given (or it is empty): fetch the official release
            log.info("downloading the BabyLM release from %s", self._download_url)
            try:  # a HEAD request first: fail in seconds when offline, not after TFDS's minutes of retries
                urllib.request.urlopen(urllib.request.Request(self._download_url, method="HEAD"), timeout=30).close()
                archive = pathlib.Path(dl_manager.download(self._download_url))
                return _unzip_once(archive, archive.with_name(archive.name + ".extracted"))
            except Exception as e:  # network, HTTP or archive errors: one line that says what to do
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                raise DataError(
                    f"could not download the BabyLM release from {self._download_url} ({why}); point "
                    f"config.data.dir or BABYJAX_DATA_DIR at a local copy: {EXPECTED_LAYOUT}"
                ) from e

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        cfg: BabyLMConfig = self.builder_config
        files = find_release(self._release_root(dl_manager), cfg.track)
        caps = {"train": train_line_caps(files["train"], cfg.max_train_lines)}
        caps.update({s: [np.iinfo(np.int64).max] * len(files[s]) for s in ("dev", "test")})
        self.info.metadata["source_fingerprint"] = source_fingerprint(files)
        self.info.metadata["line_stats"] = {}
        return {s: self._generate_examples(s, files[s], caps[s]) for s in SPLITS}

    def _generate_examples(self, split: str, files: list[pathlib.Path], caps: list[int]) -> Iterator[tuple[int, dict]]:
        split_stats: dict[str, dict[str, int]] = {}
        key = 0
        for path, cap in zip(files, caps):
            stats = split_stats.setdefault(path.name, {"lines": 0, "empty": 0, "undecodable": 0, "examples": 0})
            domain = path.name.rsplit(".", 1)[0]
            for line, text in read_lines(path, cap, stats):
                stats["examples"] += 1
                yield key, {"text": text, "domain": domain, "line": line, "num_words": len(text.split())}
                key += 1
            if stats["undecodable"] and stats["undecodable"] == stats["lines"] - stats["empty"]:
                raise DataError(
                    f"{path} is not UTF-8 text ({stats['undecodable']} undecodable lines): "
                    "convert it with iconv -t UTF-8 or remove it"
                )
        if key == 0:
            raise DataError(f"the {split} split has no non-empty text lines in {', '.join(map(str, files))}")
        self.info.metadata["line_stats"][split] = split_stats
        _report(split, split_stats)


def _report(split: str, split_stats: Mapping[str, Mapping[str, int]]) -> None:
    """One warning per split that skipped lines: how many, and in which files."""
    skipped = {f: (s["empty"], s["undecodable"]) for f, s in split_stats.items() if s["empty"] or s["undecodable"]}
    if skipped:
        detail = ", ".join(f"{f}: {e} empty, {u} undecodable" for f, (e, u) in skipped.items())
        log.warning(
            "BabyLM %s: skipped %d empty and %d undecodable lines (%s)",
            split,
            sum(e for e, _ in skipped.values()),
            sum(u for _, u in skipped.values()),
            detail,
        )


_REPORTED: set[str] = set()


def read_records(source: Any, indices: Sequence[int]) -> list[tuple[bytes, bytes, int, int]]:
    """(text, domain, line, num_words) of the examples at `indices` of a BabyLM data source, parsing the stored
    tf.train.Example protos directly when it can (several times faster than TFDS's generic per-feature decoding,
    which matters when a whole split is read to tokenize it)."""
    idx = [int(i) for i in indices]
    raw = getattr(source, "data_source", None)
    if raw is None or not hasattr(raw, "__getitems__"):
        items = source.__getitems__(idx) if hasattr(source, "__getitems__") else [source[i] for i in idx]
        return [(x["text"], x["domain"], int(x["line"]), int(x["num_words"])) for x in items]
    out = []
    for record in raw.__getitems__(idx):
        f = tf_example_pb2.Example.FromString(record).features.feature
        out.append(
            (
                f["text"].bytes_list.value[0],
                f["domain"].bytes_list.value[0],
                f["line"].int64_list.value[0],
                f["num_words"].int64_list.value[0],
            )
        )
    return out


def _resolve(value: str, env: str) -> str | None:
    return value or os.environ.get(env) or None


def get_builder(data_cfg: Any, *, download_url: str | None = None, prepare: bool = True) -> BabyLM:
    """The prepared builder for `data_cfg` (track, max_train_lines, dir, tfds_dir), preparing it if needed, in the
    source's own folder under the TFDS root (config.data.tfds_dir, $BABYJAX_TFDS_DIR, else TFDS's default): a local
    release (config.data.dir or $BABYJAX_DATA_DIR) in `babylm-<fingerprint>`, else the download ($BABYJAX_BABYLM_URL
    overrides the URL) in `babylm-download`. A prepared dataset is reused and never overwritten. prepare=False never
    downloads or prepares: a dataset not prepared yet is a DataError (the analysis reads training tokens this way)."""
    config = builder_config(data_cfg.track, data_cfg.max_train_lines)
    source = _resolve(data_cfg.dir, "BABYJAX_DATA_DIR")
    fingerprint = source_fingerprint(find_release(source, config.track)) if source else None  # fails early
    url = download_url or os.environ.get("BABYJAX_BABYLM_URL") or DOWNLOAD_URL
    root = _resolve(data_cfg.tfds_dir, "BABYJAX_TFDS_DIR") or tfds.core.constants.DATA_DIR
    make = functools.partial(BabyLM, config=config, file_format="array_record", download_url=url)
    builder = make(data_dir=os.path.join(root, f"babylm-{fingerprint}" if fingerprint else DOWNLOAD_FOLDER))
    if not builder.is_prepared():  # prepared by an older babyjax, before per-source folders: <root>/babylm/...
        legacy = make(data_dir=root)
        if legacy.is_prepared() and fingerprint in (None, legacy.info.metadata.get("source_fingerprint")):
            builder = legacy
    if builder.is_prepared():
        if str(builder.data_path) not in _REPORTED:  # once per process, not on every loader
            _REPORTED.add(str(builder.data_path))
            for split, split_stats in builder.info.metadata.get("line_stats", {}).items():
                _report(split, split_stats)
        return builder
    if not prepare:
        raise DataError(
            f"the BabyLM {config.name} dataset is not prepared in {builder.data_dir}: train the run on "
            "this machine first (or point data.tfds_dir / BABYJAX_TFDS_DIR at the folder that holds it)"
        )
    download_config = tfds.download.DownloadConfig(manual_dir=source) if source else None
    builder.download_and_prepare(download_config=download_config, file_format="array_record")
    _REPORTED.add(str(builder.data_path))  # preparing reported its skipped lines already
    return builder


def prepare(data_cfg: Any) -> dict[str, Any]:
    """Prepare (or reuse) BabyLM for `data_cfg` and return a random-access data source per split."""
    builder = get_builder(data_cfg)
    return {split: builder.as_data_source(split) for split in SPLITS}
