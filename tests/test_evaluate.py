"""COCO evaluation: the per-class breakdown the parity report uses to say which classes an mAP drop came from."""

import json
from collections import Counter

import numpy as np

from nanodet_deploy.evaluate import CocoSet, coco_map
from nanodet_deploy.parity import class_losses
from nanodet_deploy.processing import Detections

from .helpers import VAL_ANN, VAL_IMAGES


def test_class_losses_name_the_classes_that_cost_map_and_add_up_to_the_drop():
    """Detections = val-dev's own annotations (every class AP 1), then without the one object of a
    single-object class and without every other object of the most common class: the breakdown names those
    two, the single object first (it costs a whole class's AP), and its shares add up to the mAP change."""
    coco_set = CocoSet.load(VAL_IMAGES, VAL_ANN)
    annotations = [a for a in json.loads(VAL_ANN.read_text())["annotations"] if not a["iscrowd"]]
    counts = Counter(a["category_id"] for a in annotations)
    single = min(c for c, n in counts.items() if n == 1)
    common = counts.most_common(1)[0][0]
    label = {category: i for i, category in enumerate(coco_set.category_ids)}

    def detections(dropped=()):
        kept = {}
        for a in annotations:
            if id(a) not in dropped:
                x, y, w, h = a["bbox"]
                kept.setdefault(a["image_id"], []).append(([x, y, x + w, y + h], label[a["category_id"]]))
        for image_id, _ in coco_set.images:
            boxes, labels = zip(*kept.get(image_id, [([0, 0, 1, 1], 0)]))
            yield image_id, Detections(np.array(boxes, np.float32), np.ones(len(labels), np.float32),
                                       np.array(labels))

    common_objects = [a for a in annotations if a["category_id"] == common]
    dropped = {id(a) for a in annotations if a["category_id"] == single} | {id(a) for a in common_objects[::2]}
    reference = coco_map(coco_set, detections(), 80, per_class=True)
    artifact = coco_map(coco_set, detections(dropped), 80, per_class=True)

    assert set(reference["per_class"]) == set(counts)
    assert all(r["ap"] > 0.999 and r["instances"] == counts[c] for c, r in reference["per_class"].items())
    losses = class_losses(reference["per_class"], artifact["per_class"])
    assert [x["category_id"] for x in losses] == [single, common]
    assert losses[0]["instances"] == 1 and losses[0]["ap_artifact"] == 0.0
    assert abs(losses[0]["points_lost"] - 100 / len(counts)) < 1e-9
    assert 0 < losses[1]["ap_artifact"] < 1
    assert abs(sum(x["points_lost"] for x in losses) - 100 * (reference["map"] - artifact["map"])) < 1e-9
