"""Omniglot loading, caching, splits, rotations, download, and the few-shot sampler.

The loader tests run on tiny zips built here with the real layout
(<zip-stem>/<Alphabet>/characterNN/<drawing>.png, 105x105 1-bit PNGs, 20
drawings per character); one test reads the shared subset where it exists.
"""
import functools
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from tinymeta.data import omniglot
from tinymeta.data.omniglot import (DownloadError, download, load_omniglot,
                                    rotate_classes, split_by_alphabet, split_by_character)
from tinymeta.data.sampler import FewShotSampler

SHARED = Path(__file__).resolve().parents[2] / "shared/data/omniglot"
ALPHABETS = {"Alpha": 3, "Beta": 3, "Gamma": 2, "Delta": 2}   # characters per alphabet


# ------------------------------------------------------------------ fixtures

def drawing_png(character, drawer):
    """A 105x105 1-bit PNG, black on white: one stroke in the top-left quarter,
    whose length tells the character and whose row tells the drawer."""
    pixels = np.ones((105, 105), dtype=bool)
    row = 5 + drawer
    pixels[row:row + 4, 5:15 + 3 * character] = False
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path, alphabets=ALPHABETS, drawings=omniglot.DRAWINGS, broken=None):
    """A zip of `alphabets` ({name: characters}); the drawing named `broken` is not a PNG."""
    stem = path.stem
    with zipfile.ZipFile(path, "w") as archive:
        for a, (alphabet, n_characters) in enumerate(alphabets.items()):
            for c in range(n_characters):
                for drawer in range(drawings):
                    file = f"{a:02d}{c:02d}_{drawer + 1:02d}.png"
                    png = b"not a png" if file == broken else drawing_png(c, drawer)
                    archive.writestr(f"{stem}/{alphabet}/character{c + 1:02d}/{file}", png)
    return path


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory):
    return write_zip(tmp_path_factory.mktemp("data") / "images_background.zip")


@pytest.fixture
def data_dir(tmp_path, tiny_zip):
    """A folder holding the tiny zip, as a user's data folder would."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / tiny_zip.name).write_bytes(tiny_zip.read_bytes())
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_zip, tmp_path_factory):
    return load_omniglot(tiny_zip, cache_dir=tmp_path_factory.mktemp("cache"))


# ------------------------------------------------------------------- loading

def test_images_have_the_documented_shape_dtype_and_range(tiny):
    n_characters = sum(ALPHABETS.values())
    assert tiny.images.shape == (n_characters, 20, 28, 28)
    assert tiny.images.dtype == np.float32
    assert tiny.images.min() >= 0 and tiny.images.max() <= 1
    assert len(tiny.alphabets) == len(tiny.characters) == len(tiny.sources) == n_characters
    assert set(tiny.alphabets) == set(ALPHABETS)
    assert set(tiny.sources) == {"images_background"}


def test_strokes_are_high_and_background_low(tiny):
    top_left, bottom_right = tiny.images[..., :14, :14], tiny.images[..., 14:, 14:]
    assert (top_left.max(axis=(-2, -1)) > 0.5).all()
    assert (bottom_right == 0).all()


def test_second_load_reads_the_cache_without_opening_the_zip(tiny_zip, tmp_path, monkeypatch):
    first = load_omniglot(tiny_zip, cache_dir=tmp_path)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]      # no temporary file left

    def no_decoding(source):
        raise AssertionError(f"decoded {source} again instead of reading the cache")
    monkeypatch.setattr(omniglot, "_decode_source", no_decoding)
    second = load_omniglot(tiny_zip, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.characters, second.characters)


def test_a_changed_zip_is_decoded_again(data_dir, tmp_path):
    load_omniglot(data_dir, cache_dir=tmp_path / "cache")
    write_zip(data_dir / "images_background.zip", {"Alpha": 1})
    assert len(load_omniglot(data_dir, cache_dir=tmp_path / "cache")) == 1


def test_an_extracted_folder_reads_like_its_zip(tiny_zip, tiny, tmp_path):
    with zipfile.ZipFile(tiny_zip) as archive:
        archive.extractall(tmp_path / "data")
    from_folder = load_omniglot(tmp_path / "data", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(from_folder.images, tiny.images)
    np.testing.assert_array_equal(from_folder.alphabets, tiny.alphabets)


def test_data_is_found_through_the_environment_variable(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYMETA_DATA", str(data_dir))
    assert len(load_omniglot(cache_dir=tmp_path)) == sum(ALPHABETS.values())


def test_missing_data_names_every_place_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYMETA_DATA", str(tmp_path / "from_env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(FileNotFoundError) as error:
        load_omniglot(cache_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "from_env") in message
    assert str(tmp_path / "xdg" / "tinymeta" / "omniglot") in message
    assert "download" in message and omniglot.OMNIGLOT_URL in message


def test_an_explicit_root_without_data_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty")):
        load_omniglot(tmp_path / "empty", cache_dir=tmp_path)


@pytest.mark.parametrize("damage", ["not a zip", "truncated"])
def test_a_corrupt_zip_is_rejected_naming_the_file(tiny_zip, tmp_path, damage):
    path = tmp_path / "images_background.zip"
    path.write_bytes(b"<html>404 not found</html>" if damage == "not a zip"
                     else tiny_zip.read_bytes()[:5000])
    with pytest.raises(ValueError, match="images_background.zip: not a valid zip"):
        load_omniglot(tmp_path, cache_dir=tmp_path / "cache")


def test_a_png_that_does_not_decode_is_named(tmp_path):
    write_zip(tmp_path / "images_background.zip", {"Alpha": 1}, broken="0000_07.png")
    with pytest.raises(ValueError, match="images_background.zip: Alpha/character01/0000_07.png"):
        load_omniglot(tmp_path, cache_dir=tmp_path / "cache")


def test_a_character_without_20_drawings_is_named(tmp_path):
    write_zip(tmp_path / "images_background.zip", {"Alpha": 1}, drawings=19)
    with pytest.raises(ValueError, match="Alpha/character01 has 19 drawings, expected 20"):
        load_omniglot(tmp_path, cache_dir=tmp_path / "cache")


# -------------------------------------------------------------------- splits

def keys(dataset):
    return {f"{a}/{c}" for a, c in zip(dataset.alphabets, dataset.characters)}


@pytest.mark.parametrize("split", [split_by_character, split_by_alphabet])
def test_splits_are_disjoint_and_cover_every_character(tiny, split):
    parts = split(tiny, np.random.default_rng(0), rotate_train=False)
    train, validation, test = keys(parts.train), keys(parts.validation), keys(parts.test)
    assert not (train & validation or train & test or validation & test)
    assert train | validation | test == keys(tiny)
    assert min(len(train), len(validation), len(test)) >= 1


@pytest.mark.parametrize("split", [split_by_character, split_by_alphabet])
def test_splits_are_reproducible_from_the_seed(tiny, split):
    first, second = (split(tiny, np.random.default_rng(7)) for _ in range(2))
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(first, name).images, getattr(second, name).images)


def test_alphabet_split_keeps_alphabets_whole(tiny):
    parts = split_by_alphabet(tiny, np.random.default_rng(1), fractions=(0.5, 0.25, 0.25))
    alphabets = [set(part.alphabets) for part in (parts.train, parts.validation, parts.test)]
    assert [len(a) for a in alphabets] == [2, 1, 1]
    for part, names in zip((parts.train, parts.validation, parts.test), alphabets):
        assert len(part) == sum(ALPHABETS[name] for name in names) * (4 if part is parts.train else 1)


def test_character_split_follows_the_fractions(tiny):
    parts = split_by_character(tiny, np.random.default_rng(0), fractions=(0.6, 0.2, 0.2),
                               rotate_train=False)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (6, 2, 2)


def test_every_split_asked_for_gets_a_character(tiny):
    parts = split_by_character(tiny, np.random.default_rng(0), fractions=(0.9, 0.05, 0.05),
                               rotate_train=False)
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (8, 1, 1)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_fractions_are_rejected(tiny, fractions):
    with pytest.raises(ValueError, match="fractions must be three non-negative numbers"):
        split_by_character(tiny, np.random.default_rng(0), fractions=fractions)


def test_too_few_alphabets_for_the_fractions_are_rejected(tiny):
    with pytest.raises(ValueError, match=r"cannot cut 4 groups by fractions \(0.2, 0.4, 0.4\)"):
        split_by_alphabet(tiny, np.random.default_rng(0), fractions=(0.2, 0.4, 0.4))


def test_split_needs_a_generator(tiny):
    with pytest.raises(TypeError, match="Generator"):
        split_by_character(tiny, 0)


# ----------------------------------------------------------------- rotations

def test_each_rotation_is_a_class_made_with_rot90(tiny):
    rotated = tiny.rotated()
    n = len(tiny)
    assert len(rotated) == 4 * n
    for k in range(4):
        block = slice(k * n, (k + 1) * n)
        np.testing.assert_array_equal(rotated.images[block], np.rot90(tiny.images, k, axes=(2, 3)))
        np.testing.assert_array_equal(rotated.characters[block], tiny.characters)
        assert (rotated.rotations[block] == k).all()


def test_rotate_classes_turns_the_image_axes_of_any_class_array():
    images = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    np.testing.assert_array_equal(rotate_classes(images)[2 + 1, 0], np.rot90(images[1, 0]))


def test_only_training_characters_are_rotated(tiny):
    plain = split_by_character(tiny, np.random.default_rng(3), rotate_train=False)
    parts = split_by_character(tiny, np.random.default_rng(3))
    np.testing.assert_array_equal(parts.train.images, plain.train.rotated().images)
    assert len(parts.test) == len(plain.test) and (parts.test.rotations == 0).all()
    assert len(parts.validation) == len(plain.validation) and (parts.validation.rotations == 0).all()


# ------------------------------------------------------------------ download

class ZipServer(http.server.BaseHTTPRequestHandler):
    """Serves `routes`: path -> (body, announced Content-Length)."""
    routes = {}

    def do_GET(self):
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, length = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tiny_zip):
    body = tiny_zip.read_bytes()
    ZipServer.routes = {
        "/good/images_background.zip": (body, len(body)),
        "/short/images_background.zip": (body[:len(body) // 2], len(body)),
        "/cut/images_background.zip": (body[:len(body) // 2], len(body) // 2),
        "/wrongname/images_evaluation.zip": (body, len(body)),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ZipServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_fetches_verifies_and_loads(server, tiny_zip, tmp_path):
    paths = download(tmp_path, names=("images_background",), base_url=f"{server}/good/", progress=False)
    assert paths == [tmp_path / "images_background.zip"]
    assert paths[0].read_bytes() == tiny_zip.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_background.zip"]
    assert len(load_omniglot(tmp_path, cache_dir=tmp_path / "cache")) == sum(ALPHABETS.values())


@pytest.mark.parametrize("route, names, sha256, reason", [
    ("short", ("images_background",), None, "bytes"),
    ("cut", ("images_background",), None, "zip"),
    ("wrongname", ("images_evaluation",), None, "top folder"),
    ("good", ("images_background",), {"images_background": "0" * 64}, "sha256"),
])
def test_a_bad_download_is_rejected_and_leaves_nothing(server, tmp_path, route, names, sha256, reason):
    with pytest.raises(DownloadError, match=reason):
        download(tmp_path, names=names, base_url=f"{server}/{route}", progress=False, sha256=sha256)
    assert list(tmp_path.iterdir()) == []


def test_download_checks_a_given_sha256(server, tiny_zip, tmp_path):
    digest = omniglot._sha256(tiny_zip)
    download(tmp_path, names=("images_background",), base_url=f"{server}/good",
             progress=False, sha256={"images_background": digest.upper()})
    assert (tmp_path / "images_background.zip").exists()


def test_offline_download_says_which_url_failed_and_where_to_put_the_files(tmp_path):
    with socket.socket() as probe:        # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/omniglot"
    with pytest.raises(DownloadError) as error:
        download(tmp_path, names=("images_background",), base_url=url, progress=False)
    message = str(error.value)
    assert f"{url}/images_background.zip" in message
    assert str(tmp_path) in message and "by hand" in message
    assert list(tmp_path.iterdir()) == []


def test_load_downloads_when_asked_and_nothing_is_there(server, tmp_path, monkeypatch):
    monkeypatch.setattr(omniglot, "download",
                        functools.partial(download, base_url=f"{server}/good"))
    dataset = load_omniglot(tmp_path / "data", names=("images_background",),
                            cache_dir=tmp_path / "cache", download=True, progress=False)
    assert len(dataset) == sum(ALPHABETS.values())


# ------------------------------------------------------------------- sampler

N_DRAWINGS = 20


def labelled_images(n_classes):
    """Each image is filled with its own id, class * N_DRAWINGS + drawing."""
    ids = np.arange(n_classes * N_DRAWINGS, dtype=np.float32).reshape(n_classes, N_DRAWINGS, 1, 1)
    return np.broadcast_to(ids, (n_classes, N_DRAWINGS, 3, 2))


@st.composite
def task_settings(draw):
    n_classes = draw(st.integers(1, 12))
    way = draw(st.integers(1, n_classes))
    shot = draw(st.integers(1, 10))
    query = draw(st.integers(0, N_DRAWINGS - shot))
    return n_classes, way, shot, query, draw(st.integers(0, 2**32 - 1))


@settings(deadline=None, max_examples=30)
@given(task_settings())
def test_tasks_are_well_formed(setting):
    n_classes, way, shot, query, seed = setting
    sampler = FewShotSampler(labelled_images(n_classes), way, shot, query, np.random.default_rng(seed))
    for task in sampler.sample(3):
        for examples, k in ((task.support, shot), (task.query, query)):
            assert examples.inputs.shape == (way * k, 1, 3, 2) and examples.inputs.dtype == np.float32
            assert examples.targets.dtype == np.int64
            assert (np.bincount(examples.targets, minlength=way) == k).all()
            assert set(examples.targets) <= set(range(way))
        ids = np.concatenate([task.support.inputs, task.query.inputs])[:, 0, 0, 0].astype(int)
        labels = np.concatenate([task.support.targets, task.query.targets])
        assert len(set(ids)) == len(ids)                       # distinct drawings: support, query disjoint
        classes = ids // N_DRAWINGS
        label_class = {label: set(classes[labels == label]) for label in range(way)}
        assert all(len(c) == 1 for c in label_class.values())  # one class per label
        assert len(set.union(*label_class.values())) == way    # distinct classes


@settings(deadline=None, max_examples=30)
@given(task_settings())
def test_the_same_seed_gives_the_same_tasks(setting):
    n_classes, way, shot, query, seed = setting
    sampler = FewShotSampler(labelled_images(n_classes), way, shot, query)
    first, second = (sampler.sample(2, np.random.default_rng(seed)) for _ in range(2))
    for a, b in zip(first, second):
        for x, y in ((a.support, b.support), (a.query, b.query)):
            np.testing.assert_array_equal(x.inputs, y.inputs)
            np.testing.assert_array_equal(x.targets, y.targets)


def test_labels_are_assigned_in_random_order():
    sampler = FewShotSampler(labelled_images(5), 5, 1, 0, np.random.default_rng(0))
    orders = {tuple(task.support.inputs[:, 0, 0, 0] // N_DRAWINGS) for task in sampler.sample(20)}
    assert len(orders) > 1


@pytest.mark.parametrize("way, shot, query, match", [
    (6, 1, 1, "way=6 but only 5 classes"),
    (2, 15, 6, "21 distinct drawings per class needed, but each class has 20"),
    (0, 1, 1, "way must be an integer >= 1, got 0"),
    (2, 0, 1, "shot must be an integer >= 1, got 0"),
    (2, 1, -1, "query must be an integer >= 0, got -1"),
    (2.0, 1, 1, "way must be an integer"),
])
def test_bad_task_sizes_are_rejected_with_their_values(way, shot, query, match):
    with pytest.raises(ValueError, match=match):
        FewShotSampler(labelled_images(5), way, shot, query)


def test_sampler_wants_four_dimensional_images():
    with pytest.raises(ValueError, match=r"\(n_classes, n_drawings, H, W\)"):
        FewShotSampler(np.zeros((5, 20, 28)), 2, 1, 1)


def test_sampling_needs_a_generator():
    with pytest.raises(TypeError, match="Generator"):
        FewShotSampler(labelled_images(5), 2, 1, 1).sample(1)


# ------------------------------------------------------------- shared subset

@pytest.mark.skipif(not (SHARED / "images_background_small1.zip").exists(),
                    reason=f"the shared Omniglot subset is not at {SHARED}")
def test_shared_subset_loads_and_splits(tmp_path):
    dataset = load_omniglot(SHARED, cache_dir=tmp_path)
    # 136 + 156 = 292 characters in the two zips, but both hold Greek (24) and
    # Latin (26): 242 distinct characters from 8 alphabets, each kept once.
    assert dataset.images.shape == (242, 20, 28, 28)
    assert len(set(dataset.alphabets)) == 8
    assert (dataset.sources == "images_background_small1").sum() == 136
    parts = split_by_character(dataset, np.random.default_rng(0))
    assert len(parts.test) >= 60
    assert not keys(parts.test) & keys(parts.train)
    sampler = FewShotSampler(parts.train.images, 20, 1, 5, np.random.default_rng(0))
    assert sampler.sample(1)[0].support.inputs.shape == (20, 1, 28, 28)
