"""Stage `classify`: every crop in data/crops/index.csv gets a class and a probability."""

import csv
import shutil
from pathlib import Path

import cv2
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tasks.classify import PREDICTION_COLUMNS, classify_crops
from tasks.mobilenet import ClassifierError, classify_images, crop_box, load_classifier
from tests.conftest import TINY_CLASSIFY

INDEX_COLUMNS = ["crop", "video", "frame", "detection", "x1", "y1", "x2", "y2", "conf"]


def write_crops(tiny_demo: Path, crops_dir: Path, limit: int = 10) -> list[str]:
    """JPEG crops of the demo's val boxes plus the index the crop stage writes."""
    rows = list(csv.DictReader((tiny_demo / "attributes" / "val.csv").open()))[:limit]
    names = []
    with (crops_dir / "index.csv").open("w", newline="") as handle:
        index = csv.writer(handle)
        index.writerow(INDEX_COLUMNS)
        for n, row in enumerate(rows):
            box = [int(row[k]) for k in ("x1", "y1", "x2", "y2")]
            name = f"street_00/{n:06d}_0.jpg"
            (crops_dir / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(crops_dir / name), crop_box(cv2.imread(str(tiny_demo / "images/val" / row["image"])), box, 0.1)
            )
            index.writerow([name, "street_00", n, 0, *box, 0.9])
            names.append(name)
    return names


def read_predictions(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == PREDICTION_COLUMNS
        return list(reader)


def test_every_crop_is_classified_in_index_order(tiny_classifier, tiny_demo: Path, tmp_path: Path):
    names = write_crops(tiny_demo, tmp_path)
    weights = tiny_classifier[0]
    cfg = TINY_CLASSIFY.model_copy(update={"batch": 3})  # several batches, the last one short
    out = classify_crops(
        cfg, weights=weights, crops_dir=tmp_path, index=tmp_path / "index.csv", out=tmp_path / "predictions.csv"
    )
    rows = read_predictions(out)
    assert [row["crop"] for row in rows] == names
    expected = classify_images(load_classifier(weights), [cv2.imread(str(tmp_path / n)) for n in names])
    assert [row["class"] for row in rows] == [name for name, _ in expected]
    assert [float(row["probability"]) for row in rows] == pytest.approx([p for _, p in expected], abs=1e-4)


def test_no_detections_give_a_header_only_file(tiny_classifier, tmp_path: Path):
    (tmp_path / "index.csv").write_text(",".join(INDEX_COLUMNS) + "\n")
    out = classify_crops(
        TINY_CLASSIFY,
        weights=tiny_classifier[0],
        crops_dir=tmp_path,
        index=tmp_path / "index.csv",
        out=tmp_path / "p.csv",
    )
    assert out.read_text().splitlines() == [",".join(PREDICTION_COLUMNS)]


def test_an_unreadable_crop_is_named_and_nothing_is_written(tiny_classifier, tiny_demo: Path, tmp_path: Path):
    names = write_crops(tiny_demo, tmp_path, limit=3)
    (tmp_path / names[1]).write_bytes(b"not a jpeg")
    with pytest.raises(ClassifierError, match=rf"{names[1]}: crop listed in .*index\.csv is missing or unreadable"):
        classify_crops(
            TINY_CLASSIFY,
            weights=tiny_classifier[0],
            crops_dir=tmp_path,
            index=tmp_path / "index.csv",
            out=tmp_path / "p.csv",
        )
    assert not (tmp_path / "p.csv").exists()


def test_bad_index_and_checkpoint_are_refused(tiny_classifier, tmp_path: Path):
    (tmp_path / "index.csv").write_text("video,frame\nstreet_00,1\n")
    with pytest.raises(ClassifierError, match=r"index\.csv: missing columns crop"):
        classify_crops(
            TINY_CLASSIFY,
            weights=tiny_classifier[0],
            crops_dir=tmp_path,
            index=tmp_path / "index.csv",
            out=tmp_path / "p.csv",
        )
    with pytest.raises(ClassifierError, match=r"absent\.csv: crop index not found"):
        classify_crops(
            TINY_CLASSIFY,
            weights=tiny_classifier[0],
            crops_dir=tmp_path,
            index=tmp_path / "absent.csv",
            out=tmp_path / "p.csv",
        )
    with pytest.raises(ClassifierError, match=r"absent\.pt: classifier checkpoint not found"):
        classify_crops(
            TINY_CLASSIFY,
            weights=tmp_path / "absent.pt",
            crops_dir=tmp_path,
            index=tmp_path / "index.csv",
            out=tmp_path / "p.csv",
        )


def test_cli_stage_reads_the_layout_and_reports_errors(tiny_classifier, tiny_demo: Path, tmp_path: Path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"classify": TINY_CLASSIFY.model_dump(mode="json")}))
    (tmp_path / "models").mkdir()
    runner = CliRunner()
    missing = runner.invoke(app, ["run", "classify", "--root", str(tmp_path)])
    assert missing.exit_code == 2 and "classifier.pt: classifier checkpoint not found" in missing.output
    shutil.copyfile(tiny_classifier[0], tmp_path / "models" / "classifier.pt")
    (tmp_path / "data" / "crops").mkdir(parents=True)
    names = write_crops(tiny_demo, tmp_path / "data" / "crops", limit=4)
    result = runner.invoke(app, ["run", "classify", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [row["crop"] for row in read_predictions(tmp_path / "data" / "predictions.csv")] == names
