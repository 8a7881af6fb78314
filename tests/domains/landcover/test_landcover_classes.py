"""Land-cover classes: the lecture defaults, a map from the data root, ids that must be 0..N-1 (the core's loader:
tests/core/test_classmap.py)."""

import json

import pytest

from segsuite.core.errors import DataError
from segsuite.domains.landcover.classes import DEFAULT_CLASSES, find_class_map, load_class_map


def test_default_lecture_classes():
    assert DEFAULT_CLASSES.ids == (0, 1, 2, 3, 4, 5)
    assert DEFAULT_CLASSES.names == ("dense forest", "sparse forest", "moor", "herbaceous formation", "building",
                                     "road")
    assert DEFAULT_CLASSES.colormap()[4] == (*DEFAULT_CLASSES.colors[4], 255)
    assert json.loads(json.dumps(DEFAULT_CLASSES.to_meta())) == DEFAULT_CLASSES.to_meta()


def test_json_round_trip_csv_and_the_root_s_map(tmp_path):
    DEFAULT_CLASSES.write_json(tmp_path / "classes.json")
    loaded = load_class_map(tmp_path / "classes.json")
    assert loaded.colors == DEFAULT_CLASSES.colors and loaded.source.endswith("classes.json")
    assert find_class_map(tmp_path).names == DEFAULT_CLASSES.names and find_class_map(tmp_path / "x") is DEFAULT_CLASSES
    (tmp_path / "c.csv").write_text("id,name,r,g,b\n1,water,0,0,255\n0,land,10,20,30\n")
    csv_map = load_class_map(tmp_path / "c.csv")
    assert csv_map.names == ("land", "water") and csv_map.colors == ((10, 20, 30), (0, 0, 255))


@pytest.mark.parametrize(("name", "text", "message"), [
    ("gap.json", '[{"id": 0, "name": "a", "color": [1,2,3]}, {"id": 2, "name": "b", "color": [1,2,3]}]',
     r"ids \[0, 2\] must be exactly 0..1"),
    ("colour.json", '[{"id": 0, "name": "a", "color": [1, 2, 300]}]', "0..255"),
    ("keys.json", '[{"id": 0, "colour": [1, 2, 3]}]', "expected a JSON list of"),
    ("dup.csv", "id,name,r,g,b\n0,a,1,2,3\n1,a,1,2,3\n", "must be distinct"),
    ("map.txt", "", r"accepted: \.json, \.csv"),
])
def test_bad_class_maps_name_the_file(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        load_class_map(path)
    assert str(path) in str(err.value)
