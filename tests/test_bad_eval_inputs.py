"""`ssd-np eval` on bad annotations, bad results and bad images: one line naming the file, the entry and the
field, exit 2 (or 1 when only some images fail, the others still written and scored), no traceback, no
partial files. Run in-process through `ssd_np.cli.main.main`."""
import json
import shutil

import pytest

from conftest import DATA
from ssd_np.verify import coco_eval

ANNOTATIONS = DATA / "instances_val2017_dev.json"


def tiny_annotations() -> dict:
    return {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "person"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100}]}


def write(path, value):
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def one_error(err: list[str], *fragments: str) -> None:
    """Exactly one stderr line, `ssd-np: error: ...`, holding every fragment."""
    assert len(err) == 1 and err[0].startswith("ssd-np: error: "), err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


GOOD_ROW = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("results, fragments", [
    ("[1]", ["result 0: 1 is not an object"]),
    ("[null]", ["result 0: None is not an object"]),
    ('{"a": 1}', ["results must be a list of result objects"]),
    ("{}", ["results must be a list", "{}"]),
    ('"abc"', ["results must be a list", "'abc'"]),
    ("5", ["results must be a list"]),
    ([{**GOOD_ROW, "image_id": [802]}], ["result 0: image_id [802] must be an integer"]),
    ([GOOD_ROW, {**GOOD_ROW, "image_id": "1"}], ["result 1: image_id '1' must be an integer"]),
    ([{**GOOD_ROW, "image_id": True}], ["result 0: image_id True must be an integer"]),
    ([{**GOOD_ROW, "category_id": 1.5}], ["result 0: category_id 1.5 must be an integer"]),
    ([{k: v for k, v in GOOD_ROW.items() if k != "score"}], ["result 0:", "has no 'score'"]),
    ([{**GOOD_ROW, "score": "high"}], ["result 0: score 'high' must be a finite number"]),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": NaN}]', ["result 0: score nan"]),
    ([{**GOOD_ROW, "bbox": [0, 0, -1, 10]}], ["result 0: bbox [0, 0, -1, 10]", "width, height >= 0"]),
    ([{**GOOD_ROW, "bbox": [0, 0, 10]}], ["result 0: bbox [0, 0, 10] must be 4 finite numbers"]),
    ([{**GOOD_ROW, "bbox": "0 0 10 10"}], ["result 0: bbox '0 0 10 10'"]),
    ([{**GOOD_ROW, "image_id": 7}], ["image ids that are not in the annotations' images: [7]"]),
    (DEEP, ["nested too deeply"]),
    ("[{", ["not valid JSON"]),
    (b"\xff\xfe[]", ["not valid JSON"]),
])
def test_bad_results_file(tmp_path, run_main, results, fragments):
    annotations = write(tmp_path / "gt.json", tiny_annotations())
    path = tmp_path / "res.json"
    path.write_bytes(results) if isinstance(results, bytes) else write(path, results)
    status, out, err = run_main("eval", "--annotations", annotations, "--results", path)
    assert status == 2 and out == ""
    one_error(err, str(path), *fragments)


def test_empty_results_list_scores_zero(tmp_path, run_main):
    annotations = write(tmp_path / "gt.json", tiny_annotations())
    status, out, err = run_main("eval", "--annotations", annotations, "--results", write(tmp_path / "r.json", []))
    assert status == 0 and err == []
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.000" in out


def test_good_results_still_scored(tmp_path, run_main):
    annotations = write(tmp_path / "gt.json", tiny_annotations())
    status, out, _ = run_main("eval", "--annotations", annotations, "--results", write(tmp_path / "r.json", [GOOD_ROW]))
    assert status == 0 and "maxDets=100 ] = 1.000" in out


def _annotations_with(**change):
    gt = tiny_annotations()
    for key, value in change.items():
        kind, index, field = key.split("__")
        if field == "DROP":
            continue
        gt[kind][int(index)][field] = value
    return gt


@pytest.mark.parametrize("annotations, fragments", [
    ([], ["annotations must be a COCO instances dict", "[]"]),
    ({}, ["annotations must be a COCO instances dict"]),
    ({"images": {}, "annotations": [], "categories": []}, ["'images' must be a list of image objects"]),
    ({"images": [5], "annotations": [], "categories": []}, ["image 0: 5 is not an object"]),
    ({"images": [{"file_name": "a.jpg"}], "annotations": [], "categories": []}, ["image 0:", "has no 'id'"]),
    (_annotations_with(images__0__id="1"), ["image 0: id '1' must be an integer"]),
    (_annotations_with(categories__0__id=None), ["category 0: id None must be an integer"]),
    (_annotations_with(annotations__0__bbox=[0, 0, "10", 10]), ["annotation 0: bbox [0, 0, '10', 10]"]),
    (_annotations_with(annotations__0__area=None), ["annotation 0: area None must be a finite number"]),
    (_annotations_with(annotations__0__image_id=[1]), ["annotation 0: image_id [1] must be an integer"]),
    (_annotations_with(annotations__0__iscrowd=2), ["annotation 0: iscrowd 2 must be 0 or 1"]),
    (_annotations_with(annotations__0__id=0), ["annotation ids must be unique and nonzero"]),
    (DEEP, ["nested too deeply"]),
    ("", ["not valid JSON"]),
])
def test_bad_annotations_file(tmp_path, run_main, annotations, fragments):
    path = write(tmp_path / "gt.json", annotations)
    status, out, err = run_main("eval", "--annotations", path, "--results", write(tmp_path / "r.json", []))
    assert status == 2 and out == ""
    one_error(err, str(path), *fragments)


def test_missing_and_folder_inputs(tmp_path, run_main):
    status, _, err = run_main("eval", "--annotations", tmp_path / "absent.json", "--results", tmp_path / "r.json")
    assert status == 2
    one_error(err, "absent.json", "No such file")
    status, _, err = run_main("eval", "--annotations", tmp_path, "--results", tmp_path / "r.json")
    assert status == 2
    one_error(err, str(tmp_path), "Is a directory")


@pytest.mark.parametrize("value", ["-1", "0", "-5"])
def test_max_images_below_one_is_refused(tmp_path, run_main, value):
    status, _, err = run_main("eval", "--annotations", ANNOTATIONS, "--images", tmp_path, "--max-images", value)
    assert status == 2
    one_error(err, f"--max-images must be at least 1, got {value}")


def test_images_without_file_name(tmp_path, run_main):
    gt = tiny_annotations()
    del gt["images"][0]["file_name"]
    path = write(tmp_path / "gt.json", gt)
    status, _, err = run_main("eval", "--annotations", path, "--images", tmp_path)
    assert status == 2
    one_error(err, str(path), "the image with id 1 has no 'file_name'")


@pytest.mark.parametrize("rows, fragment", [
    ([{"category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], "has no 'image_id'"),
    ([{"image_id": "802", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], "image_id '802' must be an integer"),
    ([7], "result 0: 7 is not an object"),
    ({}, "results must be a list"),
])
def test_resume_validates_the_results_file(tmp_path, run_main, standin_h5, rows, fragment):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(DATA / "images" / "000000000802.jpg", images)
    results = write(tmp_path / "results.json", rows)
    before = results.read_bytes()
    status, _, err = run_main("eval", "--annotations", ANNOTATIONS, "--images", images, "--results", results,
                              "--resume", "--weights", standin_h5)
    assert status == 2
    assert err[0].startswith("NOTE: these weights are stand-ins")
    one_error(err[1:], str(results), fragment)
    assert results.read_bytes() == before


def test_one_unreadable_image_does_not_abort_eval(tmp_path, run_main, standin_h5):
    """Two good images and a truncated one: the bad one is reported (one line, its path), the others are
    detected, written and scored (exit 1); --resume then reuses them and retries only the bad one."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("000000000802.jpg", "000000037777.jpg"):
        shutil.copy(DATA / "images" / name, images)
    source = (DATA / "images" / "000000011813.jpg").read_bytes()
    bad = images / "000000011813.jpg"
    bad.write_bytes(source[: len(source) // 3])
    results = tmp_path / "results.json"
    args = ("eval", "--annotations", ANNOTATIONS, "--images", images, "--results", results, "--weights", standin_h5)
    status, out, err = run_main(*args)
    assert status == 1
    errors = [line for line in err if line.startswith("ssd-np: error:")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"ssd-np: error: {bad}: truncated or corrupt image data (")
    assert errors[0].endswith("; re-download or re-export the file")
    assert "ssd-np: 1 of 3 images could not be read (see above); the metrics below are over the other 2" in err
    rows = json.loads(results.read_text())
    assert {r["image_id"] for r in rows} == {802, 37777}
    assert "Average Precision" in out
    gt = json.loads(ANNOTATIONS.read_text())
    known = {c["id"] for c in gt["categories"]}
    expected = coco_eval.evaluate(gt, [r for r in rows if r["category_id"] in known], image_ids=[802, 37777])
    assert expected.format_summary() in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "results.json"]

    status, out_again, err = run_main(*args, "--resume")
    assert status == 1 and out_again == out
    assert json.loads(results.read_text()) == rows
