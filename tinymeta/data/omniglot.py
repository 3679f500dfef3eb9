"""Omniglot as an array of classes, ready for N-way K-shot tasks.

Omniglot (Lake et al. 2015) holds 1,623 handwritten characters from 50
alphabets, each drawn once by 20 different people. For meta-learning every
character is a class, so the whole data set becomes one array
`images[character, drawing, row, column]` of shape (n_characters, 20, 28, 28):
float32 in [0, 1] with the strokes high (ink = 1 - pixel / 255), downsampled
from 105x105 with an antialiasing filter.

The data flows as:

    find the zips (or extracted folders)  ->  decode the PNGs once  ->  cache
    ->  split the characters into train / validation / test
    ->  rotate the training characters (each quarter turn a class of its own)
    ->  FewShotSampler (tinymeta.data.sampler) draws tasks from a split.

Where the data is looked for: the `root` argument when one is given (and
then nowhere else); otherwise the `TINYMETA_DATA` environment variable, then
the per-user cache folder (`$XDG_CACHE_HOME/tinymeta/omniglot`, by default
`~/.cache/tinymeta/omniglot`).
`download()` fetches the official zips into such a folder. The decoded arrays
are cached as one compressed .npz, keyed by checksums of the sources, so every
load after the first skips the PNG decoding. Pillow (decoding) and tqdm
(download progress) are optional dependencies, imported where they are used.
"""
import hashlib
import http.client
import io
import os
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
FULL_NAMES = ("images_background", "images_evaluation")
SMALL_NAMES = ("images_background_small1", "images_background_small2")
DRAWINGS = 20       # drawings of every character, one per drawer
IMAGE_SIZE = 28     # side of the downsampled images
DEFAULT_FRACTIONS = (0.6, 0.1, 0.3)   # train, validation, test
_CACHE_FORMAT = 1   # bump when the cached arrays change meaning


class DownloadError(OSError):
    """A download failed, or the downloaded file did not verify."""


# ---------------------------------------------------------------- the data set

@dataclass(frozen=True, eq=False)
class Omniglot:
    """Characters as classes: `images[i]` holds the drawings of character i.

    images:     (n_characters, drawings, 28, 28) float32, strokes high, in [0, 1]
    alphabets:  (n_characters,) alphabet names, e.g. "Balinese"
    characters: (n_characters,) character folder names, e.g. "character07"
    sources:    (n_characters,) the zip (or folder) each came from, e.g. "images_background"
    rotations:  (n_characters,) quarter turns applied to the images (see `rotated`)
    """
    images: np.ndarray
    alphabets: np.ndarray
    characters: np.ndarray
    sources: np.ndarray
    rotations: np.ndarray

    def __len__(self):
        return len(self.images)

    def __repr__(self):
        n, drawings, height, width = self.images.shape
        return (f"Omniglot({n} classes from {len(np.unique(self.alphabets))} alphabets, "
                f"{drawings} drawings of {height}x{width} each)")

    def take(self, index):
        """The characters at `index` (an index array), as a new data set."""
        return Omniglot(self.images[index], self.alphabets[index], self.characters[index],
                        self.sources[index], self.rotations[index])

    def rotated(self):
        """Four times the classes: each character turned by 0, 90, 180 and 270 degrees.

        Class `k * len(self) + i` is character i turned k quarter turns
        (np.rot90 on the image axes), as in the MAML and Reptile experiments.
        """
        def tile(array):
            return np.concatenate([array] * 4)

        quarter_turns = np.repeat(np.arange(4), len(self))
        return Omniglot(rotate_classes(self.images), tile(self.alphabets), tile(self.characters),
                        tile(self.sources), (tile(self.rotations) + quarter_turns) % 4)


def rotate_classes(images):
    """(n, ..., H, W) -> (4n, ..., H, W): the classes turned by k quarter turns, k = 0..3, in blocks."""
    return np.concatenate([np.rot90(images, k, axes=(-2, -1)) for k in range(4)])


# -------------------------------------------------------------------- splits

@dataclass(frozen=True, eq=False)
class Split:
    """Disjoint sets of characters: meta-train on `train`, choose settings on
    `validation`, report on `test`."""
    train: Omniglot
    validation: Omniglot
    test: Omniglot


def split_by_character(dataset, rng, fractions=DEFAULT_FRACTIONS, rotate_train=True):
    """Shuffle the characters with `rng` and cut them into train / validation / test.

    `fractions` are of characters. The training characters are rotated into
    four classes each unless `rotate_train` is False; validation and test
    characters never are, and no rotation of a test character is trained on.
    """
    return _split(dataset, np.arange(len(dataset)), rng, fractions, rotate_train)


def split_by_alphabet(dataset, rng, fractions=DEFAULT_FRACTIONS, rotate_train=True):
    """Like `split_by_character`, but whole alphabets go to one split (as in Lake et
    al., where the test alphabets are never seen); `fractions` are of alphabets."""
    return _split(dataset, dataset.alphabets, rng, fractions, rotate_train)


def _split(dataset, groups, rng, fractions, rotate_train):
    """Shuffle the distinct `groups` (one label per character) and cut them by `fractions`."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"split: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    names = np.unique(groups)
    shuffled = rng.permutation(names)
    bounds = np.cumsum(_split_sizes(len(names), fractions))[:-1]
    train, validation, test = (dataset.take(np.flatnonzero(np.isin(groups, part)))
                               for part in np.split(shuffled, bounds))
    return Split(train.rotated() if rotate_train else train, validation, test)


def _split_sizes(n, fractions):
    """How many of n groups go to train, validation and test; each nonzero fraction gets at least one."""
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1):
        raise ValueError(f"split: fractions must be three non-negative numbers (train, validation, "
                         f"test) summing to 1, got {tuple(fractions.tolist())}")
    least = (fractions > 0).astype(int)
    validation, test = np.maximum(least[1:], np.round(fractions[1:] * n).astype(int))
    sizes = np.array([n - validation - test, validation, test])
    if sizes[0] < least[0]:
        raise ValueError(f"split: cannot cut {n} groups by fractions {tuple(fractions.tolist())}: "
                         f"sizes would be {tuple(sizes.tolist())}")
    return sizes


# ------------------------------------------------------------ finding the data

def default_data_dir():
    """The per-user folder for Omniglot: $XDG_CACHE_HOME/tinymeta/omniglot (~/.cache/... by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tinymeta" / "omniglot"


def search_path(root=None):
    """The (folder, why it is looked in) pairs searched for data, in order."""
    if root is not None:
        return [(Path(root), "the root argument")]
    places = []
    if os.environ.get("TINYMETA_DATA"):
        places.append((Path(os.environ["TINYMETA_DATA"]), "$TINYMETA_DATA"))
    places.append((default_data_dir(), "the per-user cache folder"))
    return places


def find_sources(root=None, names=None):
    """The zips or extracted folders to read: from the first place in `search_path(root)` holding them.

    `names` picks zip stems, e.g. ("images_background",). By default: the full
    set (images_background, images_evaluation) where any of it is present,
    otherwise the small subsets; the small ones are part of images_background,
    so reading both would count their characters twice. `root` may also be
    one zip file.
    """
    places = search_path(root)
    for place, _ in places:
        sources = _sources_in(place, names)
        if sources:
            return sources
    raise FileNotFoundError(_not_found_message(places, names))


def _sources_in(place, names):
    if place.is_file() and place.suffix == ".zip":
        return [place]
    found = {}
    for name in names or FULL_NAMES + SMALL_NAMES:
        for candidate in (place / f"{name}.zip", place / name):
            if candidate.exists():
                found[name] = candidate
                break
    if names is not None:
        return [found[name] for name in names] if len(found) == len(names) else []
    full = [found[name] for name in FULL_NAMES if name in found]
    return full or [found[name] for name in SMALL_NAMES if name in found]


def _not_found_message(places, names):
    wanted = ", ".join(f"{name}.zip" for name in names or FULL_NAMES + SMALL_NAMES)
    looked = "\n".join(f"  {place}  ({why})" for place, why in places)
    return (f"No Omniglot data found. Looked for {wanted} (or their extracted folders) in:\n"
            f"{looked}\n"
            f"To get it: call tinymeta.data.omniglot.download(folder), or "
            f"load_omniglot(download=True) (the examples' --download flag), or fetch the zips "
            f"by hand from {OMNIGLOT_URL} and put them in {places[0][0]} "
            f"(or point $TINYMETA_DATA at the folder holding them).")


# ----------------------------------------------------------------- loading

def load_omniglot(root=None, names=None, *, cache_dir=None, download=False, progress=True):
    """Omniglot as one `Omniglot` data set, decoded once and then read from the cache.

    root:      a folder with the zips (or extracted folders), or one zip; by
               default $TINYMETA_DATA, then the per-user cache folder.
    names:     which zips, e.g. ("images_background",); see `find_sources`.
    cache_dir: where the decoded .npz goes; by default the per-user cache folder.
    download:  fetch the official zips (`download`) into the first place
               searched when no data is found there.
    """
    sources = _find_or_download(root, names, progress) if download else find_sources(root, names)
    cache = Path(cache_dir) if cache_dir is not None else default_data_dir()
    return _load_cached(sources, cache / f"omniglot-{_fingerprint(sources)}.npz")


def _find_or_download(root, names, progress):
    """`find_sources`, fetching the official zips into the first place searched if that finds none."""
    try:
        return find_sources(root, names)
    except FileNotFoundError:
        download(search_path(root)[0][0], names or FULL_NAMES, progress=progress)
        return find_sources(root, names)


def _load_cached(sources, cache_file):
    arrays = _read_cache(cache_file)
    if arrays is None:
        arrays = _decode_sources(sources)
        _write_cache(cache_file, arrays)
    ink = arrays["ink"].astype(np.float32) / np.float32(255)
    return Omniglot(ink, arrays["alphabets"], arrays["characters"], arrays["sources"],
                    np.zeros(len(ink), dtype=np.int64))


def _fingerprint(sources):
    """Checksum of the sources: the sha256 of each zip, or a folder's file names, sizes and times."""
    digest = hashlib.sha256(f"omniglot cache v{_CACHE_FORMAT} size {IMAGE_SIZE}".encode())
    for source in sources:
        digest.update(f"\n{source.name}:".encode())
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                stat = path.stat()
                digest.update(f"{path.relative_to(source)} {stat.st_size} {stat.st_mtime_ns};".encode())
        else:
            digest.update(_sha256(source).encode())
    return digest.hexdigest()[:24]


def _read_cache(cache_file):
    """The cached arrays, or None when there is no usable cache (a damaged one is rebuilt)."""
    if not cache_file.exists():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as cached:
            return {key: cached[key] for key in ("ink", "alphabets", "characters", "sources")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(f"ignoring unreadable Omniglot cache {cache_file}: {err}")
        return None


def _write_cache(cache_file, arrays):
    """Write the cache atomically: readers see the old file or the whole new one, never a part."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=cache_file.parent, suffix=".part")
        try:
            with os.fdopen(descriptor, "wb") as file:
                np.savez_compressed(file, **arrays)
            os.replace(temporary, cache_file)
        finally:
            Path(temporary).unlink(missing_ok=True)
    except OSError as err:
        warnings.warn(f"could not write the Omniglot cache {cache_file}: {err}")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------- decoding

def _decode_sources(sources):
    """Decode every source into uint8 ink (255 = stroke) and its metadata arrays.

    A character found in several sources is kept once, from the first: the
    two small subsets both hold Greek and Latin, so together they have 242
    distinct characters, not 136 + 156 = 292, and a class drawn twice would
    leak between splits.
    """
    parts = [_decode_source(source) for source in sources]
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    names = np.char.add(np.char.add(arrays["alphabets"], "/"), arrays["characters"])
    _, first = np.unique(names, return_index=True)
    return {key: array[np.sort(first)] for key, array in arrays.items()}


def _decode_source(source):
    if source.is_dir():
        files = [path.relative_to(source).as_posix() for path in source.rglob("*.png")]
        return _decode_characters(source, files, lambda name: (source / name).read_bytes())
    try:
        with zipfile.ZipFile(source) as archive:
            # members are <top folder>/<alphabet>/<character>/<drawing>.png
            members = {name.split("/", 1)[1]: name for name in archive.namelist()
                       if name.endswith(".png") and "/" in name}
            return _decode_characters(source, members, lambda name: archive.read(members[name]))
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ValueError(f"{source}: not a valid zip file ({err}); delete it and download it again") from err


def _decode_characters(source, files, read):
    """Decode `files` ("<alphabet>/<character>/<drawing>.png" paths; `read` gives their bytes)."""
    drawings = {}
    for name in sorted(name for name in files if name.count("/") == 2):
        alphabet, character, _ = name.split("/")
        drawings.setdefault((alphabet, character), []).append(name)
    if not drawings:
        raise ValueError(f"{source}: no <alphabet>/<character>/<drawing>.png images in it")
    for (alphabet, character), names in drawings.items():
        if len(names) != DRAWINGS:
            raise ValueError(f"{source}: {alphabet}/{character} has {len(names)} drawings, "
                             f"expected {DRAWINGS}")
    ink = np.array([[_decode_png(read(name), source, name) for name in names]
                    for names in drawings.values()], dtype=np.uint8)
    alphabets, characters = (np.array(column) for column in zip(*drawings))
    return {"ink": ink, "alphabets": alphabets, "characters": characters,
            "sources": np.full(len(ink), _source_name(source))}


def _decode_png(data, source, name):
    """One drawing as (28, 28) uint8 ink: 255 - pixel, after an antialiased resize."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as image:
            small = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{source}: {name} is not a readable PNG ({err})") from err
    return 255 - np.asarray(small)


def _source_name(source):
    return source.name.removesuffix(".zip")


# --------------------------------------------------------------- downloading

def download(root=None, names=FULL_NAMES, base_url=OMNIGLOT_URL, progress=True, sha256=None):
    """Fetch the Omniglot zips `<base_url>/<name>.zip` into `root`; return their paths.

    root defaults to the per-user cache folder; zips already there are kept.
    Each download goes to `<name>.zip.part` and is renamed to `<name>.zip`
    only once it verifies: its size matches the server's Content-Length, it
    is a valid zip (every member's CRC checked) whose top folder is `<name>/`,
    and, when `sha256` maps the name to a hex digest, its sha256 matches.
    No table of official checksums ships with this module: pass `sha256` to
    pin them. A failed or interrupted download leaves no file behind and
    raises DownloadError, which says which URL failed and where to put the
    files by hand.
    """
    root = Path(root) if root is not None else default_data_dir()
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        target = root / f"{name}.zip"
        if not target.exists():
            url = f"{base_url.rstrip('/')}/{name}.zip"
            _fetch_verified(url, target, name, progress, (sha256 or {}).get(name))
        paths.append(target)
    return paths


def _fetch_verified(url, target, name, progress, expected_sha256):
    part = target.with_name(target.name + ".part")
    try:
        _fetch(url, part, progress)
        _verify_zip(part, name, expected_sha256)
        os.replace(part, target)
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"downloading {url} failed: {err}\n"
                            f"To get it by hand, fetch {name}.zip from {OMNIGLOT_URL} "
                            f"and put it in {target.parent}.") from err
    finally:
        part.unlink(missing_ok=True)


def _fetch(url, part, progress):
    """Stream `url` into the file `part`, checking the byte count against Content-Length."""
    from tqdm import tqdm
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as file:
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        with tqdm(total=expected, unit="B", unit_scale=True, desc=part.stem,
                  disable=not progress) as bar:
            while chunk := response.read(1 << 16):
                file.write(chunk)
                bar.update(len(chunk))
        if expected is not None and file.tell() != expected:
            raise DownloadError(f"got {file.tell()} bytes, the server announced {expected}")


def _verify_zip(path, name, expected_sha256):
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            if broken is not None:
                raise DownloadError(f"member {broken} fails its CRC check")
            if not any(member.startswith(f"{name}/") for member in archive.namelist()):
                raise DownloadError(f"the zip has no top folder {name}/")
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise DownloadError(f"not a valid zip file ({err})") from err
    if expected_sha256 is not None:
        actual = _sha256(path)
        if actual != expected_sha256.lower():
            raise DownloadError(f"sha256 is {actual}, expected {expected_sha256}")
