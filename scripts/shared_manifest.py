"""Write a dfscan training manifest (path,label,group,faces) for the labelled corpus in
../shared/data (see its README.txt). Groups keep leaking items together on one side of a split:
a DFDC fake with its original, both halves of a DeepFaceLive pair (by swap model), GHOST swaps
with their source, the same person across sources. `faces` is "detect" for videos and full
frames, "whole" for images that already are face crops.

usage: python3 scripts/shared_manifest.py ../shared/data > manifest.csv
"""
import csv
import os
import re
import sys

root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
# People who appear in several sources: one group each, whatever the source.
PEOPLE = {"obama": "person:obama", "ocasio": "person:aoc", "videoretalking_face3": "person:aoc"}


def group_of(dataset, path, source, notes):
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    for key, person in PEOPLE.items():
        if key in path.lower():
            return person
    pair = re.search(r"pair_id=(\S+?);", notes + ";")
    if dataset == "deepfacelive_pairs" and pair:
        # dfl_<Swap_Model>_<n>: one swap model's clips share streamers and footage.
        return "dfl:" + re.sub(r"_\d+$", "", pair.group(1)[len("dfl_"):])
    if pair:
        return pair.group(1)
    original = re.search(r"original: (\w+)", source)
    if original:
        return "dfdc:" + original.group(1)
    if dataset.startswith("dfdc"):
        return "dfdc:" + re.split(r"[_.]", source)[0]
    if dataset == "misc_examples":
        if name.startswith("FaceForensic__ex_original_actors") or "deepfakedetection" in name:
            return "ffpp:actors"
        if name.startswith("FaceForensic__"):
            return "ffpp:example"
        if name.startswith("Deepfake-Det__"):
            return "ffpp:cyshih"
        if "drake" in name:
            return "person:drake"
    if dataset == "talking_heads" and "aniportrait" in name:
        # A generated panel and its driving video show the same motion.
        return "aniportrait:" + stem.split("_")[1]
    return f"{dataset}:{stem}"


def faces_mode(dataset, path):
    crops = ("dfdc_facecrops_genconvit", "gan_faces_deepsafe")
    if dataset in crops or "/faces/" in path or "MesoNet__" in path or "0000_fake_64" in path:
        return "whole"
    return "detect"


out = csv.writer(sys.stdout)
out.writerow(["path", "label", "group", "faces"])
with open(os.path.join(root, "all_labels.csv")) as f:
    for row in csv.DictReader(f):
        if row["label"] not in ("real", "fake"):
            continue
        path = os.path.join(root, row["path"])
        out.writerow([path, row["label"], group_of(row["dataset"], row["path"], row["source_video_or_original"], row["notes"]),
                      faces_mode(row["dataset"], row["path"])])
