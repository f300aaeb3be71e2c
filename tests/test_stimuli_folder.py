"""Image folders: sorted ids, formats, categories CSV, masks, unreadable files, lazy source."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cortexmap.errors import CortexmapError
from cortexmap.stimuli import FolderImages, load_folder, read_image


def _write(folder, name, arr):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / name)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    for name in ["b_dog.png", "a_cat.jpg", "c_car.PNG"]:
        _write(d, name, rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    _write(d, "grey.png", np.full((12, 12), 128, np.uint8))
    (d / "notes.txt").write_text("ignored")
    return d


def test_sorted_ids_and_values(folder):
    s = load_folder(folder)
    assert s.ids == ["a_cat", "b_dog", "c_car", "grey"]
    assert s.images.shape == (4, 12, 12, 3) and s.images.dtype == np.float32
    png = np.asarray(Image.open(folder / "b_dog.png")) / 255.0
    np.testing.assert_allclose(s.images[1], png, atol=1e-6)  # PNG is lossless
    np.testing.assert_allclose(s.images[3], 128 / 255, atol=1e-6)  # grey -> RGB
    assert list(s.metadata["file"]) == ["a_cat.jpg", "b_dog.png", "c_car.PNG", "grey.png"]
    assert load_folder(folder).ids == s.ids  # stable


def test_categories_csv(folder, tmp_path):
    csv = tmp_path / "cats.csv"
    csv.write_text("id,category\na_cat.jpg,animal\nb_dog,animal\nc_car,vehicle\ngrey,blank\n")
    s = load_folder(folder, categories_csv=csv)
    assert s.categories == ["animal", "animal", "vehicle", "blank"]
    csv.write_text("id,category\na_cat,animal\n")
    with pytest.raises(CortexmapError, match=r"no row for 3 image.*b_dog"):
        load_folder(folder, categories_csv=csv)
    csv.write_text("name,kind\na,b\n")
    with pytest.raises(CortexmapError, match="'id' column"):
        load_folder(folder, categories_csv=csv)


def test_masks_dir(folder, tmp_path):
    mdir = tmp_path / "masks"
    for sid in ["a_cat", "b_dog", "c_car", "grey"]:
        m = np.zeros((12, 12), np.uint8)
        m[3:9, 3:9] = 255
        _write(mdir, f"{sid}.png", m)
    s = load_folder(folder, masks_dir=mdir)
    assert s.masks.shape == (4, 12, 12) and s.masks[0, 5, 5] and not s.masks[0, 0, 0]
    assert s.masks.sum() == 4 * 36
    _write(mdir, "grey.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(CortexmapError, match=r"Mask .*grey\.png has size 12x10 .* 12x12"):
        load_folder(folder, masks_dir=mdir)
    (mdir / "grey.png").unlink()
    with pytest.raises(CortexmapError, match="No mask for image 'grey'"):
        load_folder(folder, masks_dir=mdir)


def test_unreadable_image_names_its_path(folder):
    (folder / "d_broken.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(CortexmapError, match=r"Cannot read image .*d_broken\.jpg"):
        load_folder(folder)
    with pytest.raises(CortexmapError, match="d_broken"):
        FolderImages(folder, size=8)[:]


def test_sizes_resize_and_lazy_source(folder):
    _write(folder, "e_wide.png", np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(CortexmapError, match="different sizes.*size="):
        load_folder(folder)
    s = load_folder(folder, size=8)
    assert s.images.shape == (5, 8, 8, 3)
    lazy = FolderImages(folder, size=8)
    assert len(lazy) == 5 and lazy.ids == s.ids
    np.testing.assert_array_equal(lazy[1:3], s.images[1:3])


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(CortexmapError, match="does not exist"):
        load_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CortexmapError, match="No images"):
        load_folder(tmp_path / "empty")
    with pytest.raises(CortexmapError, match="Cannot read image"):
        read_image(tmp_path / "missing.png")


def test_save_folder_roundtrip(tmp_path):
    from cortexmap.stimuli import load_bundled, save_folder

    s = load_bundled(size=32, names=["coins", "horse", "cell"])
    out = save_folder(s, tmp_path / "export")
    back = load_folder(out, categories_csv=out / "categories.csv", masks_dir=out / "masks")
    assert back.ids == sorted(s.ids) and (out / "provenance.json").exists()
    order = [s.ids.index(i) for i in back.ids]
    np.testing.assert_allclose(back.images, s.images[order], atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(back.masks, s.masks[order])
    assert back.categories == [s.categories[i] for i in order]
    with pytest.raises(CortexmapError, match="overwrite"):
        save_folder(s, out)
