"""The core's class map: JSON and CSV, arbitrary mask values or contiguous ids, errors naming the file."""

from __future__ import annotations

import json

import pytest

from segsuite.core.classmap import ClassMap, find_class_map, load_class_map
from segsuite.core.errors import DataError


def test_class_map_json_and_csv_agree(tmp_path):
    entries = [{"id": 0, "name": "road", "color": [128, 64, 128]}, {"id": 7, "name": "car", "color": [0, 0, 142]}]
    (tmp_path / "c.json").write_text(json.dumps({"classes": entries}))
    (tmp_path / "c.csv").write_text("id,name,r,g,b\n0,road,128,64,128\n7,car,0,0,142\n")
    a, b = load_class_map(tmp_path / "c.json"), load_class_map(tmp_path / "c.csv")
    assert (a.ids, a.names, a.colors) == (b.ids, b.names, b.colors) == ((0, 7), ("road", "car"),
                                                                        ((128, 64, 128), (0, 0, 142)))
    assert a.source.endswith("c.json") and ClassMap.from_meta(a.to_meta()).names == a.names
    lut = a.index_lut(ignore_index=255)
    assert lut[0] == 0 and lut[7] == 1 and lut[255] == 255 and lut[3] == -1


@pytest.mark.parametrize("text, fragment", [
    ("0,road,1,2,3\n0,car,1,2,3\n", "distinct"),
    ("0,road,1,2,300\n", "0..255"),
    ("0,road,1,2\n", "id, name, r, g, b"),
])
def test_class_map_errors_name_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=fragment) as err:
        load_class_map(path)
    assert "bad.csv" in str(err.value)


def test_class_map_missing_or_wrong_extension(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_class_map(tmp_path / "nope.json")
    (tmp_path / "c.txt").write_text("0,a,1,2,3")
    with pytest.raises(DataError, match=r"\.json, \.csv"):
        load_class_map(tmp_path / "c.txt")


def test_contiguous_maps_are_sorted_by_id_and_found_in_a_root(tmp_path):
    (tmp_path / "classes.csv").write_text("id,name,r,g,b\n1,water,0,0,255\n0,forest,0,100,0\n")
    found = find_class_map(tmp_path, contiguous=True)
    assert found.names == ("forest", "water") and found.colormap() == {0: (0, 100, 0, 255), 1: (0, 0, 255, 255)}
    (tmp_path / "gap.csv").write_text("0,a,1,2,3\n2,b,1,2,3\n")
    with pytest.raises(DataError, match=r"gap.csv: ids \[0, 2\] must be exactly 0..1"):
        load_class_map(tmp_path / "gap.csv", contiguous=True)
    default = ClassMap.of([("a", (1, 2, 3))])
    assert find_class_map(tmp_path / "gap.csv", default) is default  # not a folder with a class map
    (tmp_path / "classes.json").write_text(json.dumps([{"id": 0, "name": "x", "color": [0, 0, 0]}]))
    with pytest.raises(DataError, match="both classes.json and classes.csv"):
        find_class_map(tmp_path)
