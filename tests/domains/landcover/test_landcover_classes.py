"""Class map: lecture defaults and JSON/CSV loaders with errors that name the file."""

import json

import pytest

from segsuite.core.errors import DataError
from segsuite.domains.landcover.classes import DEFAULT_CLASSES, find_class_map, load_class_map, write_class_map_json


def test_default_lecture_classes():
    assert DEFAULT_CLASSES.ids == [0, 1, 2, 3, 4, 5]
    assert DEFAULT_CLASSES.names == [
        "dense forest",
        "sparse forest",
        "moor",
        "herbaceous formation",
        "building",
        "road",
    ]
    assert DEFAULT_CLASSES.colormap()[4] == (*DEFAULT_CLASSES.classes[4].color, 255)
    assert json.loads(json.dumps(DEFAULT_CLASSES.to_meta())) == DEFAULT_CLASSES.to_meta()


def test_json_round_trip_and_csv(tmp_path):
    write_class_map_json(DEFAULT_CLASSES, tmp_path / "classes.json")
    loaded = load_class_map(tmp_path / "classes.json")
    assert loaded.classes == DEFAULT_CLASSES.classes and loaded.source.endswith("classes.json")
    (tmp_path / "c.csv").write_text("id,name,r,g,b\n1,water,0,0,255\n0,land,10,20,30\n")
    csv_map = load_class_map(tmp_path / "c.csv")
    assert csv_map.names == ["land", "water"] and csv_map.colors == [[10, 20, 30], [0, 0, 255]]


def test_find_class_map_defaults_and_ambiguity(tmp_path):
    assert find_class_map(tmp_path) is DEFAULT_CLASSES
    (tmp_path / "classes.csv").write_text("id,name,r,g,b\n0,a,1,2,3\n")
    assert find_class_map(tmp_path).names == ["a"]
    (tmp_path / "classes.json").write_text('[{"id": 0, "name": "a", "color": [1, 2, 3]}]')
    with pytest.raises(DataError, match="both classes.json and classes.csv"):
        find_class_map(tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "gap.json",
            '[{"id": 0, "name": "a", "color": [1,2,3]}, {"id": 2, "name": "b", "color": [1,2,3]}]',
            r"ids must be exactly 0..1",
        ),
        ("colour.json", '[{"id": 0, "name": "a", "color": [1, 2, 300]}]', "0..255"),
        ("keys.json", '[{"id": 0, "colour": [1, 2, 3]}]', "must have keys id, name, color"),
        ("broken.json", "[{", "cannot read class map JSON"),
        ("header.csv", "id,label,r,g,b\n0,a,1,2,3\n", "CSV header must be id,name,r,g,b"),
        ("dup.csv", "id,name,r,g,b\n0,a,1,2,3\n1,a,1,2,3\n", "names must be unique"),
        ("map.txt", "", "must be a .json or .csv"),
    ],
)
def test_bad_class_maps_name_the_file(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        load_class_map(path)
    assert str(path) in str(err.value)
