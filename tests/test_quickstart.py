"""The quick start runs anywhere: the packaged public-domain sample is a valid release and the tiny config's default."""

import pathlib
import sys
import zipfile

import tomllib

from babyjax.data import babylm

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ARCHIVE = ROOT / "babyjax" / "data" / babylm.SAMPLE_ARCHIVE
# Lines of each file: the cbt and children_stories files of the development sample (../shared/data/babylm_sample).
LINES = {
    "cbt.train": 14981,
    "children_stories.train": 7200,
    "cbt.dev": 832,
    "children_stories.dev": 400,
    "cbt.test": 833,
    "children_stories.test": 400,
}


def test_packaged_sample_unpacks_once_to_a_public_domain_release(tmp_path):
    assert ARCHIVE.stat().st_size < 2_000_000
    release = babylm.sample_release(tmp_path / "cache")
    files = babylm.find_release(release, "strict_small")
    assert {s: [p.name for p in fs] for s, fs in files.items()} == {
        "train": ["cbt.train", "children_stories.train"],
        "dev": ["cbt.dev", "children_stories.dev"],
        "test": ["cbt.test", "children_stories.test"],
    }
    found = {p.name: p for fs in files.values() for p in fs}
    assert {name: len(p.read_bytes().splitlines()) for name, p in found.items()} == LINES
    words = sum(len(p.read_text(encoding="utf-8").split()) for p in found.values())
    assert 600_000 < words < 700_000
    with zipfile.ZipFile(ARCHIVE) as z:  # nothing else is shipped: no CHILDES, no Switchboard, no evaluation set
        assert sorted(pathlib.PurePath(n).name for n in z.namelist()) == sorted(LINES)
    # Unpacked once: a second call returns the same folder and rewrites nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in found.values()}
    assert babylm.sample_release(tmp_path / "cache") == release
    assert {p: p.stat().st_mtime_ns for p in found.values()} == mtimes
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [release.parent.name]  # no temporary folder left


def test_packaged_sample_is_the_development_sample_and_rebuilds(babylm_sample, tmp_path):
    rebuilt = tmp_path / "rebuilt.zip"
    babylm.build_sample(babylm_sample, rebuilt)
    with zipfile.ZipFile(ARCHIVE) as shipped, zipfile.ZipFile(rebuilt) as z:
        assert shipped.namelist() == z.namelist()
        for name in z.namelist():
            assert (
                shipped.read(name)
                == z.read(name)
                == (babylm_sample / pathlib.PurePath(name).relative_to("babylm_data")).read_bytes()
            )


def test_sample_is_package_data():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert babylm.SAMPLE_ARCHIVE in project["tool"]["setuptools"]["package-data"]["babyjax.data"]


def test_tiny_config_without_a_data_folder_trains_on_the_sample(tmp_path, monkeypatch):
    from configs import tiny

    monkeypatch.delenv("BABYJAX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = tiny.get_config().data
    assert data.dir == str(babylm.sample_release()) and data.dir.startswith(str(tmp_path / "xdg" / "babyjax"))
    assert babylm.find_release(data.dir, data.track)["train"][0].name == "cbt.train"
    monkeypatch.setenv("BABYJAX_DATA_DIR", str(tmp_path / "my_release"))  # a release folder of the user's own
    assert tiny.get_config().data.dir == str(tmp_path / "my_release")
