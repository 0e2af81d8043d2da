"""BabyLM TFDS builder: both layouts, download from a loopback server, caps, reuse per source, and bad input."""

import functools
import http.server
import logging
import pathlib
import threading
import zipfile

import pytest
import tensorflow_datasets as tfds

from babyjax.data import babylm
from configs.base import get_config

SAMPLE_FILES = {"babylm_10M": ".train", "babylm_dev": ".dev", "babylm_test": ".test"}


def data_cfg(source, tfds_dir, track="strict_small", max_train_lines=-1):
    c = get_config().data
    c.dir, c.tfds_dir, c.track, c.max_train_lines = str(source), str(tfds_dir), track, max_train_lines
    return c


def small_release(sample: pathlib.Path, root: pathlib.Path, layout: str = "2023", lines: int = 60) -> pathlib.Path:
    """The first `lines` lines of every sample file, laid out as the 2023 or 2024+ release."""
    names = babylm.LAYOUTS[layout]
    for folder, split in zip(SAMPLE_FILES, ("strict_small", "dev", "test")):
        (root / names[split]).mkdir(parents=True)
        for f in sorted((sample / folder).iterdir()):
            text = f.read_bytes().split(b"\n")[:lines]
            (root / names[split] / f.name).write_bytes(b"\n".join(text) + b"\n")
    return root


def snapshot(directory: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file (but TFDS's own .config bookkeeping, rewritten on each access)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file() and ".config" not in p.parts
    }


@pytest.fixture(scope="session")
def full_sample(babylm_sample, tmp_path_factory):
    tfds_dir = tmp_path_factory.mktemp("tfds_full")
    return babylm.prepare(data_cfg(babylm_sample, tfds_dir)), tfds_dir


def test_full_sample_keeps_every_line_with_domain_position_and_words(babylm_sample, full_sample):
    sources, _ = full_sample
    for split, (folder, suffix) in zip(babylm.SPLITS, SAMPLE_FILES.items()):
        expected = []
        for f in sorted((babylm_sample / folder).glob(f"*{suffix}")):
            lines = f.read_text(encoding="utf-8").split("\n")
            expected += [(f.stem, i, t) for i, t in enumerate(lines) if t.strip()]
        src = sources[split]
        assert len(src) == len(expected)
        for k in [0, 1, len(src) // 3, len(src) // 2, len(src) - 1]:
            x, (domain, line, text) = src[k], expected[k]
            assert (x["domain"].decode(), int(x["line"]), x["text"].decode()) == (domain, line, text)
            assert int(x["num_words"]) == len(text.split())
    # Consecutive text stays consecutive: the dev split is every dev line, in file order.
    dev = sources["dev"].__getitems__(list(range(len(sources["dev"]))))
    assert {x["domain"] for x in dev} == {b"aochildes", b"cbt", b"children_stories", b"switchboard"}
    keys = [(x["domain"], int(x["line"])) for x in dev]
    assert keys == sorted(keys)


def prepared_folder(tfds_dir: pathlib.Path, source: pathlib.Path) -> pathlib.Path:
    """Where a source's datasets are prepared: <tfds root>/babylm-<source fingerprint>/babylm."""
    return pathlib.Path(babylm.get_builder(data_cfg(source, tfds_dir), prepare=False).data_dir).parents[1]


def test_preparing_again_reuses_and_a_new_cap_gets_its_own_folder(babylm_sample, full_sample):
    _, tfds_dir = full_sample
    prepared = prepared_folder(tfds_dir, babylm_sample)
    fingerprint = babylm.source_fingerprint(babylm.find_release(babylm_sample, "strict_small"))
    assert prepared == tfds_dir / f"babylm-{fingerprint}" / "babylm"
    before = snapshot(prepared / "strict_small")
    again = babylm.prepare(data_cfg(babylm_sample, tfds_dir))
    assert len(again["train"]) == 94140
    assert snapshot(prepared / "strict_small") == before
    capped = babylm.prepare(data_cfg(babylm_sample, tfds_dir, max_train_lines=1000))
    assert len(capped["train"]) == 1000  # the sample has no empty lines among each file's first lines
    domains = {x["domain"] for x in capped["train"].__getitems__(list(range(1000)))}
    assert len(domains) == 4  # the cap takes the start of every domain, in proportion
    assert (prepared / "strict_small_lines1000").is_dir()
    assert snapshot(prepared / "strict_small") == before


def test_2024_layout_counts_empty_and_undecodable_lines(babylm_sample, tmp_path, caplog):
    root = small_release(babylm_sample, tmp_path / "release", layout="2024+")
    f = root / "train_10M" / "cbt.train"
    f.write_bytes(f.read_bytes() + b"\n   \nbad \xff\xfe byte\nlast line\n")
    with caplog.at_level(logging.WARNING):
        sources = babylm.prepare(data_cfg(root, tmp_path / "tfds"))
    stats = babylm.get_builder(data_cfg(root, tmp_path / "tfds")).info.metadata["line_stats"]["train"]["cbt.train"]
    assert (stats["empty"], stats["undecodable"]) == (2, 1)
    assert stats["examples"] == stats["lines"] - 3
    assert any("1 undecodable" in r.getMessage() for r in caplog.records)
    texts = [x["text"] for x in sources["train"].__getitems__(list(range(len(sources["train"]))))]
    assert b"last line" in texts and len(texts) == 4 * 60 + 1


def test_download_from_a_loopback_server(babylm_sample, tmp_path, monkeypatch):
    root = small_release(babylm_sample, tmp_path / "babylm_data")
    archive = tmp_path / "www" / "babylm_data.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:  # like the official zip: one top-level babylm_data/ folder
        for p in sorted(root.rglob("*")):
            z.write(p, p.relative_to(tmp_path))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv("BABYJAX_DATA_DIR", raising=False)
        monkeypatch.setenv("BABYJAX_BABYLM_URL", f"http://127.0.0.1:{server.server_address[1]}/babylm_data.zip")
        sources = babylm.prepare(data_cfg("", tmp_path / "tfds"))
    finally:
        server.shutdown()
        thread.join()
    assert [len(sources[s]) for s in babylm.SPLITS] == [240, 240, 240]
    assert (tmp_path / "tfds" / babylm.DOWNLOAD_FOLDER / "babylm" / "strict_small").is_dir()
    first_line = (babylm_sample / "babylm_10M" / "aochildes.train").read_text().split("\n")[0]
    assert sources["train"][0]["text"].decode() == first_line
    # Prepared once, it is reused without the network.
    monkeypatch.setenv("BABYJAX_BABYLM_URL", "http://127.0.0.1:9/nothing.zip")
    assert len(babylm.prepare(data_cfg("", tmp_path / "tfds"))["dev"]) == 240


def test_unreachable_download_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("BABYJAX_DATA_DIR", raising=False)
    monkeypatch.setenv("BABYJAX_BABYLM_URL", "http://127.0.0.1:9/babylm_data.zip")
    with pytest.raises(babylm.DataError, match="could not download") as e:
        babylm.prepare(data_cfg("", tmp_path / "tfds"))
    assert "\n" not in str(e.value) and "BABYJAX_DATA_DIR" in str(e.value)


def test_bad_input_gives_one_line_errors_and_keeps_prepared_data(babylm_sample, full_sample, tmp_path):
    _, tfds_dir = full_sample
    before = snapshot(tfds_dir)
    # A folder with no BabyLM files.
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="2023 layout .*2024\\+ layout") as e:
        babylm.prepare(data_cfg(tmp_path / "empty", tfds_dir, max_train_lines=7))
    assert "\n" not in str(e.value)
    # A file that is not UTF-8 at all.
    bad = small_release(babylm_sample, tmp_path / "latin1")
    (bad / "babylm_dev" / "cbt.dev").write_bytes("caf\xe9 na\xefve\n\xe0 bient\xf4t\n".encode("latin-1"))
    with pytest.raises(babylm.DataError, match="cbt.dev is not UTF-8") as e:
        babylm.prepare(data_cfg(bad, tfds_dir, max_train_lines=5))
    assert "\n" not in str(e.value)
    # An empty split.
    empty = small_release(babylm_sample, tmp_path / "emptydev")
    for f in (empty / "babylm_dev").iterdir():
        f.write_bytes(b"\n\n")
    with pytest.raises(babylm.DataError, match="dev split has no non-empty text lines"):
        babylm.prepare(data_cfg(empty, tfds_dir, max_train_lines=6))
    # An unknown config name.
    with pytest.raises(ValueError, match="unknown BabyLM config 'strict-small'"):
        babylm.prepare(data_cfg(babylm_sample, tfds_dir, track="strict-small"))
    # Another source into the same root: not mixed, it gets its own prepared folder.
    other = small_release(babylm_sample, tmp_path / "other")
    assert [len(x) for x in babylm.prepare(data_cfg(other, tfds_dir)).values()] == [240, 240, 240]
    assert prepared_folder(tfds_dir, other) != prepared_folder(tfds_dir, babylm_sample)
    after = snapshot(tfds_dir)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not any("lines5" in k or "lines6" in k or "lines7" in k for k in after)  # failed builds left nothing


def test_switching_sources_keeps_both_and_prepare_false_never_prepares(babylm_sample, tmp_path):
    tfds_dir = tmp_path / "tfds"
    first, second = (small_release(babylm_sample, tmp_path / name, lines=n) for name, n in (("a", 60), ("b", 30)))
    with pytest.raises(babylm.DataError, match="not prepared") as e:
        babylm.get_builder(data_cfg(first, tfds_dir), prepare=False)
    assert "\n" not in str(e.value) and not tfds_dir.exists()
    assert len(babylm.prepare(data_cfg(first, tfds_dir))["train"]) == 240
    before = snapshot(tfds_dir)
    assert len(babylm.prepare(data_cfg(second, tfds_dir))["train"]) == 120  # no error, no user action
    assert {k: v for k, v in snapshot(tfds_dir).items() if k in before} == before
    for source, n in ((first, 240), (second, 120)):  # both stay prepared, and prepare=False reads them
        assert len(babylm.get_builder(data_cfg(source, tfds_dir), prepare=False).as_data_source("train")) == n
    assert len(list(tfds_dir.glob("babylm-*"))) == 2


def test_data_prepared_before_per_source_folders_is_reused(babylm_sample, tmp_path):
    release, tfds_dir = small_release(babylm_sample, tmp_path / "release"), tmp_path / "tfds"
    old = babylm.BabyLM(
        config=babylm.builder_config("strict_small"), data_dir=str(tfds_dir), file_format="array_record"
    )
    old.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(release)), file_format="array_record"
    )  # the layout of older babyjax: <root>/babylm/<config>
    before = snapshot(tfds_dir)
    assert babylm.get_builder(data_cfg(release, tfds_dir), prepare=False).data_path == old.data_path
    assert len(babylm.prepare(data_cfg(release, tfds_dir))["dev"]) == 240 and snapshot(tfds_dir) == before
    other = small_release(babylm_sample, tmp_path / "other", lines=30)  # another source never reuses it
    assert len(babylm.prepare(data_cfg(other, tfds_dir))["dev"]) == 120
