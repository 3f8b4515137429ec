"""YOLOv5 inference on batches of video frames, with detect.py's exact pre- and post-processing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tasks.letterbox import non_max_suppression, scale_boxes
from tasks.timing import torch_threads
from tasks.yolo.checkpoint import detection_model, load_checkpoint
from tasks.yolo.runtime import yolov5_runtime

__all__ = ["Detector", "stock_detect"]


@dataclass(frozen=True)
class _Thresholds:
    conf: float
    iou: float
    max_det: int
    classes: tuple[int, ...] | None


class Detector:
    """A fused YOLOv5 detector on the CPU: BGR frames in, boxes (x1, y1, x2, y2, conf, class) in frame pixels out.

    It is YOLOv5's own DetectMultiBackend and letterbox, and detect.py's non_max_suppression and scale_boxes
    (in NumPy, shared with the exported runtimes), so the boxes are those of `detect.py`; only the batching is
    ours (all frames of a video share one letterbox shape).
    """

    def __init__(
        self,
        weights: Path,
        imgsz: int,
        conf: float,
        iou: float,
        max_det: int,
        classes: tuple[int, ...] | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        self._threads = threads  # fixed torch threads while detecting (None: as set): sums, so boxes, depend on it
        detection_model(load_checkpoint(weights), weights)  # a clear error for a bad file, before YOLOv5 sees it
        with yolov5_runtime():
            from yolov5.models.common import DetectMultiBackend
            from yolov5.utils.general import check_img_size

            self._model = DetectMultiBackend(str(Path(weights).resolve()), device=torch.device("cpu"))
            self.imgsz = int(check_img_size(imgsz, s=self._model.stride))
        self.names: dict[int, str] = (
            dict(enumerate(self._model.names))
            if isinstance(self._model.names, list)
            else {int(k): v for k, v in self._model.names.items()}
        )
        self._thresholds = _Thresholds(conf, iou, max_det, classes)

    def letterbox(self, frame: np.ndarray) -> np.ndarray:
        """One frame resized and padded as detect.py does it: CHW, RGB, uint8."""
        from yolov5.utils.augmentations import letterbox

        image = letterbox(frame, self.imgsz, stride=self._model.stride, auto=True)[0]
        return np.ascontiguousarray(image.transpose((2, 0, 1))[::-1])

    @torch.inference_mode()
    def __call__(self, letterboxed: list[np.ndarray], frame_shape: tuple[int, ...]) -> list[np.ndarray]:
        """Detections per frame as float32 arrays of shape (n, 6): x1, y1, x2, y2, conf, class.

        detect.py's non_max_suppression and scale_boxes, as every runtime runs them (tasks/letterbox.py): the
        same boxes from the same raw outputs, and exact score ties broken alike (by anchor), which torch's
        unstable argsort in YOLOv5's own NMS leaves to chance.
        """
        batch = torch.from_numpy(np.stack(letterboxed)).float() / 255
        t = self._thresholds
        classes = list(t.classes) if t.classes is not None else None
        with torch_threads(self._threads):
            raw = self._model(batch)
        raw = (raw[0] if isinstance(raw, list | tuple) else raw).numpy()  # (predictions, features) in eval mode
        results = []
        for det in non_max_suppression(raw, t.conf, t.iou, classes, max_det=t.max_det):
            if len(det):
                det[:, :4] = scale_boxes(batch.shape[2:], det[:, :4], frame_shape).round()
            results.append(det)
        return results


def stock_detect(
    weights: Path, source: Path, out_dir: Path, imgsz: int, conf: float, iou: float, vid_stride: int, save: bool
) -> Path:
    """YOLOv5's own `detect.run` on a video, labels saved with confidences; returns the labels folder.

    The reference our sampled detection is checked and timed against. `save` also writes the annotated video,
    as `python detect.py` does by default.
    """
    with yolov5_runtime():
        from yolov5 import detect

        detect.run(
            weights=str(Path(weights).resolve()),
            source=str(source),
            imgsz=(imgsz, imgsz),
            conf_thres=conf,
            iou_thres=iou,
            device="cpu",
            save_txt=True,
            save_conf=True,
            nosave=not save,
            vid_stride=vid_stride,
            project=str(out_dir.parent),
            name=out_dir.name,
            exist_ok=True,
        )
    return out_dir / "labels"
